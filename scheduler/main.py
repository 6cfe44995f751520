"""Entry point of the ``scheduler`` process (``imageopt scheduler``): wire, then run the loop."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

import structlog

from pipeline import health, memtrace, metrics
from pipeline.config import Settings
from pipeline.logging import setup_logging
from pipeline.metrics_server import serve_metrics
from pipeline.pollhints import RuntimeHints
from pipeline.pollplan import WebhookWaits, webhook_waits
from pipeline.prediction_errors import FailureClassifier
from pipeline.presence import PresenceThread
from pipeline.quotas import quota_config
from pipeline.wiring import (
    allowlist,
    build_queue,
    limiters,
    provider_client,
    redis_client,
    storage,
)
from scheduler.callbacks import callback_config
from scheduler.loop import Scheduler, SchedulerConfig
from scheduler.metering import in_flight_limit
from scheduler.rescuer import RescuerConfig
from scheduler.retention import retention_config

log = structlog.get_logger(__name__)


def webhook_waits_of(settings: Settings) -> Callable[[], WebhookWaits] | None:
    """With webhooks on (``IMAGEOPT_WEBHOOK_URL``), how long an item waits for its webhook: the
    model's expected runtime (the median the polling workers publish in Redis, as the first
    poll's delay without webhooks) plus ``IMAGEOPT_WEBHOOK_POLL_GRACE_SECONDS``; read at each
    rescuer pass. ``None`` with webhooks off."""
    if not settings.replicate_webhook_url:
        return None
    hints = RuntimeHints(
        redis_client(settings),
        settings.redis_namespace,
        initial=settings.poll_initial_delay_seconds,
        maximum=settings.poll_max_delay_seconds,
    )
    medians: Callable[[], dict[str, float]] = hints.medians if settings.adaptive_polling else dict
    return lambda: webhook_waits(
        medians(),
        initial=settings.poll_initial_delay_seconds,
        maximum=settings.poll_max_delay_seconds,
        grace=settings.webhook_poll_grace_seconds,
    )


def run(settings: Settings, stop: threading.Event | None = None) -> None:
    """Run a scheduler until SIGTERM/SIGINT (or ``stop``) — leader or standby."""
    setup_logging(settings, process="scheduler")
    memtrace.start_from_env("scheduler")  # a debugging switch; off unless its variable is set
    stop = stop or threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("scheduler_stopping", signal=signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    create_limiter, read_limiter = limiters(settings, redis_client(settings))

    def rpm_usage() -> dict[str, object]:
        usage: dict[str, object] = {}
        for limiter in (create_limiter, read_limiter):
            stats = limiter.stats()
            usage[limiter.budget.name] = (
                f"{stats.granted_in_window}/{stats.budget_rpm} ({stats.usage_percent:.1f}%)"
            )
        return usage

    config = SchedulerConfig(
        database_url=settings.database_url,
        schema=settings.db_schema,
        in_flight_limit=in_flight_limit(
            settings.create_rpm, settings.in_flight_budget_seconds, settings.min_in_flight
        ),
        tick=settings.scheduler_tick_seconds,
        busy_tick=settings.scheduler_busy_tick_seconds,
        submissions_paused=settings.submissions_paused,
        heartbeat_interval=settings.heartbeat_seconds,
        rescue_interval=settings.rescue_interval_seconds,
        rescuer=RescuerConfig(
            max_age=settings.item_max_age_seconds,
            queued_timeout=settings.rescue_queued_seconds,
            processing_timeout=settings.rescue_processing_seconds
            or max(60.0, 3 * settings.poll_max_delay_seconds),
            submitting_timeout=settings.rescue_submitting_seconds,
            failures=FailureClassifier(settings.input_fetch_error_pattern),
        ),
        quota=quota_config(settings),
        retention=retention_config(settings),
        retention_interval=settings.retention_interval_seconds,
        callbacks=callback_config(settings),
        metrics_interval=settings.metrics_refresh_seconds,
        metrics_top_stores=settings.metrics_top_stores,
    )
    scheduler = Scheduler(
        config=config,
        queue=build_queue(settings),
        provider=provider_client(settings),
        storage=storage(settings),
        allowlist=allowlist(settings),
        rpm_usage=rpm_usage,
        webhook_waits=webhook_waits_of(settings),
    )
    metrics.initialize_scheduler_series()
    metrics.register_collectors(metrics.SCHEDULER, metrics.LimiterCollector(
        [create_limiter, read_limiter]))  # fmt: skip
    limit = settings.scheduler_liveness_seconds
    probes = {"/livez": lambda: health.SCHEDULER_LOOP.liveness(limit),
              "/readyz": lambda: health.SCHEDULER_LOOP.readiness(limit)}  # fmt: skip
    server = serve_metrics(settings.metrics_host, settings.scheduler_metrics_port, probes=probes)
    presence = PresenceThread(
        redis_client(settings), settings.redis_namespace, "scheduler",
        info=lambda: {"leader": scheduler.is_leader, "cycle": scheduler.cycle,
                      "last_cycle_at": scheduler.last_cycle_at},
    )  # fmt: skip
    presence.start()
    log.info("scheduler_started", schema=settings.db_schema, in_flight_limit=config.in_flight_limit)
    try:
        scheduler.run(stop)
    finally:
        presence.close()
        if server is not None:
            server.close()
    log.info("scheduler_stopped")
