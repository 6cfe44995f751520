"""The scheduler process's loop: lead or stand by; as leader, meter, rescue, refresh jobs, beat.

Wakes on ``NOTIFY imageopt_pending`` (an upstream insert) and on a short tick as a fallback.
Every duty is a ``run_once(now)``; this module only decides when each runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import redis
import structlog

from pipeline import health, metrics
from pipeline.allowlist import ModelSpec
from pipeline.controls import CONTROL_INTERVAL_SECONDS, SubmissionsSwitch
from pipeline.db import connect
from pipeline.errors import DatabaseUnavailable, PipelineError, SchemaNotMigrated
from pipeline.golive import GoLiveReader, GoLiveState
from pipeline.migrate import require_migrated
from pipeline.pollplan import WebhookWaits
from pipeline.provider import ProviderClient
from pipeline.quotas import QuotaConfig, QuotaGate
from pipeline.repository import Repository
from pipeline.storage import ObjectStorage
from pipeline.taskqueue import TaskQueue
from scheduler.callbacks import CallbackConfig, CallbackThread
from scheduler.leader import LeaderLock, SingleConnectionPool
from scheduler.metering import DispatchResult, PendingDispatcher
from scheduler.rescuer import Rescuer, RescuerConfig, RescueResult
from scheduler.retention import RetentionConfig, RetentionThread

log = structlog.get_logger(__name__)
CHANNEL = "imageopt_pending"


@dataclass(frozen=True)
class SchedulerConfig:
    """Intervals in seconds.

    ``tick`` is the fallback wake-up when idle (inserts wake the leader at once by NOTIFY);
    ``busy_tick`` is how soon the leader looks again while the in-flight window is full, so a
    slot freed by a worker is refilled within that time. ``submissions_paused`` is the
    ``IMAGEOPT_SUBMISSIONS_PAUSED`` flag: lead, rescue and beat, but meter nothing; the
    operator switch in Postgres (:mod:`pipeline.controls`) does the same while the leader runs,
    re-read every ``control_interval`` and at each NOTIFY.
    Job counters are recounted every ``jobs_interval`` for the jobs with an item changed since
    the last pass (plus ``jobs_overlap`` for transactions that committed late and for clock
    skew between this host and Postgres, which stamps ``updated_at``), and for every
    active job at leader start and every ``jobs_full_interval``.
    """

    database_url: str
    schema: str
    in_flight_limit: int
    tick: float = 1.0
    busy_tick: float = 0.1
    submissions_paused: bool = False
    control_interval: float = CONTROL_INTERVAL_SECONDS
    standby_retry: float = 1.0
    schema_retry: float = 5.0
    """How often a scheduler whose schema lacks migrations looks again (it logs
    ``schema_not_migrated`` each time and meters nothing)."""
    jobs_interval: float = 2.0
    jobs_full_interval: float = 300.0
    jobs_overlap: float = 30.0
    rescue_interval: float = 15.0
    heartbeat_interval: float = 30.0
    rescuer: RescuerConfig = field(default_factory=RescuerConfig)
    metrics_interval: float = 5.0
    """How often the leader refreshes the backlog gauges from Postgres (pipeline.metrics)."""
    metrics_top_stores: int = 10
    """Stores exported by name on ``imageopt_store_pending_items`` (largest backlogs)."""
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    """Per-store quotas (default off): stores at their quota are not metered."""
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    retention_interval: float = 0.0
    """Seconds between retention runs in the leader (a thread of its own); 0 = none."""
    callbacks: CallbackConfig | None = None
    """Completion callbacks to upstream (a thread of the leader's own); None = none."""


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
        webhook_waits: Callable[[], WebhookWaits] | None = None,
    ) -> None:
        """``webhook_waits``: with webhooks on, how long items wait for their webhook before
        the rescuer polls them (:class:`scheduler.rescuer.Rescuer`); ``None``: webhooks off."""
        self._webhook_waits = webhook_waits
        self._config = config
        self._queue = queue
        self._provider = provider
        self._storage = storage
        self._allowlist = allowlist
        self._rpm_usage = rpm_usage
        self._clock = clock
        self.cycle = 0
        self.last_cycle_at: float | None = None
        """Unix time of the leader's last cycle (shown on the operator console)."""
        self.standby_rounds = 0
        self.is_leader = False

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set: stand by until leading, then lead until the session dies."""
        lock = LeaderLock(self._config.database_url, self._config.schema)
        while not stop.is_set():
            health.SCHEDULER_LOOP.beat()  # liveness: the standby's retry goes round too
            retry = self._config.standby_retry
            try:
                if lock.try_acquire():
                    # Before leading: a schema without this release's migrations is no leader's.
                    require_migrated(
                        Repository(SingleConnectionPool(lock.connection)),  # type: ignore[arg-type]
                        self._config.schema,
                    )
                    self.is_leader = True
                    metrics.SCHEDULER.set_leader(True)
                    log.info("leader_acquired", schema=self._config.schema)
                    self._lead(lock, stop)
                else:
                    # another scheduler leads; counted so a test can tell "stood by" from "slow"
                    self.standby_rounds += 1
                    log.debug("leader_standby", schema=self._config.schema)
            except SchemaNotMigrated as exc:
                # A release started before its migrations ran: say so, and wait for them.
                log.error("schema_not_migrated", schema=self._config.schema, missing=exc.missing)
                retry = max(retry, self._config.schema_retry)
            except (psycopg.Error, DatabaseUnavailable) as exc:
                log.warning("scheduler_database_error", error=type(exc).__name__)
                health.SCHEDULER_LOOP.fault(type(exc).__name__)
            except (redis.RedisError, PipelineError) as exc:
                # Redis restarted or unreachable (broker, limiter): Postgres still holds every
                # item; stand down, retry, and let the rescuer re-send what was lost.
                log.warning("scheduler_dependency_error", error=type(exc).__name__)
                health.SCHEDULER_LOOP.fault(type(exc).__name__)
            finally:
                if self.is_leader:
                    log.info("leader_released", schema=self._config.schema)
                self.is_leader = False
                metrics.SCHEDULER.set_leader(False)
            lock.release()
            stop.wait(retry)

    def _lead(self, lock: LeaderLock, stop: threading.Event) -> None:
        cfg = self._config
        repo = Repository(SingleConnectionPool(lock.connection))  # type: ignore[arg-type]
        switch = SubmissionsSwitch(
            repo, setting=cfg.submissions_paused, interval=cfg.control_interval
        )
        # The leader reads only the models' switches; the flags' start values are the api's.
        golive = GoLiveReader.of(repo, start=GoLiveState({}), interval=cfg.control_interval)
        meter = PendingDispatcher(
            repo=repo,
            allowlist=self._allowlist,
            limit=cfg.in_flight_limit,
            enqueue=self._queue.send_create,
            paused=switch.paused,
            quota=QuotaGate(repo, cfg.quota),
            disabled_models=golive.disabled_models,
        )
        rescuer = Rescuer(
            repo=repo,
            provider=self._provider,
            storage=self._storage,
            send_create=self._queue.send_create,
            send_poll=self._queue.send_poll,
            config=cfg.rescuer,
            webhook_waits=self._webhook_waits,
        )
        self._requeue_unsent(rescuer)
        listener = connect(cfg.database_url, cfg.schema, autocommit=True)
        listener.execute(f"LISTEN {CHANNEL}")
        threads = self._start_threads()
        last_jobs = last_rescue = last_beat = last_metrics = 0.0
        last_full: float | None = None
        try:
            while not stop.is_set():
                if not lock.still_leading():
                    log.warning("leader_lost")
                    return
                self._beat()
                now = self._clock()
                result = meter.run_once(now)
                metrics.SCHEDULER.set_paused(result.paused)
                mono = time.monotonic()
                if last_full is None or mono - last_full >= cfg.jobs_full_interval:
                    repo.refresh_active_jobs()
                    last_jobs = last_full = mono
                elif mono - last_jobs >= cfg.jobs_interval or result.invalid:
                    window = mono - last_jobs + cfg.jobs_overlap
                    repo.refresh_recent_jobs(now - timedelta(seconds=window))
                    last_jobs = mono
                if mono - last_rescue >= cfg.rescue_interval:
                    metrics.record_rescue(rescuer.run_once(now))
                    last_rescue = mono
                if mono - last_beat >= cfg.heartbeat_interval:
                    self._heartbeat(repo, result)
                    last_beat = mono
                if mono - last_metrics >= cfg.metrics_interval:
                    self._export_backlog(repo)
                    last_metrics = mono
                if result.queued or result.invalid:
                    continue  # more may be waiting; go round again at once
                busy = result.saturated and not result.paused
                if self._wait_for_notify(listener, cfg.busy_tick if busy else cfg.tick):
                    switch.refresh()  # an insert or a change of the switch: look again
                    golive.refresh()
        finally:
            for thread in threads:
                thread.stop()
            listener.close()

    def _beat(self) -> None:
        """One leader cycle: counted, exported, and seen by the liveness probe."""
        self.cycle += 1
        self.last_cycle_at = time.time()
        metrics.SCHEDULER.beat(self.last_cycle_at)
        health.SCHEDULER_LOOP.beat()

    def _start_threads(self) -> list[RetentionThread | CallbackThread]:
        """The leader's duties that run in threads of their own (retention, callbacks)."""
        cfg = self._config
        threads: list[RetentionThread | CallbackThread] = []
        if cfg.retention_interval > 0:
            threads.append(
                RetentionThread(
                    database_url=cfg.database_url,
                    schema=cfg.schema,
                    storage=self._storage,
                    config=cfg.retention,
                    interval=cfg.retention_interval,
                    clock=self._clock,
                )
            )
        if cfg.callbacks is not None:
            threads.append(
                CallbackThread(
                    database_url=cfg.database_url, schema=cfg.schema, config=cfg.callbacks
                )
            )
        for thread in threads:
            thread.start()
        return threads

    def _requeue_unsent(self, rescuer: Rescuer) -> None:
        """On taking the lead: the leader before us may have died between its commit and its
        sends (:meth:`scheduler.rescuer.Rescuer.requeue_unsent_queued`)."""
        pending = self._queue.pending_create_items()  # before Postgres is read, on purpose
        unsent = rescuer.requeue_unsent_queued(self._clock(), pending)
        metrics.record_rescue(RescueResult(requeued=unsent))

    def _wait_for_notify(self, listener: psycopg.Connection[Any], timeout: float) -> bool:
        """Wait up to ``timeout`` s for a NOTIFY of this schema; True when one came."""
        for notify in listener.notifies(timeout=timeout, stop_after=1):
            if notify.payload == self._config.schema:
                return True
        return False

    def _export_backlog(self, repo: Repository) -> None:
        """Refresh the leader's backlog gauges (queue depth, stores pending, broker queues)."""
        stores, top = repo.pending_by_store(self._config.metrics_top_stores)
        metrics.SCHEDULER.update(metrics.BacklogSnapshot(
            depths=repo.queue_depths(), stores_pending=stores, top_stores=top,
            broker=self._queue.queue_lengths(), stores_paused=repo.ops_paused_stores(),
        ))  # fmt: skip

    def _heartbeat(self, repo: Repository, result: DispatchResult) -> None:
        """The seed's ``Heartbeat - cycle N | Queue: Q | RPM: used/max (p%)`` as one event."""
        depths = repo.queue_depths()
        log.info(
            "heartbeat",
            cycle=self.cycle,
            queue=depths,
            queue_length=sum(depths.values()),
            in_flight=result.in_flight,
            in_flight_limit=result.limit,
            submissions_paused=result.paused,
            broker=self._queue.queue_lengths(),
            rpm=self._rpm_usage(),
        )
