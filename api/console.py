"""The web console: one server-rendered page (Jinja2) plus a small script, no front-end build.

``GET /`` renders the page with the model allowlist, the presets and the upload limits, and
makes sure the browser holds a ``guest_id`` session cookie and a ``csrf_token`` cookie (read by
the script and echoed in ``X-CSRF-Token``, the double submit of :mod:`api.security`).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from api.admission import admit
from api.catalog import model_views, preset_views
from api.context import blocking
from api.security import CSRF_COOKIE

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


async def console(request: Request) -> Response:
    """``GET /``: the console page."""
    admission = await admit(request, guest="new")
    ctx, caller, token = admission.ctx, admission.caller, admission.guest_token
    presets = await blocking(
        preset_views, ctx, caller.store_id if caller.owner_type == "store" else None
    )
    response = templates.TemplateResponse(
        request,
        "console.html",
        {
            "models": model_views(ctx),
            "presets": presets,
            "max_upload_mb": ctx.settings.api_max_upload_bytes // (1024 * 1024),
            "max_upload_bytes": ctx.settings.api_max_upload_bytes,
            "max_files": ctx.settings.api_max_files_per_job,
        },
        headers={"Cache-Control": "no-store"},
    )
    if token is not None:
        ctx.set_guest_cookie(request, response, token)
    if not request.cookies.get(CSRF_COOKIE):
        response.set_cookie(
            CSRF_COOKIE, secrets.token_urlsafe(24), path="/", httponly=False,
            samesite="strict", secure=request.url.scheme == "https",
        )  # fmt: skip
    return response


ROUTES = [
    Route("/", console, methods=["GET"]),
    Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
]
