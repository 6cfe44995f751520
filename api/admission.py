"""The prelude of every route that answers a caller: authenticate, throttle, check ownership.

One place for the order that matters: who is asking (401 for a bad key or, where a caller is
required, no credentials), then their request limit (429) before any other work, then the path
id (404 past ``bigint``), the row (404) and its owner (403). The request limit depends on the
method: a ``GET``/``HEAD`` counts against the caller's read budget
(``IMAGEOPT_API_READ_RATE_PER_MINUTE``), anything else against seed 002's 30/min
(``IMAGEOPT_API_RATE_PER_MINUTE``; :meth:`ApiContext.throttle`). A route states what it needs::

    admission = await admit(request)                          # a caller, throttled
    admission = await admit(request, guest="new", create=True)  # a new guest if need be
    admission = await admit(request, owned=JOB)                 # ... owning the job in the path
    ctx, caller = await admit_anyone(request)                   # public route, caller optional
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

from api.auth import Caller
from api.context import ApiContext, blocking
from api.envelope import ApiError
from api.golive import auth_required_error, check_creator, refuse_new_guest
from api.throttle import is_read
from pipeline.repository import Repository, Row

MAX_ID = 2**63 - 1
"""Largest id a ``bigint`` column holds; a larger path id is a 404, never a database error."""


@dataclass(frozen=True)
class Owned:
    """A resource named in the path whose owner must be the caller.

    Attributes:
        noun: what the messages call it (``job``, ``item``).
        param: the ``{name:int}`` path parameter holding its id.
        load: reads its row (with ``owner_type``, ``owner_id``, ``store_id``), None if absent.
    """

    noun: str
    param: str
    load: Callable[[Repository, int], Row | None]


JOB = Owned("job", "job_id", Repository.api_get_job)
ITEM = Owned("item", "item_id", Repository.api_get_item)


@dataclass(frozen=True)
class Admission:
    """A request let through the prelude.

    Attributes:
        ctx: the api process's context.
        caller: who is asking.
        guest_token: the cookie token of a guest session made for this request (the route
            sets it on its response), else None.
        resource_id: the id of the ``owned`` resource, when one was asked for.
        row: its row, when one was asked for.
    """

    ctx: ApiContext
    caller: Caller
    guest_token: str | None = None
    resource_id: int = 0
    row: Row | None = None


def context_of(request: Request) -> ApiContext:
    """The api process's context (set at startup)."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


def path_id(request: Request, name: str) -> int:
    """An integer path parameter that fits a ``bigint``.

    Raises:
        ApiError: 404 when it does not.
    """
    raw = request.path_params[name]
    assert isinstance(raw, int)
    if raw > MAX_ID:
        raise ApiError(404, "not_found", f"{name.removesuffix('_id')} {raw} not found")
    return raw


async def admit(
    request: Request,
    *,
    guest: Literal["existing", "new"] = "existing",
    create: bool = False,
    owned: Owned | None = None,
) -> Admission:
    """Authenticate and throttle the caller, and check it owns the ``owned`` resource.

    Args:
        request: the request.
        guest: ``new`` starts a guest session for a cookie-less browser (counted against its
            address, :meth:`ApiContext.caller_or_new_guest`); ``existing`` requires a caller.
        create: also count the request against the job-creation limit.
        owned: the resource in the path the caller must own.

    Returns:
        The context, the caller and, with ``owned``, the resource's id and row.

    Raises:
        ApiError: 401 no or bad credentials, 429 over a limit, 404 no such resource, 403 the
            resource belongs to another owner; with ``create``, 401 ``auth_required`` for a
            guest while ``AUTH_REQUIRED`` is on and 403 ``not_in_rollout`` for a caller
            outside the staged rollout (:mod:`api.golive`).
    """
    ctx = context_of(request)
    token: str | None = None
    if guest == "new" and create and await refuse_new_guest(request):
        found = await ctx.caller(request, required=False)
        if found is None:  # no guest session is started while guests are off
            await ctx.throttle_anonymous(request)
            raise auth_required_error()
        caller = found
    elif guest == "new":
        caller, token = await ctx.caller_or_new_guest(request)
    else:
        found = await ctx.caller(request)
        assert found is not None  # required: a missing caller is a 401
        caller = found
    await ctx.throttle(caller, read=is_read(request.method), create=create)
    if create:  # the go-live levers: guests off, the staged rollout
        await check_creator(request, caller)
    if owned is None:
        return Admission(ctx, caller, token)
    resource_id = path_id(request, owned.param)
    row = await blocking(owned.load, ctx.repo, resource_id)
    if row is None:
        raise ApiError(404, "not_found", f"{owned.noun} {resource_id} not found")
    if not caller.owns(row["owner_type"], row["owner_id"], row["store_id"]):
        raise ApiError(403, "forbidden", f"{owned.noun} {resource_id} belongs to another owner")
    return Admission(ctx, caller, token, resource_id, row)


async def admit_anyone(request: Request) -> tuple[ApiContext, Caller | None]:
    """The prelude of a public route: the caller if there is one (401 only for a bad API key),
    throttled as itself, or as its client network when anonymous (a read against the read
    budget either way).

    Raises:
        ApiError: 401 for a bad or revoked API key, 429 over the request limit.
    """
    ctx = context_of(request)
    caller = await ctx.caller(request, required=False)
    read = is_read(request.method)
    if caller is None:
        await ctx.throttle_anonymous(request, read=read)
    else:
        await ctx.throttle(caller, read=read)
    return ctx, caller
