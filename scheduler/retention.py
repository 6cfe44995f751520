"""Retention: a scheduled cleanup of old objects and rows (seed: inputs 24 h, outputs 30 d,
database rows 90 d; each configurable).

Five duties, each by completion time (``completed_at`` of a finished item or job):

* **inputs** of finished items completed more than ``inputs_seconds`` ago: the normalized input
  (``inputs/…``, sent to the provider) is deleted and ``input_deleted_at`` set. This also
  releases the item's claim on its uploaded original, if its source is one;
* **originals** (``uploads/…``: the user's own photos from ``imageopt submit FOLDER``, API and
  console uploads): an upload is deleted once every item whose ``source_url`` names it has had
  its inputs deleted, and ``source_deleted_at`` is set on those items. Several items may name
  one upload; it goes only when none needs it any more;
* **outputs** (``results/…``) of DONE items older than ``outputs_seconds``: object deleted,
  ``output_deleted_at`` set (``output_key`` stays, so upstream sees the result expired);
* **rows**: finished jobs older than ``rows_seconds`` whose items are all final: any objects
  still stored (uploads too, unless an item of another job still needs one) are deleted, then
  the item rows, then the job row;
* **guest sessions** of the console that expired before now are deleted (an expired session
  no longer signs anyone in; the guest's jobs follow the duties above).

Objects go in S3 batch deletes (:meth:`ObjectStorage.delete_many`); a key the store refuses is
logged (``retention_delete_failed`` with the S3 error code), counted in ``storage_errors`` and
its row kept, so the next run tries again. Unfinished items are never touched, and a retried
item (back to PENDING) stops being due. Every step is safe to run twice or in two processes at
once: marks are conditional UPDATEs and deleting a missing key succeeds.
A run deletes at most ``batch`` objects/jobs per duty per round and at most ``max_rounds``
rounds, so a backlog drains over several runs without a long stall. ``dry_run`` only counts.
Counts go to the ``retention_run`` log line and ``imageopt_retention_deleted_total{kind}``.
The scheduler leader runs :meth:`Retention.run_once` every ``IMAGEOPT_RETENTION_INTERVAL_SECONDS``
in a thread of its own (:class:`RetentionThread`);
``imageopt retention [--dry-run]`` runs it by hand. Each run logs ``retention_run`` with counts.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import structlog

from pipeline import metrics
from pipeline.config import Settings
from pipeline.errors import PipelineError, StorageError
from pipeline.repository import Repository
from pipeline.rows import StoredObject
from pipeline.storage import ObjectStorage
from pipeline.uploads import upload_key_of

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
    """Counts of one run (what would be deleted, when ``dry_run``).

    Attributes:
        dry_run: nothing was deleted, the counts are what is due.
        inputs_deleted: items whose inputs were deleted (normalized input, upload released).
        outputs_deleted: results deleted.
        jobs_deleted: job rows deleted.
        items_deleted: item rows deleted.
        storage_errors: keys the store failed to delete (kept, tried again next run).
        originals_deleted: uploaded originals deleted (a dry run counts those due by the
            inputs window only).
        guest_sessions_deleted: expired guest sessions deleted.
    """

    dry_run: bool
    inputs_deleted: int = 0
    outputs_deleted: int = 0
    jobs_deleted: int = 0
    items_deleted: int = 0
    storage_errors: int = 0
    originals_deleted: int = 0
    guest_sessions_deleted: int = 0

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
        on_phase: Callable[[str, int], None] | None = None,
    ) -> None:
        """Args:
        repo, storage, config: where and what to delete.
        on_result: called with every run's result (the scheduler's metrics).
        on_phase: called after each phase of a deleting run with its name (``inputs``,
            ``originals``, ``outputs``, ``rows``, ``guest_sessions``) and how many it deleted
            (items for ``rows``): the CLI's progress on a terminal.
        """
        self._repo = repo
        self._storage = storage
        self._bucket = storage.bucket
        self._config = config
        self._on_result = on_result
        self._on_phase = on_phase or (lambda _phase, _count: None)

    def run_once(self, now: datetime) -> RetentionResult:
        """Delete (or, in dry-run mode, count) everything due at ``now``.

        Raises:
            DatabaseUnavailable: Postgres cannot be reached (objects deleted so far stay
                deleted; their rows are marked by the next run).
        """
        cfg = self._config
        input_cutoff = now - timedelta(seconds=cfg.inputs_seconds)
        output_cutoff = now - timedelta(seconds=cfg.outputs_seconds)
        rows_cutoff = now - timedelta(seconds=cfg.rows_seconds)
        if cfg.dry_run:
            counts = self._repo.retention_counts(
                input_cutoff, output_cutoff, rows_cutoff, now=now, bucket=self._bucket
            )
            result = RetentionResult(
                dry_run=True,
                inputs_deleted=counts["inputs"],
                outputs_deleted=counts["outputs"],
                jobs_deleted=counts["jobs"],
                items_deleted=counts["items"],
                originals_deleted=counts["originals"],
                guest_sessions_deleted=counts["guest_sessions"],
            )
        else:
            inputs, e_inputs = self._expire(
                lambda limit: self._repo.retention_due_inputs(input_cutoff, limit, self._bucket),
                self._repo.mark_inputs_deleted,
                now,
            )
            self._on_phase("inputs", inputs)
            originals, e_originals = self._delete_originals(now)
            self._on_phase("originals", originals)
            outputs, e_outputs = self._expire(
                lambda limit: self._repo.retention_due_outputs(output_cutoff, limit),
                self._repo.mark_outputs_deleted,
                now,
            )
            self._on_phase("outputs", outputs)
            jobs, items, with_rows, e_rows = self._delete_rows(rows_cutoff)
            self._on_phase("rows", items)
            sessions = self._prune_guest_sessions(now)
            self._on_phase("guest_sessions", sessions)
            result = RetentionResult(
                dry_run=False,
                inputs_deleted=inputs,
                outputs_deleted=outputs,
                jobs_deleted=jobs,
                items_deleted=items,
                storage_errors=e_inputs + e_originals + e_outputs + e_rows,
                originals_deleted=originals + with_rows,
                guest_sessions_deleted=sessions,
            )
        log.info("retention_run", **result.as_dict())
        if not result.dry_run:
            for kind, count in (
                ("inputs", result.inputs_deleted),
                ("outputs", result.outputs_deleted),
                ("originals", result.originals_deleted),
                ("jobs", result.jobs_deleted),
                ("items", result.items_deleted),
                ("guest_sessions", result.guest_sessions_deleted),
            ):
                metrics.RETENTION_DELETED_TOTAL.labels(kind).inc(count)
        if self._on_result is not None:
            self._on_result(result)
        return result

    def _delete_objects(self, keys: Iterable[str]) -> tuple[frozenset[str], int]:
        """Batch-delete ``keys``; returns the keys gone and how many the store refused."""
        wanted = set(keys)
        if not wanted:
            return frozenset(), 0
        try:
            outcome = self._storage.delete_many(wanted)
        except StorageError as exc:  # the whole request failed: nothing is known to be gone
            log.warning("retention_delete_failed", keys=len(wanted), error_code=exc.code)
            return frozenset(), len(wanted)
        for key, code in sorted(outcome.failed.items()):
            log.warning("retention_delete_failed", key=key, error_code=code)
        return outcome.deleted, len(outcome.failed)

    def _expire(
        self,
        due: Callable[[int], list[StoredObject]],
        mark: Callable[[list[int], datetime], int],
        now: datetime,
    ) -> tuple[int, int]:
        """Delete the objects of due rows and mark the rows whose object is gone (a row with
        no key, an upload-only input, is marked at once); returns ``(marked, errors)``."""
        total = errors = 0
        for _ in range(self._config.max_rounds):
            rows = due(self._config.batch)
            if not rows:
                break
            gone, failed = self._delete_objects(r.key for r in rows if r.key)
            errors += failed
            ids = [r.id for r in rows if not r.key or r.key in gone]
            total += mark(ids, now)
            # A refused key is due again next round: stop when a round gets nowhere.
            if not ids or len(rows) < self._config.batch:
                break
        return total, errors

    def _delete_originals(self, now: datetime) -> tuple[int, int]:
        """Delete uploads no item needs any more and mark their items; ``(deleted, errors)``."""
        total = errors = 0
        for _ in range(self._config.max_rounds):
            urls = self._repo.retention_due_originals(self._bucket, self._config.batch)
            if not urls:
                break
            keys = {url: upload_key_of(url, self._bucket) for url in urls}
            gone, failed = self._delete_objects(key for key in keys.values() if key)
            errors += failed
            done = [url for url, key in keys.items() if key in gone]
            total += len(self._repo.mark_originals_deleted(done, now))
            if not done or len(urls) < self._config.batch:
                break
        return total, errors

    def _delete_rows(self, cutoff: datetime) -> tuple[int, int, int, int]:
        """Delete due jobs: their objects first, then their rows, job by job (a job with a key
        the store refused keeps its rows). Returns ``(jobs, items, originals, errors)``."""
        jobs = items = originals = errors = 0
        for _ in range(self._config.max_rounds):
            job_ids = self._repo.retention_due_jobs(cutoff, self._config.batch)
            if not job_ids:
                break
            owners: dict[str, set[int]] = defaultdict(set)
            for objects in self._repo.retention_job_objects(job_ids):
                for stored in (objects.input_key, objects.output_key):
                    if stored:
                        owners[stored].add(objects.job_id)
            upload_keys: set[str] = set()
            for original in self._repo.retention_job_originals(job_ids, self._bucket):
                key = upload_key_of(original.source_url, self._bucket)
                if key is not None:
                    owners[key].add(original.job_id)
                    upload_keys.add(key)
            gone, failed = self._delete_objects(owners)
            errors += failed
            blocked = {job for key, held in owners.items() if key not in gone for job in held}
            originals += len(upload_keys & gone)
            deletable = [job for job in job_ids if job not in blocked]
            j, i = self._repo.delete_jobs(deletable)
            jobs += j
            items += i
            # Blocked jobs come first again next round: stop when a round gets nowhere.
            if not deletable or len(job_ids) < self._config.batch:
                break
        return jobs, items, originals, errors

    def _prune_guest_sessions(self, now: datetime) -> int:
        total = 0
        for _ in range(self._config.max_rounds):
            pruned = self._repo.prune_guest_sessions(now, self._config.batch)
            total += pruned
            if pruned < self._config.batch:
                break
        return total


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
