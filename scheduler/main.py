"""Entry point of the ``scheduler`` process (``imageopt scheduler``): wire, then run the loop."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import structlog

from pipeline.config import Settings
from pipeline.metering import in_flight_limit
from pipeline.rescuer import RescuerConfig
from pipeline.scheduling import Scheduler, SchedulerConfig
from pipeline.wiring import (
    allowlist,
    build_queue,
    limiters,
    provider_client,
    redis_client,
    setup_logging,
    storage,
)

log = structlog.get_logger(__name__)


def run(settings: Settings, stop: threading.Event | None = None) -> None:
    """Run a scheduler until SIGTERM/SIGINT (or ``stop``) — leader or standby."""
    setup_logging(settings)
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
            usage[limiter.budget.name] = f"{stats.granted_in_window}/{stats.budget_rpm} ({stats.usage_percent:.1f}%)"
        return usage

    config = SchedulerConfig(
        database_url=settings.database_url,
        schema=settings.db_schema,
        in_flight_limit=in_flight_limit(settings.create_rpm, settings.in_flight_budget_seconds,
                                        settings.min_in_flight),
        tick=settings.scheduler_tick_seconds,
        heartbeat_interval=settings.heartbeat_seconds,
        rescuer=RescuerConfig(max_age=settings.item_max_age_seconds,
                              processing_timeout=max(60.0, 3 * settings.poll_max_delay_seconds)),
    )
    scheduler = Scheduler(
        config=config,
        queue=build_queue(settings),
        provider=provider_client(settings),
        storage=storage(settings),
        allowlist=allowlist(settings),
        rpm_usage=rpm_usage,
    )
    log.info("scheduler_started", schema=settings.db_schema, in_flight_limit=config.in_flight_limit)
    scheduler.run(stop)
    log.info("scheduler_stopped")
