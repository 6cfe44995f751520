"""The api's ASGI app: routes, middleware and the services behind them.

``create_app(settings)`` builds everything at startup (lifespan) and closes it at shutdown;
``serve(settings, host, port)`` runs it under uvicorn (``imageopt api``) with
:func:`uvicorn_options`.

Middleware, outermost first: the access log and request ids (:mod:`api.accesslog`); request
counts and latencies by route (:mod:`api.http_metrics`); security headers on every response;
the schema gate (503 "run ``imageopt migrate``" while the schema lacks migrations); the
body-size bound; the input guard (malformed query parameters and JSON bodies are a 400 naming
the field); the CSRF/Origin check. Errors become the envelope
(:mod:`api.envelope`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from api import (
    catalog,
    console,
    files,
    golive,
    golive_routes,
    imaging,
    jobs,
    liveness,
    operator_actions,
    ops,
    opspage,
    preset_routes,
    seed_routes,
    store_session,
    webhooks,
)
from api.accesslog import AccessLogMiddleware
from api.context import ApiContext, build_context
from api.envelope import (
    ApiError,
    api_error_handler,
    error_response,
    http_exception_handler,
    internal_error_handler,
    malformed_input_handler,
)
from api.final_items import FinalItemWatch
from api.http_metrics import HttpMetricsMiddleware, probe_budget, probe_database
from api.input_guard import InputGuardMiddleware
from api.liveness import EventLoopWatch
from api.schema_gate import SchemaGateMiddleware
from api.security import BodyLimitMiddleware, CsrfMiddleware, SecurityHeadersMiddleware
from pipeline.config import Settings
from pipeline.errors import (
    DatabaseUnavailable,
    MalformedInput,
    RateLimiterUnavailable,
    StorageError,
)

log = structlog.get_logger(__name__)

OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.yaml"
FORM_OVERHEAD_BYTES = 1024 * 1024
"""Room for multipart boundaries and text fields on top of the files themselves."""
JSON_BYTES_PER_ITEM = 8 * 1024
"""JSON body allowance per item of a job (a 4096-character URL, a prompt, params)."""
MIN_JSON_BODY_BYTES = 1024 * 1024
"""The smallest JSON body bound, bytes, whatever the item limit."""


async def openapi(request: Request) -> Response:
    """``GET /api/openapi.yaml``: the OpenAPI description of this API."""
    return FileResponse(OPENAPI_PATH, media_type="application/yaml")


async def metrics(request: Request) -> Response:
    """``GET /metrics``: this process's Prometheus metrics (text exposition format), with
    Postgres pinged first (``imageopt_api_database_up``)."""
    ctx: ApiContext | None = getattr(request.app.state, "ctx", None)
    if ctx is not None:
        budget = probe_budget(request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"))
        await probe_database(ctx.repo.api_ping, budget)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def unavailable_handler(request: Request, exc: Exception) -> Response:
    """Postgres, Redis or the bucket did not answer: 503, retry later."""
    code = getattr(exc, "code", "unavailable")
    log.warning("api_dependency_unavailable", error_code=code, path=request.url.path)
    return error_response(
        ApiError(503, "service_unavailable", "a backing service is unavailable; retry later",
                 headers={"Retry-After": "5"})
    )  # fmt: skip


async def logged_internal_error(request: Request, exc: Exception) -> Response:
    log.error("api_internal_error", path=request.url.path, error=type(exc).__name__, exc_info=exc)
    return await internal_error_handler(request, exc)


def create_app(
    settings: Settings, context_factory: Callable[[Settings], ApiContext] = build_context
) -> Starlette:
    """Build the api app.

    Args:
        settings: process settings.
        context_factory: builds the services at startup (tests may pass their own).
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ctx = context_factory(settings)
        app.state.ctx = ctx
        app.state.image_limiter = imaging.new_image_limiter()
        app.state.golive = golive.new_reader(ctx)  # the environment's start values, read once
        app.state.final_items = FinalItemWatch(settings.database_url, settings.db_schema)
        app.state.final_items.start()
        log.info("api_started")
        try:
            yield
        finally:
            await app.state.final_items.stop()
            ctx.close()
            log.info("api_stopped")

    max_body = settings.api_max_files_per_job * settings.api_max_upload_bytes + FORM_OVERHEAD_BYTES
    max_json = max(MIN_JSON_BODY_BYTES, settings.api_max_items_per_job * JSON_BYTES_PER_ITEM)
    origins = [o for o in settings.api_allowed_origins.split(",") if o.strip()]
    routes = [
        *ops.ROUTES,
        *liveness.ROUTES,
        Route("/api/openapi.yaml", openapi, methods=["GET"]),
        *catalog.ROUTES,
        *preset_routes.ROUTES,
        *store_session.ROUTES,
        *jobs.ROUTES,
        *imaging.ROUTES,
        *files.ROUTES,
        *seed_routes.ROUTES,
        *console.ROUTES,
        *opspage.ROUTES,
        *operator_actions.ROUTES,
        *golive_routes.ROUTES,
        *webhooks.ROUTES,
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(EventLoopWatch, threshold=settings.api_liveness_seconds),
            Middleware(AccessLogMiddleware, routes=routes),
            Middleware(HttpMetricsMiddleware, routes=routes),
            Middleware(SecurityHeadersMiddleware),
            Middleware(SchemaGateMiddleware),
            Middleware(BodyLimitMiddleware, max_bytes=max_body),
            Middleware(InputGuardMiddleware, max_json_bytes=max_json, signed_paths={webhooks.PATH}),
            Middleware(CsrfMiddleware, allowed_origins=origins, routes=routes),
        ],
        exception_handlers={
            ApiError: api_error_handler,
            HTTPException: http_exception_handler,
            MalformedInput: malformed_input_handler,
            DatabaseUnavailable: unavailable_handler,
            RateLimiterUnavailable: unavailable_handler,
            StorageError: unavailable_handler,
            Exception: logged_internal_error,
        },
        lifespan=lifespan,
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn runs the api (``imageopt api``, and the tests' server).

    Forwarded headers (``X-Forwarded-For``, ``X-Forwarded-Proto``) are honoured only from the
    peers in ``IMAGEOPT_TRUSTED_PROXIES``; with none listed (the default) they are ignored, so
    a caller cannot pick the address its per-address limits count against. uvicorn's own
    default would trust any loopback peer.
    """
    trusted = settings.trusted_proxy_list
    return {
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or [],
        "server_header": False,
        "timeout_graceful_shutdown": 5,
        "log_config": None,  # uvicorn's error lines go to the root logger: the process's format
    }


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the api under uvicorn until SIGINT/SIGTERM (one process; scale with replicas)."""
    uvicorn.run(create_app(settings), host=host, port=port, **uvicorn_options(settings))
