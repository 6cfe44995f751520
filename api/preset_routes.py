"""A store's custom presets, self-service (seed 004 "Custom Presets"): list, create, update,
delete.

* ``GET /api/presets``: built-in presets, plus the caller store's custom ones (anyone;
  :func:`api.catalog.presets`).
* ``POST /api/presets`` ``{"name", "spec"}``: a new custom preset (201).
* ``PUT /api/presets/{name}`` ``{"spec"}``: replace an existing one's spec (200).
* ``DELETE /api/presets/{name}``: remove one (200).

Who may write: a **store** (an API key); a preset belongs to the store, and every key of the
store sees and changes the same presets. A **guest** session runs its jobs under the shared
guest store, which it does not own (one guest must not change another's presets): 403
``store_required``. Each write, in this order: the caller and its request limit
(:func:`api.admission.admit`); ``CUSTOM_PRESETS_ENABLED`` (404 ``feature_disabled``); a store
caller (403); the caller's own write limit, ``IMAGEOPT_API_PRESET_WRITES_PER_MINUTE``, checked
and counted in one Redis script (429 ``rate_limited``); the body and the spec
(:func:`pipeline.presets.parse_preset`; 400 ``validation_error`` with ``details.field`` =
``name``, ``spec`` or ``spec.<key>``); then one conditional statement. Built-in names are
never written (409 ``preset_builtin``), a taken name is 409 ``preset_exists``, a store at
``IMAGEOPT_API_MAX_PRESETS_PER_STORE`` is 409 ``preset_limit``, a missing preset 404. Each
write that changed a row counts in ``imageopt_custom_presets_total{action}``.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api import catalog
from api.admission import admit
from api.auth import Caller
from api.context import ApiContext, blocking
from api.envelope import ApiError, ok, validation_error
from api.golive import require_flag
from pipeline.errors import InvalidPreset
from pipeline.golive import CUSTOM_PRESETS
from pipeline.metrics import record_custom_preset
from pipeline.presets import BUILTIN_PRESETS, Preset, check_name, parse_preset
from pipeline.repository import Row

log = structlog.get_logger(__name__)


def preset_view(row: Row) -> dict[str, Any]:
    """A stored custom preset as the API shows it: ``name``, ``builtin`` (false), ``spec``,
    ``createdAt``, ``updatedAt`` (ISO 8601)."""
    return {
        "name": row["name"],
        "builtin": False,
        "spec": dict(row["spec"]),
        "createdAt": row["created_at"].isoformat(),
        "updatedAt": row["updated_at"].isoformat(),
    }


def _field_of(exc: InvalidPreset) -> str:
    """The API's name of the field a spec error is about (``spec.width``, ``name``, ...)."""
    return exc.field if exc.field in ("name", "spec") else f"spec.{exc.field}"


def _builtin(name: str) -> ApiError:
    return ApiError(
        409, "preset_builtin", f"preset {name} is built in and cannot be changed; pick a new name",
        details={"field": "name", "name": name},
    )  # fmt: skip


def _not_found(name: str) -> ApiError:
    return ApiError(404, "not_found", f"preset {name} not found", details={"name": name})


async def _writer(request: Request) -> tuple[ApiContext, Caller]:
    """The prelude of every write: caller, flag, store caller, the write limit.

    Raises:
        ApiError: 401, 429 (the request limit or the write limit), 404 ``feature_disabled``,
            403 ``store_required``.
    """
    admission = await admit(request)
    await require_flag(request, CUSTOM_PRESETS)
    ctx, caller = admission.ctx, admission.caller
    if caller.owner_type != "store":
        raise ApiError(
            403, "store_required",
            "custom presets belong to a store: send the store's API key (Authorization: Bearer)",
        )  # fmt: skip
    await ctx.throttle_preset_writes(caller)
    return ctx, caller


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object of the body.

    Raises:
        ApiError: 400 naming ``body``.
    """
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise validation_error("body", "body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise validation_error("body", "body must be a JSON object")
    return body


def _parsed(name: str, body: dict[str, Any]) -> Preset:
    """The body's ``spec`` validated as preset ``name``.

    Raises:
        ApiError: 400 naming ``spec`` or ``spec.<key>``.
    """
    if "spec" not in body:
        raise validation_error("spec", 'spec is required: a JSON object such as {"format": "webp"}')
    try:
        return parse_preset(name, body["spec"])
    except InvalidPreset as exc:
        raise validation_error(_field_of(exc), exc.message) from exc


def _path_name(request: Request) -> str:
    """The ``{name}`` of the path: 409 for a built-in one, 404 when it cannot be a preset's."""
    name = str(request.path_params["name"])
    if name in BUILTIN_PRESETS:
        raise _builtin(name)
    try:
        return check_name(name)
    except InvalidPreset as exc:
        raise _not_found(name[:80]) from exc


def _written(action: str, caller: Caller, name: str) -> None:
    record_custom_preset(action)
    log.info("api_preset_written", action=action, store_id=caller.store_id, preset=name)


async def presets(request: Request) -> Response:
    """``GET /api/presets`` (:func:`api.catalog.presets`) and ``POST /api/presets``
    ``{"name", "spec"}``: a new custom preset of the caller's store, 201 ``{"preset"}``."""
    if request.method in ("GET", "HEAD"):  # Starlette answers HEAD with the GET route
        return await catalog.presets(request)
    ctx, caller = await _writer(request)
    body = await _body(request)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise validation_error("name", "name is required: 1-63 characters of a-z, 0-9, - and _")
    if name in BUILTIN_PRESETS:
        raise _builtin(name)
    try:
        check_name(name)
    except InvalidPreset as exc:
        raise validation_error("name", exc.message) from exc
    preset = _parsed(name, body)
    cap = ctx.settings.api_max_presets_per_store
    outcome = await blocking(
        ctx.repo.insert_preset_within_cap, caller.store_id, name, preset.to_spec(), cap
    )
    if outcome == "exists":
        raise ApiError(
            409, "preset_exists", f"preset {name} exists; change it with PUT /api/presets/{name}",
            details={"field": "name", "name": name},
        )  # fmt: skip
    if outcome == "full":
        raise ApiError(
            409, "preset_limit", f"a store keeps at most {cap} custom presets; delete one first",
            details={"limit": cap},
        )  # fmt: skip
    _written("create", caller, name)
    return ok({"preset": preset_view(outcome)}, status=201)


async def preset(request: Request) -> Response:
    """``PUT /api/presets/{name}`` ``{"spec"}``: replace a custom preset's spec, 200
    ``{"preset"}``; ``DELETE /api/presets/{name}``: remove it, 200 ``{"deleted": name}``."""
    ctx, caller = await _writer(request)
    name = _path_name(request)
    if request.method == "DELETE":
        if not await blocking(ctx.repo.delete_preset, caller.store_id, name):
            raise _not_found(name)
        _written("delete", caller, name)
        return ok({"deleted": name})
    spec = _parsed(name, await _body(request)).to_spec()
    row = await blocking(ctx.repo.update_preset, caller.store_id, name, spec)
    if row is None:
        raise _not_found(name)
    _written("update", caller, name)
    return ok({"preset": preset_view(row)})


ROUTES = [
    Route("/api/presets", presets, methods=["GET", "POST"]),
    Route("/api/presets/{name}", preset, methods=["PUT", "DELETE"]),
]
