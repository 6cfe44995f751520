"""Every route answers 503 "run ``imageopt migrate``" while the schema lacks this release's
migrations (a pure ASGI middleware), instead of a 500 and a traceback per request.

The check is :func:`pipeline.migrate.require_migrated`, the one ``/readyz`` and the scheduler
use. Once it passes it is never run again (migrations only add; a new release is a new
process). Until then it runs at most once per :data:`RECHECK_SECONDS`, one at a time (requests
arriving meanwhile wait for its answer), so the api recovers by itself a few seconds after
``imageopt migrate``. The state is logged once when it changes (``api_schema_not_migrated``
with the missing versions, ``api_schema_migrated``), never per request.

Answers: the envelope (``service_unavailable``) on ``/api/*``, the operations shape on the
rate-limiter stats, a plain HTML page elsewhere (the console); all with ``Retry-After``.
``/healthz`` (liveness), ``/readyz`` (it reports the schema itself) and ``/metrics`` pass.
When Postgres cannot be reached the check cannot tell, and requests pass to their routes,
which answer their own 503.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from html import escape

import anyio
import anyio.to_thread
import structlog
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.context import ApiContext
from api.envelope import NO_STORE, ApiError, error_response
from pipeline.errors import PipelineError, SchemaNotMigrated
from pipeline.migrate import require_migrated

log = structlog.get_logger(__name__)

RECHECK_SECONDS = 5.0
"""Least time between two checks of a schema found lacking (seconds); also ``Retry-After``."""
CHECK_TIMEOUT_SECONDS = 3.0
"""A check that takes longer counts as "cannot tell" (as ``/readyz``'s probe timeout)."""
PASS_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
STATS_PATH = "/api/replicate-rate-limiter/stats"
MESSAGE = "the database schema lacks this release's migrations: run `imageopt migrate`"
_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    "<title>imageopt is not ready</title></head><body><h1>imageopt is not ready</h1>"
    f"<p>{escape(MESSAGE)}</p></body></html>"
)


def unavailable_response(path: str) -> Response:
    """The 503 for ``path`` while the schema is not migrated (shape by route family)."""
    headers = {**NO_STORE, "Retry-After": str(int(RECHECK_SECONDS))}
    if path == STATS_PATH:
        body = {"status": "error", "error": SchemaNotMigrated.code, "message": MESSAGE}
        return JSONResponse(body, status_code=503, headers=headers)
    if path.startswith("/api/"):
        return error_response(
            ApiError(503, "service_unavailable", MESSAGE,
                     details={"reason": SchemaNotMigrated.code}, headers=headers)
        )  # fmt: skip
    return HTMLResponse(_PAGE, status_code=503, headers=headers)


class SchemaGateMiddleware:
    """Answers :func:`unavailable_response` while the schema lacks migrations (module doc).

    Args:
        app: the wrapped app (its ``state.ctx`` is the :class:`ApiContext`).
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(self, app: ASGIApp, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self._clock = clock
        self._migrated = False
        self._missing: list[int] | None = None
        self._checked_at: float | None = None
        self._checking: anyio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._migrated or scope["type"] != "http" or scope["path"] in PASS_PATHS:
            await self.app(scope, receive, send)
            return
        if await self._missing_versions(scope["app"].state.ctx):
            await unavailable_response(scope["path"])(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _missing_versions(self, ctx: ApiContext) -> list[int] | None:
        """The versions the schema lacks (None: none, or cannot tell now)."""
        if self._checking is not None:
            await self._checking.wait()
            return self._missing
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < RECHECK_SECONDS:
            return self._missing
        self._checked_at = now
        self._checking = checking = anyio.Event()
        try:
            await self._check(ctx)
        finally:
            self._checking = None
            checking.set()
        return self._missing

    async def _check(self, ctx: ApiContext) -> None:
        schema = ctx.settings.db_schema
        try:
            with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
                await anyio.to_thread.run_sync(
                    require_migrated, ctx.repo, schema, abandon_on_cancel=True
                )
        except SchemaNotMigrated as exc:
            if self._missing is None:
                log.warning("api_schema_not_migrated", schema=schema, missing=exc.missing)
            self._missing = exc.missing
            return
        except (PipelineError, TimeoutError) as exc:
            code = exc.code if isinstance(exc, PipelineError) else "timeout"
            log.warning("api_schema_check_failed", schema=schema, error_code=code)
            return
        if self._missing is not None:
            log.info("api_schema_migrated", schema=schema)
        self._missing = None
        self._migrated = True
