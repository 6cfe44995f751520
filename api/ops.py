"""Operations endpoints: liveness, readiness, the seed's rate-limiter stats, metrics.

These keep their own small JSON shapes (not the envelope): probes and the seed's ops scripts
(``curl .../api/replicate-rate-limiter/stats | jq``) read them as they are. None needs
credentials and none shows a secret: figures only.
"""

from __future__ import annotations

from typing import Any

import anyio
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.context import ApiContext
from pipeline.controls import SUBMISSIONS_PAUSED, PauseState, pause_state
from pipeline.errors import PipelineError
from pipeline.migrate import require_migrated
from pipeline.ratelimit import LimiterStats
from pipeline.statuses import ItemStatus

log = structlog.get_logger(__name__)

PROBE_TIMEOUT_SECONDS = 3.0
"""Each readiness check gives up after this long (a probe must answer well within its own
timeout; Kubernetes' default is 1 s, so set ``timeoutSeconds`` >= 4 for this probe)."""
NO_STORE = {"Cache-Control": "no-store"}


async def healthz(request: Request) -> Response:
    """``GET /healthz``: the process is alive (no dependency is touched)."""
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


async def _check(name: str, fn: Any) -> tuple[str, str]:
    try:
        with anyio.fail_after(PROBE_TIMEOUT_SECONDS):
            await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)
    except TimeoutError:
        return name, "timeout"
    except PipelineError as exc:
        return name, f"error: {exc.code}"
    except Exception as exc:  # noqa: BLE001 - a probe reports every failure, never raises
        return name, f"error: {type(exc).__name__}"
    return name, "ok"


async def readyz(request: Request) -> Response:
    """``GET /readyz``: Postgres, Redis and the bucket answer and the schema has every
    migration of this release (200), or which do not (503)."""
    ctx: ApiContext = request.app.state.ctx
    results: dict[str, str] = {}

    async def run(name: str, fn: Any) -> None:
        key, value = await _check(name, fn)
        results[key] = value

    async with anyio.create_task_group() as group:
        group.start_soon(run, "postgres", ctx.repo.api_ping)
        group.start_soon(run, "schema", lambda: require_migrated(ctx.repo, ctx.settings.db_schema))
        group.start_soon(run, "redis", ctx.redis.ping)
        group.start_soon(run, "storage", ctx.storage.ping)
    ready = all(value == "ok" for value in results.values())
    if not ready:
        log.warning("api_not_ready", **results)
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": dict(sorted(results.items()))},
        status_code=200 if ready else 503,
        headers=NO_STORE,
    )


def limiter_view(stats: LimiterStats) -> dict[str, Any]:
    """One budget in the seed's shape, plus what our limiter knows besides."""
    return {
        "requestsInLastMinute": stats.granted_in_window,
        "maxRPM": stats.budget_rpm,
        "rpmUsagePercent": round(stats.usage_percent, 1),
        "waitingForToken": stats.waiting,
        "windowSeconds": stats.window_seconds,
        "pausedUntil": stats.paused_until,
        "pauseReason": stats.pause_reason,
    }


def stats_payload(
    depths: dict[str, int],
    create: LimiterStats,
    read: LimiterStats,
    queue_healthy_max: int,
    rpm_healthy_max_percent: float,
    *,
    pause: PauseState | None = None,
    paused_stores: int = 0,
) -> dict[str, Any]:
    """The stats document (seed 003 "Rate Limiter Stats"), plus whether submissions are paused.

    ``queueLength`` counts items waiting for their turn: PENDING (not yet metered) plus QUEUED
    (metered, waiting for a worker) — the seed's queue of jobs not yet sent to the provider.
    Health thresholds are seed 003's: queue < 500, RPM usage <= 95 %. ``submissions`` shows
    the pause (:mod:`pipeline.controls`) without its reason or author: this document needs no
    credentials. ``submissions.pausedStores`` counts the stores an operator paused (their
    items stay PENDING; which ones, only the ``/ops`` console shows).
    """
    pause = pause or PauseState(False)
    queue_length = depths.get(ItemStatus.PENDING, 0) + depths.get(ItemStatus.QUEUED, 0)
    rate = {"queueLength": queue_length, **limiter_view(create)}
    return {
        "status": "ok",
        "rateLimiter": rate,
        "readRateLimiter": limiter_view(read),
        "queue": depths,
        "submissions": {
            "paused": pause.paused,
            "pausedSince": pause.changed_at.isoformat() if pause.changed_at else None,
            "pausedStores": paused_stores,
        },
        "health": {
            "queueHealthy": queue_length < queue_healthy_max,
            "rpmHealthy": create.usage_percent <= rpm_healthy_max_percent,
            "readRpmHealthy": read.usage_percent <= rpm_healthy_max_percent,
        },
    }


def _gather(ctx: ApiContext) -> dict[str, Any]:
    pause = pause_state(ctx.settings.submissions_paused, ctx.repo.get_control(SUBMISSIONS_PAUSED))
    return stats_payload(
        ctx.repo.queue_depths(),
        ctx.create_limiter.stats(),
        ctx.read_limiter.stats(),
        ctx.settings.api_queue_healthy_max,
        ctx.settings.api_rpm_healthy_max_percent,
        pause=pause,
        paused_stores=ctx.repo.ops_paused_stores(),
    )


async def limiter_stats(request: Request) -> Response:
    """``GET /api/replicate-rate-limiter/stats``: the seed's document (503 when Postgres or
    Redis cannot answer)."""
    ctx: ApiContext = request.app.state.ctx
    try:
        with anyio.fail_after(PROBE_TIMEOUT_SECONDS * 2):
            payload = await anyio.to_thread.run_sync(_gather, ctx, abandon_on_cancel=True)
    except (PipelineError, TimeoutError) as exc:
        code = exc.code if isinstance(exc, PipelineError) else "timeout"
        log.warning("api_stats_unavailable", error_code=code)
        return JSONResponse({"status": "error", "error": code}, status_code=503, headers=NO_STORE)
    return JSONResponse(payload, headers=NO_STORE)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/api/replicate-rate-limiter/stats", limiter_stats, methods=["GET"]),
]
