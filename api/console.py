"""The web console: one server-rendered page (Jinja2) plus a small script, no front-end build.

``GET /`` renders the page with the model allowlist, the presets and the upload limits, and
makes sure the browser holds a ``guest_id`` session cookie and a ``csrf_token`` cookie (read by
the script and echoed in ``X-CSRF-Token``, the double submit of :mod:`api.security`). The page
is in the caller's language (:mod:`api.console_i18n`); its script and style are served under
content-hashed names (``/assets/console.<hash>.js``, hashed at start-up) that may be cached
for a year, so a new release is fetched at once.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from api.admission import admit
from api.catalog import model_views, preset_views
from api.console_i18n import CATALOGUES, LANGUAGES, choose_language, translate
from api.context import blocking
from api.envelope import ApiError
from api.golive import golive_state
from api.security import CSRF_COOKIE
from pipeline.golive import CUSTOM_PRESETS

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
ASSET_FILES = ("console.js", "presets.js", "console.css")
"""The console's own assets (the /ops page's are served from ``/static``)."""
ASSET_MAX_AGE_SECONDS = 365 * 24 * 3600
"""A hashed name never changes content: one year, ``immutable`` (RFC 8246)."""


def _hashed(name: str) -> str:
    stem, _, suffix = name.rpartition(".")
    digest = hashlib.sha256((HERE / "static" / name).read_bytes()).hexdigest()[:12]
    return f"{stem}.{digest}.{suffix}"


ASSETS = {name: _hashed(name) for name in ASSET_FILES}
"""``console.js`` -> ``console.<first 12 hex of sha256>.js``, computed once at start-up."""
_ASSET_SOURCES = {hashed: name for name, hashed in ASSETS.items()}


async def asset(request: Request) -> Response:
    """``GET /assets/{name}``: a content-hashed console asset, cacheable for a year.

    Raises:
        ApiError: 404 for any name that is not a current hashed asset.
    """
    source = _ASSET_SOURCES.get(request.path_params["name"])
    if source is None:
        raise ApiError(404, "not_found", "no such asset")
    cache = f"public, max-age={ASSET_MAX_AGE_SECONDS}, immutable"
    return FileResponse(HERE / "static" / source, headers={"Cache-Control": cache})


async def console(request: Request) -> Response:
    """``GET /``: the console page."""
    admission = await admit(request, guest="new")
    ctx, caller, token = admission.ctx, admission.caller, admission.guest_token
    presets = await blocking(
        preset_views, ctx, caller.store_id if caller.owner_type == "store" else None
    )
    lang = choose_language(request)
    custom_presets = (await golive_state(request)).flag(CUSTOM_PRESETS)
    response = templates.TemplateResponse(
        request,
        "console.html",
        {
            "lang": lang,
            "languages": [(code, CATALOGUES[code]["lang.name"]) for code in LANGUAGES],
            "catalogue": CATALOGUES[lang],
            "t": lambda key, **values: translate(lang, key, **values),
            "assets": {name: f"/assets/{hashed}" for name, hashed in ASSETS.items()},
            "models": model_views(ctx),
            "presets": presets,
            # the presets panel: shown while the flag is on; editable by a store only
            "custom_presets": custom_presets,
            "can_edit_presets": caller.owner_type == "store",
            "max_upload_mb": ctx.settings.api_max_upload_bytes // (1024 * 1024),
            "max_upload_bytes": ctx.settings.api_max_upload_bytes,
            "max_files": ctx.settings.api_max_files_per_job,
        },
        headers={"Cache-Control": "no-store", "Vary": "Accept-Language, Cookie"},
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
    Route("/assets/{name}", asset, methods=["GET"]),
    Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
]
