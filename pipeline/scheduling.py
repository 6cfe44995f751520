"""The scheduler process's loop: lead or stand by; as leader, meter, rescue, refresh jobs, beat.

Wakes on ``NOTIFY imageopt_pending`` (an upstream insert) and on a short tick as a fallback.
Every duty is a ``run_once(now)``; this module only decides when each runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog

from pipeline.db import connect
from pipeline.errors import DatabaseUnavailable
from pipeline.leader import LeaderLock, SessionPool
from pipeline.metering import Meter
from pipeline.models import ModelSpec
from pipeline.provider import ProviderClient
from pipeline.repository import Repository
from pipeline.rescuer import Rescuer, RescuerConfig
from pipeline.storage import ObjectStorage
from pipeline.taskqueue import TaskQueue

log = structlog.get_logger(__name__)
CHANNEL = "imageopt_pending"


@dataclass(frozen=True)
class SchedulerConfig:
    """Intervals in seconds."""

    database_url: str
    schema: str
    in_flight_limit: int
    tick: float = 1.0
    standby_retry: float = 1.0
    jobs_interval: float = 2.0
    rescue_interval: float = 15.0
    heartbeat_interval: float = 30.0
    rescuer: RescuerConfig = RescuerConfig()


class Scheduler:
    """One scheduler process (leader or standby)."""

    def __init__(
        self,
        *,
        config: SchedulerConfig,
        queue: TaskQueue,
        provider: ProviderClient,
        storage: ObjectStorage,
        allowlist: dict[str, ModelSpec],
        rpm_usage: Callable[[], dict[str, Any]] = dict,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._queue = queue
        self._provider = provider
        self._storage = storage
        self._allowlist = allowlist
        self._rpm_usage = rpm_usage
        self._clock = clock
        self.cycle = 0
        self.is_leader = False

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set: stand by until leading, then lead until the session dies."""
        lock = LeaderLock(self._config.database_url, self._config.schema)
        while not stop.is_set():
            try:
                if lock.try_acquire():
                    self.is_leader = True
                    log.info("leader_acquired", schema=self._config.schema)
                    self._lead(lock, stop)
            except (psycopg.Error, DatabaseUnavailable) as exc:
                log.warning("scheduler_database_error", error=type(exc).__name__)
            finally:
                if self.is_leader:
                    log.info("leader_released", schema=self._config.schema)
                self.is_leader = False
            lock.release()
            stop.wait(self._config.standby_retry)

    def _lead(self, lock: LeaderLock, stop: threading.Event) -> None:
        cfg = self._config
        repo = Repository(SessionPool(lock.connection))  # type: ignore[arg-type]
        meter = Meter(repo=repo, allowlist=self._allowlist, limit=cfg.in_flight_limit,
                      enqueue=self._queue.send_create)
        rescuer = Rescuer(repo=repo, provider=self._provider, storage=self._storage,
                          send_create=self._queue.send_create, send_poll=self._queue.send_poll,
                          config=cfg.rescuer)
        listener = connect(cfg.database_url, cfg.schema, autocommit=True)
        listener.execute(f"LISTEN {CHANNEL}")
        last_jobs = last_rescue = last_beat = 0.0
        try:
            while not stop.is_set():
                if not lock.still_leading():
                    log.warning("leader_lost")
                    return
                self.cycle += 1
                now = self._clock()
                result = meter.run_once(now)
                mono = time.monotonic()
                if mono - last_jobs >= cfg.jobs_interval or result.invalid:
                    repo.refresh_active_jobs()
                    last_jobs = mono
                if mono - last_rescue >= cfg.rescue_interval:
                    rescuer.run_once(now)
                    last_rescue = mono
                if mono - last_beat >= cfg.heartbeat_interval:
                    self._heartbeat(repo)
                    last_beat = mono
                if result.queued or result.invalid:
                    continue  # more may be waiting; go round again at once
                self._wait_for_notify(listener, cfg.tick)
        finally:
            listener.close()

    def _wait_for_notify(self, listener: psycopg.Connection[Any], timeout: float) -> None:
        for notify in listener.notifies(timeout=timeout, stop_after=1):
            if notify.payload == self._config.schema:
                return

    def _heartbeat(self, repo: Repository) -> None:
        depths = repo.queue_depths()
        log.info("heartbeat", cycle=self.cycle, queue=depths, queue_length=sum(depths.values()),
                 broker=self._queue.queue_lengths(), rpm=self._rpm_usage())
