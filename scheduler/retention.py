"""Retention: a scheduled cleanup of old objects and rows (seed: inputs 24 h, outputs 30 d,
database rows 90 d; each configurable).

Three duties, each by completion time (``completed_at`` of a finished item or job):

* **inputs** (``inputs/…``, the normalized source sent to the provider) of finished items
  older than ``inputs_seconds``: object deleted, ``input_deleted_at`` set;
* **outputs** (``results/…``) of DONE items older than ``outputs_seconds``: object deleted,
  ``output_deleted_at`` set (``output_key`` stays, so upstream sees the result expired);
* **rows**: finished jobs older than ``rows_seconds`` whose items are all final: any objects
  still stored are deleted, then the item rows, then the job row.

Unfinished items are never touched, and a retried item (back to PENDING) stops being due.
A run deletes at most ``batch`` objects/jobs per duty per round and at most ``max_rounds``
rounds, so a backlog drains over several runs without a long stall. ``dry_run`` only counts.
Counts go to the ``retention_run`` log line and ``imageopt_retention_deleted_total{kind}``.
The scheduler leader runs :meth:`Retention.run_once` every ``IMAGEOPT_RETENTION_INTERVAL_SECONDS``
in a thread of its own (:class:`RetentionThread`);
``imageopt retention [--dry-run]`` runs it by hand. Each run logs ``retention_run`` with counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import structlog

from pipeline import metrics
from pipeline.config import Settings
from pipeline.errors import PipelineError, StorageError
from pipeline.repository import Repository
from pipeline.storage import ObjectStorage

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetentionConfig:
    """Ages in seconds (defaults from the seed); ``batch`` rows per query."""

    inputs_seconds: float = 24 * 3600.0
    outputs_seconds: float = 30 * 86_400.0
    rows_seconds: float = 90 * 86_400.0
    batch: int = 500
    max_rounds: int = 50
    dry_run: bool = False


@dataclass(frozen=True)
class RetentionResult:
    """Counts of one run (what would be deleted, when ``dry_run``)."""

    dry_run: bool
    inputs_deleted: int = 0
    outputs_deleted: int = 0
    jobs_deleted: int = 0
    items_deleted: int = 0
    storage_errors: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Retention:
    """The retention duty (``run_once(now)``, as every scheduler service)."""

    def __init__(
        self,
        *,
        repo: Repository,
        storage: ObjectStorage,
        config: RetentionConfig,
        on_result: Callable[[RetentionResult], None] | None = None,
    ) -> None:
        self._repo = repo
        self._storage = storage
        self._config = config
        self._on_result = on_result

    def run_once(self, now: datetime) -> RetentionResult:
        """Delete (or, in dry-run mode, count) everything due at ``now``."""
        cfg = self._config
        input_cutoff = now - timedelta(seconds=cfg.inputs_seconds)
        output_cutoff = now - timedelta(seconds=cfg.outputs_seconds)
        rows_cutoff = now - timedelta(seconds=cfg.rows_seconds)
        if cfg.dry_run:
            counts = self._repo.retention_counts(input_cutoff, output_cutoff, rows_cutoff)
            result = RetentionResult(
                True, counts["inputs"], counts["outputs"], counts["jobs"], counts["items"]
            )
        else:
            errors = 0
            inputs, e = self._expire(
                self._repo.retention_due_inputs,
                "input_key",
                self._repo.mark_inputs_deleted,
                input_cutoff,
                now,
            )
            errors += e
            outputs, e = self._expire(
                self._repo.retention_due_outputs,
                "output_key",
                self._repo.mark_outputs_deleted,
                output_cutoff,
                now,
            )
            errors += e
            jobs, items, e = self._delete_rows(rows_cutoff, now)
            errors += e
            result = RetentionResult(False, inputs, outputs, jobs, items, errors)
        log.info("retention_run", **result.as_dict())
        if not result.dry_run:
            for kind, count in (
                ("inputs", result.inputs_deleted),
                ("outputs", result.outputs_deleted),
                ("jobs", result.jobs_deleted),
                ("items", result.items_deleted),
            ):
                metrics.RETENTION_DELETED_TOTAL.labels(kind).inc(count)
        if self._on_result is not None:
            self._on_result(result)
        return result

    def _delete_objects(self, keys: list[str]) -> tuple[set[str], int]:
        gone: set[str] = set()
        errors = 0
        for key in keys:
            try:
                self._storage.delete(key)  # deleting a missing key is not an error in S3
                gone.add(key)
            except StorageError as exc:
                errors += 1
                log.warning("retention_delete_failed", key=key, error_code=exc.code)
        return gone, errors

    def _expire(
        self,
        due: Callable[[datetime, int], list[dict[str, object]]],
        key_column: str,
        mark: Callable[[list[int], datetime], int],
        cutoff: datetime,
        now: datetime,
    ) -> tuple[int, int]:
        total = errors = 0
        for _ in range(self._config.max_rounds):
            rows = due(cutoff, self._config.batch)
            if not rows:
                break
            gone, failed = self._delete_objects([str(r[key_column]) for r in rows])
            errors += failed
            total += mark([int(str(r["id"])) for r in rows if str(r[key_column]) in gone], now)
            if failed or len(rows) < self._config.batch:
                break
        return total, errors

    def _delete_rows(self, cutoff: datetime, now: datetime) -> tuple[int, int, int]:
        jobs = items = errors = 0
        for _ in range(self._config.max_rounds):
            job_ids = self._repo.retention_due_jobs(cutoff, self._config.batch)
            if not job_ids:
                break
            keys: list[str] = []
            for row in self._repo.retention_job_objects(job_ids):
                if row["input_key"]:
                    keys.append(str(row["input_key"]))
                if row["output_key"]:
                    keys.append(str(row["output_key"]))
            _, failed = self._delete_objects(keys)
            if failed:  # keep the rows (and their keys) so the next run can try again
                errors += failed
                break
            j, i = self._repo.delete_jobs(job_ids)
            jobs += j
            items += i
            if len(job_ids) < self._config.batch:
                break
        return jobs, items, errors


class RetentionThread:
    """Runs :meth:`Retention.run_once` every ``interval`` seconds in a daemon thread.

    The scheduler leader starts one while it leads, so a large backlog of deletions never
    delays metering. It uses its own one-connection pool. Two runs at once (a leader change)
    are harmless: every deletion is conditional and deleting a missing object succeeds.
    """

    def __init__(
        self,
        *,
        database_url: str,
        schema: str,
        storage: ObjectStorage,
        config: RetentionConfig,
        interval: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._database_url = database_url
        self._schema = schema
        self._storage = storage
        self._config = config
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        from pipeline.db import create_pool  # noqa: PLC0415 - only the scheduler needs a pool

        try:
            pool = create_pool(self._database_url, self._schema, max_size=1, name="retention")
        except Exception as exc:  # noqa: BLE001 - a thread must log, not die silently
            log.warning("retention_failed", error=type(exc).__name__)
            return
        try:
            retention = Retention(repo=Repository(pool), storage=self._storage, config=self._config)
            while not self._stop.is_set():
                try:
                    retention.run_once(self._clock())
                except PipelineError as exc:
                    log.warning("retention_failed", error_code=exc.code)
                self._stop.wait(self._interval)
        finally:
            pool.close()


def retention_config(settings: Settings, *, dry_run: bool | None = None) -> RetentionConfig:
    """The retention settings of a process (``IMAGEOPT_RETENTION_*``).

    Args:
        settings: the process settings.
        dry_run: overrides ``IMAGEOPT_RETENTION_DRY_RUN`` (the CLI's ``--dry-run``).
    """
    return RetentionConfig(
        inputs_seconds=settings.retention_inputs_seconds,
        outputs_seconds=settings.retention_outputs_seconds,
        rows_seconds=settings.retention_rows_seconds,
        dry_run=settings.retention_dry_run if dry_run is None else dry_run,
    )
