"""The go-live levers over HTTP: the public flags, and the operators' levers (audited).

* ``GET /api/flags`` (public, cached 2 s by clients): ``{"flags": {NAME: bool},
  "authRequired": bool}`` for the console and the seed's front end.
* ``GET /ops/api/flags`` (operators): every lever in force, models and rollout included.
* ``POST /ops/api/flags`` ``{"name", "enabled", "reason"?}``: one feature flag.
* ``POST /ops/api/models`` ``{"name", "enabled", "reason"?}``: one model on or off.
* ``POST /ops/api/rollout`` ``{"percent", "allowStores"?, "reason"?}``: the staged rollout.
* ``POST /ops/api/auth-required`` ``{"enabled", "reason"?}``: guests off or on.

Each change is one row of ``image_optimization_golive`` and one audit entry (who and why,
:mod:`pipeline.golive`); the api and the scheduler see it within a second, without a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.admission import admit_anyone
from api.context import ApiContext, blocking
from api.envelope import ok, read_body, validation_error
from api.golive import golive_state, reader_of
from api.operator_auth import require_operator
from pipeline import golive
from pipeline.golive import FLAGS, Change

FLAGS_MAX_AGE_SECONDS = 2
_Body = TypeVar("_Body", bound=BaseModel)
Reason = Field(default=None, max_length=500)


class _Switch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    enabled: bool
    reason: str | None = Reason


class _Rollout(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    percent: int = Field(ge=0, le=100)
    allow_stores: list[str] = Field(
        default_factory=list, alias="allowStores", max_length=golive.MAX_ALLOW_STORES
    )
    reason: str | None = Reason


class _AuthRequired(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool
    reason: str | None = Reason


def _answer(request: Request, change: Change) -> Response:
    reader_of(request).refresh()  # this process sees its own change at once
    return ok({"lever": change.lever, "value": change.value, "changed": change.changed})


async def public_flags(request: Request) -> Response:
    """``GET /api/flags``: the feature flags in force and whether guests may create."""
    await admit_anyone(request)
    state = await golive_state(request)
    data = {"flags": {name: state.flag(name) for name in FLAGS},
            "authRequired": state.auth_required}  # fmt: skip
    return ok(data, headers={"Cache-Control": f"public, max-age={FLAGS_MAX_AGE_SECONDS}"})


async def ops_levers(request: Request) -> Response:
    """``GET /ops/api/flags``: every go-live lever in force."""
    await require_operator(request)
    ctx: ApiContext = request.app.state.ctx
    reader_of(request).refresh()
    state = await golive_state(request)
    return ok(golive.describe(state, ctx.models))


async def _change_lever(
    request: Request,
    shape: type[_Body],
    check: Callable[[ApiContext, _Body], None] | None,
    change: Callable[[ApiContext, _Body, str], Change],
) -> Response:
    """One operator lever: authenticate, read and check the body, change it (audited), answer.

    ``check`` (if any) refuses what the body's model alone cannot (an unknown name);
    ``change`` runs in the thread pool with the operator's actor name and writes the lever's
    row and its audit entry (:mod:`pipeline.golive`).

    Raises:
        ApiError: 401/403 from :func:`api.operator_auth.require_operator`; 400
            ``validation_error`` for a malformed body or one ``check`` refuses.
    """
    who = await require_operator(request)
    ctx: ApiContext = request.app.state.ctx
    body: _Body = await read_body(request, shape)
    if check is not None:
        check(ctx, body)
    return _answer(request, await blocking(change, ctx, body, who.actor))


def _known_flag(_ctx: ApiContext, body: _Switch) -> None:
    if body.name not in FLAGS:
        raise validation_error("name", f"unknown flag; one of {', '.join(FLAGS)}")


def _known_model(ctx: ApiContext, body: _Switch) -> None:
    if body.name not in ctx.models:
        raise validation_error("name", "unknown model (see GET /api/models)")


def _store_ids(_ctx: ApiContext, body: _Rollout) -> None:
    if any(not s or len(s) > 200 for s in body.allow_stores):
        raise validation_error("allowStores", "store ids have 1 to 200 characters")


async def set_flag(request: Request) -> Response:
    """``POST /ops/api/flags``: turn one feature flag on or off."""
    return await _change_lever(
        request, _Switch, _known_flag,
        lambda ctx, body, actor: golive.set_flag(
            ctx.repo, body.name, body.enabled, reason=body.reason, actor=actor
        ),
    )  # fmt: skip


async def set_model(request: Request) -> Response:
    """``POST /ops/api/models``: switch one model of the allowlist on or off."""
    return await _change_lever(
        request, _Switch, _known_model,
        lambda ctx, body, actor: golive.set_model(
            ctx.repo, body.name, body.enabled, known=ctx.models, reason=body.reason, actor=actor
        ),
    )  # fmt: skip


async def set_rollout(request: Request) -> Response:
    """``POST /ops/api/rollout``: the percentage of callers and the always-admitted stores."""
    return await _change_lever(
        request, _Rollout, _store_ids,
        lambda ctx, body, actor: golive.set_rollout(
            ctx.repo, body.percent, body.allow_stores, reason=body.reason, actor=actor
        ),
    )  # fmt: skip


async def set_auth_required(request: Request) -> Response:
    """``POST /ops/api/auth-required``: guests may not create (on) or may again (off)."""
    return await _change_lever(
        request, _AuthRequired, None,
        lambda ctx, body, actor: golive.set_auth_required(
            ctx.repo, body.enabled, reason=body.reason, actor=actor
        ),
    )  # fmt: skip


ROUTES = [
    Route("/api/flags", public_flags, methods=["GET"]),
    Route("/ops/api/flags", ops_levers, methods=["GET"]),
    Route("/ops/api/flags", set_flag, methods=["POST"]),
    Route("/ops/api/models", set_model, methods=["POST"]),
    Route("/ops/api/rollout", set_rollout, methods=["POST"]),
    Route("/ops/api/auth-required", set_auth_required, methods=["POST"]),
]
