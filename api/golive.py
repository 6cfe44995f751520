"""The go-live levers as the api sees them (:mod:`pipeline.golive`), and the checks they gate.

The api process keeps one :class:`pipeline.golive.GoLiveReader`; a request reads it without a
database round trip while the last read is under a second old, so an operator's change is
seen within about a second, without a restart. The answers:

* a flag off: 404 ``feature_disabled`` on the feature's routes (:func:`require_flag`);
* a model off: 400 ``model_disabled`` at job creation (:func:`check_model`);
* ``AUTH_REQUIRED`` on: 401 ``auth_required`` for a guest on a creating route, and no new
  guest session is started (:func:`check_creator`);
* outside the staged rollout: 403 ``not_in_rollout`` on a creating route (:func:`check_creator`).
"""

from __future__ import annotations

from starlette.requests import Request

from api.auth import Caller
from api.context import ApiContext, blocking
from api.envelope import ApiError
from pipeline.golive import GoLiveReader, GoLiveState


def new_reader(ctx: ApiContext) -> GoLiveReader:
    """The api process's reader, with the start values from the environment (at startup).

    Raises:
        ValueError: a flag variable that is not a boolean (the api does not start).
    """
    return GoLiveReader.of(ctx.repo)


def reader_of(request: Request) -> GoLiveReader:
    """The api process's reader (made at startup; made here for an app built without it)."""
    reader: GoLiveReader | None = getattr(request.app.state, "golive", None)
    if reader is None:
        reader = new_reader(request.app.state.ctx)
        request.app.state.golive = reader
    return reader


async def golive_state(request: Request) -> GoLiveState:
    """The levers in force (at most :data:`pipeline.golive.READ_INTERVAL_SECONDS` old).

    Raises:
        pipeline.errors.DatabaseUnavailable: Postgres did not answer (a 503).
    """
    reader = reader_of(request)
    fresh = reader.cached()
    return fresh if fresh is not None else await blocking(reader.state)


async def require_flag(request: Request, name: str) -> None:
    """Refuse the request while feature flag ``name`` is off.

    Raises:
        ApiError: 404 ``feature_disabled``.
    """
    if not (await golive_state(request)).flag(name):
        raise ApiError(
            404, "feature_disabled", "this feature is not enabled", details={"flag": name}
        )


async def check_model(request: Request, model: str) -> None:
    """Refuse a job for a model an operator switched off.

    Raises:
        ApiError: 400 ``model_disabled``.
    """
    if model in (await golive_state(request)).disabled_models:
        raise ApiError(
            400, "model_disabled", f"model {model} is disabled for now; choose another",
            details={"field": "model", "model": model},
        )  # fmt: skip


async def refuse_new_guest(request: Request) -> bool:
    """Whether guests may not create now (``AUTH_REQUIRED`` on): the caller must then bring
    an API key or an existing session, and no guest session is started for it."""
    return (await golive_state(request)).auth_required


def auth_required_error() -> ApiError:
    """401 ``auth_required``: guests may not create while ``AUTH_REQUIRED`` is on."""
    return ApiError(
        401, "auth_required", "sign in with an API key to create jobs",
        headers={"WWW-Authenticate": "Bearer"},
    )  # fmt: skip


async def check_creator(request: Request, caller: Caller) -> None:
    """Admit ``caller`` to a creating route, or refuse it.

    Raises:
        ApiError: 401 ``auth_required`` for a guest while ``AUTH_REQUIRED`` is on; 403
            ``not_in_rollout`` for a caller outside the staged rollout.
    """
    state = await golive_state(request)
    if caller.owner_type == "guest" and state.auth_required:
        raise auth_required_error()
    store = caller.store_id if caller.owner_type == "store" else None
    if not state.rollout.admits(f"{caller.owner_type}:{caller.owner_id}", store):
        raise ApiError(403, "not_in_rollout", "this feature is not available to you yet")
