"""What a caller may choose and how much it has used: models, presets, usage (seed 002 §4)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.admission import admit, admit_anyone
from api.auth import Caller
from api.context import SECONDS_PER_DAY, ApiContext, blocking
from api.envelope import ok
from api.golive import golive_state
from pipeline.presets import list_presets


def model_views(ctx: ApiContext) -> list[dict[str, Any]]:
    """The allowlist as the API shows it: name, kind, prompt needed, parameter names, and
    ``parameters`` (each with type, limits and default: :meth:`ModelSpec.parameters`, the
    limits the server enforces; the console builds its form from them)."""
    return [
        {
            "name": spec.name,
            "kind": spec.kind,
            "requiresPrompt": spec.requires_prompt,
            "params": sorted(spec.allowed_params),
            "parameters": spec.parameters(),
            "default": spec.name == ctx.settings.replicate_image_model,
        }
        for spec in ctx.models.values()
    ]


def preset_views(ctx: ApiContext, store_id: str | None) -> list[dict[str, Any]]:
    """Built-in presets and the store's custom ones (:mod:`pipeline.presets`)."""
    rows = list_presets(ctx.repo, store_id) if store_id is not None else list_presets()
    return [{"name": p["name"], "builtin": p["builtin"], "spec": p["spec"]} for p in rows]


async def models(request: Request) -> Response:
    """``GET /api/models``: the model allowlist (public), each with ``enabled`` (an operator
    can switch one off at run time: :mod:`pipeline.golive`)."""
    ctx, _caller = await admit_anyone(request)
    disabled = (await golive_state(request)).disabled_models
    views = [{**view, "enabled": view["name"] not in disabled} for view in model_views(ctx)]
    return ok({"models": views})


async def presets(request: Request) -> Response:
    """``GET /api/presets``: built-in presets, plus the caller store's custom ones."""
    ctx, caller = await admit_anyone(request)
    store = caller.store_id if caller is not None and caller.owner_type == "store" else None
    views = await blocking(preset_views, ctx, store)
    return ok({"presets": views})


def _window(used: int, limit: int, frees_at: datetime | None) -> dict[str, Any]:
    """One quota's use over the rolling 24 h: ``limit`` 0 (no quota) shows as null."""
    reset = frees_at if frees_at is not None and limit > 0 and used >= limit else None
    return {"used": used, "limit": limit or None,
            "remaining": max(0, limit - used) if limit > 0 else None,
            "windowSeconds": int(SECONDS_PER_DAY),
            "resetAt": reset.astimezone(UTC).isoformat() if reset else None}  # fmt: skip


async def usage_view(ctx: ApiContext, caller: Caller, request: Request) -> dict[str, Any]:
    """Items used and left in the rolling 24 h window (seed 002: ``usage``, ``limits``).

    ``usage`` is the caller's own quota; ``addressUsage`` the quota every guest of the caller's
    client address shares (``IMAGEOPT_API_GUEST_ADDRESS_DAILY_ITEMS``), which a guest may meet
    first: null for stores and when that quota is off. A new image needs room in both.
    """
    limit = (
        ctx.settings.api_guest_daily_items
        if caller.owner_type == "guest"
        else ctx.settings.api_store_daily_items
    )
    used, frees_at = await blocking(
        ctx.repo.api_usage, caller.owner_type, caller.owner_id, caller.store_id, SECONDS_PER_DAY
    )
    # The address quota alone (the owner's was read above, also when it has no limit).
    address_only = replace(ctx.quotas(caller, request), owner_limit=0)
    shared = await blocking(ctx.repo.api_quota_usage, address_only)
    return {
        "ownerType": caller.owner_type,
        "usage": _window(used, limit, frees_at),
        "addressUsage": _window(shared[0].used, shared[0].limit, shared[0].frees_at)
        if shared else None,
        "limits": {
            "maxUploadBytes": ctx.settings.api_max_upload_bytes,
            "maxFilesPerJob": ctx.settings.api_max_files_per_job,
            "requestsPerMinute": ctx.settings.api_rate_per_minute,
            "readsPerMinute": ctx.settings.api_read_rate_per_minute,
            "jobsPerMinute": ctx.settings.api_create_rate_per_minute,
        },
        "now": datetime.now(UTC).isoformat(),
    }  # fmt: skip


async def usage(request: Request) -> Response:
    """``GET /api/usage``: the caller's usage; seeds a guest session for a cookie-less browser."""
    admission = await admit(request, guest="new")
    ctx, caller, token = admission.ctx, admission.caller, admission.guest_token
    response = ok(await usage_view(ctx, caller, request))
    if token is not None:
        ctx.set_guest_cookie(request, response, token)
    return response


ROUTES = [  # GET /api/presets is registered with the preset writes (api/preset_routes.py)
    Route("/api/models", models, methods=["GET"]),
    Route("/api/usage", usage, methods=["GET"]),
]
