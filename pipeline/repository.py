"""The only module that runs SQL: named queries from ``sql/queries.sql`` over a connection pool.

psycopg errors are translated here into :class:`pipeline.errors.DatabaseUnavailable`, so callers
never see a driver exception.

Size: by design the one module that names queries (procrastinate's manager does the same), so
it grows with ``queries.sql``; each method is a thin, typed wrapper of one named query, grouped
by subject below.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg_pool import ConnectionPool

from pipeline.errors import DatabaseUnavailable
from pipeline.pollplan import WebhookWaits
from pipeline.queries import load_queries
from pipeline.rows import (
    CanceledItem,
    ExpiredItem,
    JobChange,
    JobObjects,
    JobOriginal,
    PendingItem,
    QuotaUsage,
    Row,
    StaleSubmission,
    StoredObject,
    WorkItem,
)
from pipeline.statuses import NON_FINAL_ITEM_STATUSES, ItemStatus

__all__ = ["ApiQuotas", "ApiUsage", "NewJob", "Repository", "Row"]
STORE_DEFAULTS: Mapping[str, Any] = {"weight": 1, "quota": None, "paused": False}
"""A store's settings while it has no row in image_optimization_stores."""


@dataclass(frozen=True)
class NewJob:
    """A job to insert with its items.

    Attributes:
        items: mappings with ``source_url`` and optional ``prompt``, ``model``, ``params``,
            ``priority``, ``preset`` (overrides the job's).
    """

    store_id: str
    model: str
    prompt: str | None
    params: Mapping[str, Any]
    preset: str | None
    items: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class ApiQuotas:
    """The item quotas an API caller's new items count against, over one rolling window.

    Attributes:
        owner_type: ``guest`` or ``store``.
        owner_id: the guest's id, or the store id.
        store_id: the store the items run under.
        owner_limit: items per window for this owner; 0 = none.
        client_network: the guest's client network (:mod:`api.addresses`), or None.
        network_limit: items per window for every guest of that network together; 0 = none.
        window_seconds: the rolling window, seconds (86 400: the seed's 24 h).
    """

    owner_type: str
    owner_id: str
    store_id: str
    owner_limit: int
    client_network: str | None
    network_limit: int
    window_seconds: float

    def lock_keys(self) -> list[str]:
        """The advisory-lock keys of the limited quotas (``owner:...``, ``network:...``)."""
        keys = []
        if self.owner_limit > 0:
            keys.append(f"owner:{self.owner_type}:{self.owner_id}")
        if self.network_limit > 0 and self.client_network is not None:
            keys.append(f"network:{self.client_network}")
        return keys


@dataclass(frozen=True)
class ApiUsage:
    """One quota's use within the window.

    Attributes:
        scope: ``owner`` (a guest, or a store's API callers) or ``address`` (every guest of
            one client network).
        limit: items allowed per window (> 0).
        used: items created within the window.
        frees_at: when the oldest counted item leaves the window (None when nothing counted).
    """

    scope: str
    limit: int
    used: int
    frees_at: datetime | None

    def room_for(self, items: int) -> bool:
        """Whether ``items`` more fit within the limit."""
        return self.used + items <= self.limit


class Repository:
    """Typed access to the jobs and items tables.

    Args:
        pool: a pool from :func:`pipeline.db.create_pool` (connections on the project schema).
    """

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self._pool = pool
        self._q = load_queries()

    # --- plumbing -----------------------------------------------------------------------
    def transaction(self) -> AbstractContextManager[object]:
        """One transaction around several calls, where the pool supports it (the scheduler's
        leader session does; a psycopg-pool commits per call and this is then a no-op)."""
        begin = getattr(self._pool, "transaction", None)
        return begin() if begin is not None else nullcontext()

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        try:
            with self._pool.connection() as conn, conn.cursor() as cur:
                yield cur
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(
                f"database unavailable: {exc.sqlstate or 'connection'}"
            ) from exc

    def _all(self, name: str, **params: Any) -> list[Row]:
        with self._cursor() as cur:
            cur.execute(self._q[name], params)
            return list(cur.fetchall()) if cur.description else []

    def _one(self, name: str, **params: Any) -> Row | None:
        rows = self._all(name, **params)
        return rows[0] if rows else None

    # --- scheduler: metering ------------------------------------------------------------
    def count_in_flight(self) -> int:
        row = self._one("count_in_flight")
        return int(row["n"]) if row else 0

    def pending_stores(self) -> list[tuple[str, int]]:
        """Stores with PENDING items and their weights, ordered by store id."""
        return [(r["store_id"], int(r["weight"])) for r in self._all("pending_stores")]

    def pending_stores_after(self, cursor: str, limit: int) -> list[tuple[str, int]]:
        """Up to ``limit`` stores with PENDING items after ``cursor`` ('' = first), with weights."""
        if limit <= 0:
            return []
        rows = self._all("pending_stores_after", cursor=cursor, limit=limit)
        return [(r["store_id"], int(r["weight"])) for r in rows]

    def pending_heads(
        self, store_ids: Sequence[str], per_store: int, now: datetime
    ) -> list[PendingItem]:
        """Up to ``per_store`` due PENDING items per store (priority, then age)."""
        if not store_ids:
            return []
        rows = self._all("pending_heads", store_ids=list(store_ids), per_store=per_store, now=now)
        return [PendingItem.from_row(r) for r in rows]

    def mark_queued(self, ids: Sequence[int]) -> list[int]:
        """PENDING -> QUEUED; returns the ids this call moved."""
        if not ids:
            return []
        return [r["id"] for r in self._all("mark_queued", ids=list(ids))]

    def fail_pending_many(self, failures: Sequence[tuple[int, str, str]]) -> list[int]:
        """PENDING -> FAILED for ``(id, error_code, message)`` triples."""
        if not failures:
            return []
        ids, codes, messages = zip(*failures, strict=True)
        return [
            r["id"]
            for r in self._all(
                "fail_pending_many", ids=list(ids), codes=list(codes), messages=list(messages)
            )
        ]

    # --- workers -------------------------------------------------------------------------
    def get_work_item(self, item_id: int) -> WorkItem | None:
        """The item with its job's defaults folded in, or None when there is no such item."""
        row = self._one("get_work_item", id=item_id)
        return None if row is None else WorkItem.from_row(row)

    def record_input(self, item_id: int, input_key: str) -> bool:
        return self._one("record_input", id=item_id, input_key=input_key) is not None

    def claim_work_item(self, item_id: int) -> WorkItem | None:
        """QUEUED -> SUBMITTING, returning the work row (as :meth:`get_work_item`, with the
        new ``attempts``), or None if the item was not QUEUED. One statement."""
        row = self._one("claim_work_item", id=item_id)
        return None if row is None else WorkItem.from_row(row)

    def mark_processing(self, item_id: int, prediction_id: str) -> bool:
        return self._one("mark_processing", id=item_id, prediction_id=prediction_id) is not None

    def release_submission(
        self, item_id: int, delay_seconds: float, code: str, message: str
    ) -> bool:
        return (
            self._one(
                "release_submission",
                id=item_id,
                delay_seconds=delay_seconds,
                code=code,
                message=message,
            )
            is not None
        )

    def retry_later(
        self,
        item_id: int,
        from_statuses: Sequence[ItemStatus],
        delay_seconds: float,
        code: str,
        message: str,
    ) -> bool:
        return (
            self._one(
                "retry_later",
                id=item_id,
                from_statuses=[str(s) for s in from_statuses],
                delay_seconds=delay_seconds,
                code=code,
                message=message,
            )
            is not None
        )

    def fail_item(
        self, item_id: int, from_statuses: Sequence[ItemStatus], code: str, message: str
    ) -> bool:
        return (
            self._one(
                "fail_item",
                id=item_id,
                from_statuses=[str(s) for s in from_statuses],
                code=code,
                message=message,
            )
            is not None
        )

    def record_poll(self, item_id: int) -> int | None:
        row = self._one("record_poll", id=item_id)
        return int(row["poll_count"]) if row else None

    def mark_done(
        self,
        item_id: int,
        *,
        output_key: str,
        width: int,
        height: int,
        size: int,
        content_type: str,
        polled: bool = True,
        predict_time: float | None = None,
    ) -> bool:
        """PROCESSING -> DONE; ``polled``: a GET saw the success (counted in ``poll_count``),
        not the create's own answer (sync mode) or a webhook; ``predict_time``: the
        prediction's provider seconds (``metrics.predict_time``)."""
        return (
            self._one(
                "mark_done",
                id=item_id,
                output_key=output_key,
                width=width,
                height=height,
                bytes=size,
                content_type=content_type,
                polls=int(polled),
                predict_time=predict_time,
            )
            is not None
        )

    def record_predict_time(self, item_id: int, prediction_id: str, seconds: float) -> bool:
        """Store the provider seconds of a prediction that ended without a result."""
        return (
            self._one(
                "record_predict_time",
                id=item_id,
                prediction_id=prediction_id,
                predict_time=seconds,
            )
            is not None
        )

    def claim_due_callbacks(self, limit: int, lease_seconds: float) -> list[Row]:
        """Due completion callbacks, claimed for ``lease_seconds`` (``claim_due_callbacks``)."""
        return self._all("claim_due_callbacks", limit=limit, lease_seconds=lease_seconds)

    def end_callback(self, job_id: int, attempt: int, state: str, error: str | None) -> bool:
        """A claimed callback ``sent`` or ``failed`` for good."""
        return (
            self._one("end_callback", id=job_id, attempt=attempt, state=state, error=error)
            is not None
        )

    def retry_callback(self, job_id: int, attempt: int, delay: float, error: str) -> bool:
        """A claimed callback due again after ``delay`` seconds."""
        return (
            self._one(
                "retry_callback", id=job_id, attempt=attempt, delay_seconds=delay, error=error
            )
            is not None
        )

    def usage_by_model(self, store_id: str, since: datetime) -> list[Row]:
        """A store's predictions final at or after ``since``, by model (``usage_by_model``)."""
        return self._all("usage_by_model", store_id=store_id, since=since)

    # --- jobs ----------------------------------------------------------------------------
    def refresh_active_jobs(self) -> list[JobChange]:
        """Recompute counters and status of active jobs; returns the jobs that changed."""
        return self._refresh_jobs([r["id"] for r in self._all("active_job_ids")])

    def refresh_recent_jobs(self, since: datetime) -> list[JobChange]:
        """Like :meth:`refresh_active_jobs`, for active jobs with an item changed at or after
        ``since``; returns the jobs that changed."""
        return self._refresh_jobs(
            [r["id"] for r in self._all("recent_active_job_ids", since=since)]
        )

    def _refresh_jobs(self, job_ids: Sequence[int]) -> list[JobChange]:
        if not job_ids:
            return []
        return [JobChange.from_row(r) for r in self._all("refresh_jobs", ids=list(job_ids))]

    def insert_job(
        self,
        *,
        store_id: str,
        model: str,
        prompt: str | None,
        params: Mapping[str, Any],
        preset: str | None,
        items: Sequence[Mapping[str, Any]],
        owner: tuple[str, str] | None = None,
    ) -> int:
        """Insert a job and its items in one transaction (what an upstream system does).

        Args:
            items: mappings with ``source_url`` and optional ``prompt``, ``model``, ``params``,
                ``priority``, ``preset`` (overrides the job's).
            owner: ``(owner_type, owner_id)`` of an API caller (``store`` or ``guest``), or
                None for an upstream insert.

        Returns:
            The new job id.
        """
        job = NewJob(store_id, model, prompt, params, preset, items)
        with self._cursor() as cur, cur.connection.transaction():  # pool: autocommit
            job_id = self._insert_job_rows(cur, job, owner, None)
        self.refresh_active_jobs()
        return job_id

    def _insert_job_rows(
        self,
        cur: psycopg.Cursor[Any],
        job: NewJob,
        owner: tuple[str, str] | None,
        client_network: str | None,
    ) -> int:
        cur.execute(
            self._q["insert_job"],
            {
                "store_id": job.store_id,
                "model": job.model,
                "prompt": job.prompt,
                "params": json.dumps(dict(job.params)),
                "preset": job.preset,
            },
        )
        row = cur.fetchone()
        assert row is not None
        job_id = int(row["id"])
        if owner is not None:
            cur.execute(
                self._q["api_set_job_owner"],
                {
                    "job_id": job_id,
                    "owner_type": owner[0],
                    "owner_id": owner[1],
                    "client_network": client_network,
                },
            )
        cur.executemany(
            self._q["insert_item"],
            [
                {
                    "job_id": job_id,
                    "store_id": job.store_id,
                    "source_url": item["source_url"],
                    "prompt": item.get("prompt"),
                    "model": item.get("model"),
                    "params": json.dumps(dict(item.get("params") or {})),
                    "priority": int(item.get("priority") or 0),
                    "preset": item.get("preset"),
                }
                for item in job.items
            ],
        )
        return job_id

    def cancel_job(self, job_id: int) -> list[CanceledItem]:
        """Cancel every non-final item of a job; returns each item this call canceled."""
        rows = self._all("cancel_job_items", job_id=job_id)
        self.refresh_active_jobs()
        return [CanceledItem.from_row(r) for r in rows]

    def retry_failed(self, job_id: int | None, error_code: str | None) -> list[int]:
        """FAILED -> PENDING (dead letters retried by ops); returns the item ids. Items whose
        uploaded source retention deleted stay FAILED (:meth:`ops_count_source_deleted`)."""
        rows = self._all("retry_failed_items", job_id=job_id, error_code=error_code)
        job_ids = sorted({int(r["job_id"]) for r in rows})
        if job_ids:
            self._all("reopen_jobs", ids=job_ids)
        return [int(r["id"]) for r in rows]

    # --- reporting -----------------------------------------------------------------------
    def status_counts(self, job_id: int | None = None, store_id: str | None = None) -> list[Row]:
        return self._all("status_counts", job_id=job_id, store_id=store_id)

    def error_counts(self, job_id: int | None = None) -> list[Row]:
        return self._all("error_counts", job_id=job_id)

    def job_summary(self, job_ids: Sequence[int]) -> list[Row]:
        return self._all("job_summary", job_ids=list(job_ids))

    def job_items(self, job_id: int) -> list[Row]:
        return self._all("job_items", job_id=job_id)

    def queue_depths(self) -> dict[str, int]:
        """Non-final items by status (every non-final status present, 0 when none)."""
        counts = {str(status): 0 for status in NON_FINAL_ITEM_STATUSES}
        for row in self._all("queue_depths"):
            counts[str(ItemStatus(row["status"]))] = int(row["n"])
        return counts

    # --- rescuer -------------------------------------------------------------------------
    def stale_queued(self, now: datetime, older_than: float, limit: int) -> list[int]:
        return [
            r["id"] for r in self._all("stale_queued", now=now, older_than=older_than, limit=limit)
        ]

    def touch_queued(self, ids: Sequence[int]) -> list[int]:
        return [r["id"] for r in self._all("touch_queued", ids=list(ids))] if ids else []

    def stale_submitting(
        self, now: datetime, older_than: float, limit: int
    ) -> list[StaleSubmission]:
        rows = self._all("stale_submitting", now=now, older_than=older_than, limit=limit)
        return [StaleSubmission.from_row(r) for r in rows]

    def adopt_prediction(self, item_id: int, prediction_id: str) -> bool:
        return self._one("adopt_prediction", id=item_id, prediction_id=prediction_id) is not None

    def requeue_submitting(self, item_id: int) -> bool:
        return self._one("requeue_submitting", id=item_id) is not None

    def stale_processing(self, now: datetime, older_than: float, limit: int) -> list[int]:
        return [
            r["id"]
            for r in self._all("stale_processing", now=now, older_than=older_than, limit=limit)
        ]

    def overdue_webhooks(self, now: datetime, waits: WebhookWaits, limit: int) -> list[int]:
        """PROCESSING items never polled whose webhook is overdue (``waits``, seconds since
        their last update, by model), oldest first, at most ``limit``."""
        rows = self._all(
            "overdue_webhooks",
            now=now,
            models=list(waits.by_model),
            waits=list(waits.by_model.values()),
            default_wait=waits.default,
            due_before=now - timedelta(seconds=waits.shortest),
            limit=limit,
        )
        return [r["id"] for r in rows]

    def touch_repolled(self, ids: Sequence[int]) -> list[int]:
        """Restart the staleness clock of PROCESSING items just re-polled; returns those ids."""
        return [r["id"] for r in self._all("touch_repolled", ids=list(ids))] if ids else []

    def expired_items(self, now: datetime, max_age: float, limit: int) -> list[ExpiredItem]:
        rows = self._all("expired_items", now=now, max_age=max_age, limit=limit)
        return [ExpiredItem.from_row(r) for r in rows]

    # --- image features: presets, quotas, item cancel/retry, retention --------------------------
    def get_preset(self, store_id: str, name: str) -> Row | None:
        """One custom preset row (``store_id, name, spec, created_at, updated_at``)."""
        return self._one("get_preset", store_id=store_id, preset_name=name)

    def list_presets(self, store_id: str | None = None) -> list[Row]:
        """Custom presets of one store, or of every store when ``store_id`` is None."""
        return self._all("list_presets", store_id=store_id)

    def upsert_preset(self, store_id: str, name: str, spec: Mapping[str, Any]) -> Row:
        """Insert or replace a custom preset; ``spec`` must already be validated."""
        row = self._one(
            "upsert_preset", store_id=store_id, preset_name=name, spec=json.dumps(dict(spec))
        )
        assert row is not None
        return row

    def delete_preset(self, store_id: str, name: str) -> bool:
        """Remove a custom preset; False when the store had none of that name."""
        return self._one("delete_preset", store_id=store_id, preset_name=name) is not None

    def insert_preset_within_cap(
        self, store_id: str, name: str, spec: Mapping[str, Any], cap: int
    ) -> Row | Literal["exists", "full"]:
        """Insert a new custom preset if the name is free and the store is under ``cap``, as
        one atomic step: a per-store advisory lock serializes concurrent creations, so the
        count and the insert see the same rows.

        Args:
            store_id: the store.
            name: the preset's name.
            spec: the validated spec.
            cap: presets the store may hold; 0 or less = no cap.

        Returns:
            The new row, ``"exists"`` (the name is taken; nothing written) or ``"full"`` (the
            store holds ``cap`` presets; nothing written).
        """
        params = {"store_id": store_id, "preset_name": name, "spec": json.dumps(dict(spec))}
        with self._cursor() as cur, cur.connection.transaction():  # pool: autocommit
            cur.execute(self._q["lock_store_presets"], params)
            if cap > 0:
                cur.execute(self._q["count_presets"], params)
                counted = cur.fetchone()
                assert counted is not None  # an aggregate: always one row
                if int(counted["n"]) >= cap:
                    return "exists" if self._preset_exists(cur, params) else "full"
            cur.execute(self._q["insert_preset"], params)
            row = cur.fetchone()
        return "exists" if row is None else row

    def _preset_exists(self, cur: psycopg.Cursor[Any], params: Mapping[str, Any]) -> bool:
        cur.execute(self._q["get_preset"], params)
        return cur.fetchone() is not None

    def update_preset(self, store_id: str, name: str, spec: Mapping[str, Any]) -> Row | None:
        """Replace an existing custom preset's spec; None when the store has none of that name."""
        return self._one(
            "update_preset", store_id=store_id, preset_name=name, spec=json.dumps(dict(spec))
        )

    def set_store_quota(self, store_id: str, quota: int | None) -> None:
        """Set a store's items-per-window quota (None: the settings default)."""
        self._one("set_store_quota", store_id=store_id, quota=quota)

    def get_control(self, name: str) -> Row | None:
        """An operator switch (``name``, ``enabled``, ``reason``, ``changed_by``,
        ``changed_at``); None when it was never set (off)."""
        return self._one("get_control", control=name)

    def set_control(
        self, name: str, enabled: bool, *, reason: str | None, changed_by: str | None
    ) -> Row | None:
        """Turn switch ``name`` on or off and wake the scheduler leader.

        Returns:
            The new row, or None when the switch already was ``enabled`` (nothing changed:
            the first reason and time stay).
        """
        return self._one(
            "set_control", control=name, enabled=enabled, reason=reason, changed_by=changed_by
        )

    def quota_usage(
        self, store_ids: Sequence[str], now: datetime, window_seconds: float, default_quota: int
    ) -> list[QuotaUsage]:
        """Per store: ``quota`` (None = unlimited), ``used`` in the window, ``frees_at``."""
        if not store_ids:
            return []
        rows = self._all(
            "quota_usage",
            store_ids=list(store_ids),
            now=now,
            window_seconds=window_seconds,
            default_quota=default_quota,
        )
        return [QuotaUsage.from_row(r) for r in rows]

    def pending_counts(self, store_ids: Sequence[str]) -> dict[str, int]:
        """PENDING items per store (0 when none)."""
        counts = dict.fromkeys(store_ids, 0)
        for row in self._all("pending_counts", store_ids=list(store_ids)) if store_ids else []:
            counts[row["store_id"]] = int(row["n"])
        return counts

    def cancel_item(self, item_id: int, from_statuses: Sequence[ItemStatus]) -> Row | None:
        """Cancel one item if its status is in ``from_statuses``; refreshes its job."""
        row = self._one("cancel_item", id=item_id, from_statuses=[str(s) for s in from_statuses])
        if row is not None:
            self.refresh_active_jobs()
        return row

    def retry_item(self, item_id: int) -> bool:
        """One FAILED item back to PENDING with attempts reset; reopens its job. False when it
        is not FAILED, or retention deleted its uploaded source (``source_deleted_at``)."""
        row = self._one("retry_item", id=item_id)
        if row is None:
            return False
        self._all("reopen_jobs", ids=[int(row["job_id"])])
        return True

    def retention_due_inputs(self, cutoff: datetime, limit: int, bucket: str) -> list[StoredObject]:
        """Finished items completed before ``cutoff`` whose inputs are still stored: the id
        and the ``input_key`` (None when only an upload of ``bucket`` is to be released)."""
        rows = self._all("retention_due_inputs", cutoff=cutoff, limit=limit, bucket=bucket)
        return [StoredObject.from_row(r, "input_key") for r in rows]

    def mark_inputs_deleted(self, ids: Sequence[int], now: datetime) -> int:
        return len(self._all("mark_inputs_deleted", ids=list(ids), now=now)) if ids else 0

    def retention_due_originals(self, bucket: str, limit: int) -> list[str]:
        """Source URLs of uploads of ``bucket`` no item needs any more, still stored."""
        rows = self._all("retention_due_originals", bucket=bucket, limit=limit)
        return [str(r["source_url"]) for r in rows]

    def mark_originals_deleted(self, urls: Sequence[str], now: datetime) -> list[str]:
        """Set ``source_deleted_at`` on the items that released these uploads; returns the
        URLs this call marked (each once; none that another run marked first)."""
        if not urls:
            return []
        rows = self._all("mark_originals_deleted", urls=list(urls), now=now)
        return [str(r["source_url"]) for r in rows]

    def retention_job_originals(self, job_ids: Sequence[int], bucket: str) -> list[JobOriginal]:
        """``job_id, source_url`` of uploads of ``bucket`` named by these jobs' items, still
        stored and needed by no item of another job (to delete with the rows)."""
        if not job_ids:
            return []
        rows = self._all("retention_job_originals", job_ids=list(job_ids), bucket=bucket)
        return [JobOriginal.from_row(r) for r in rows]

    def prune_guest_sessions(self, now: datetime, limit: int) -> int:
        """Delete up to ``limit`` guest sessions expired before ``now``; returns how many."""
        return len(self._all("prune_guest_sessions", now=now, limit=limit))

    def retention_due_outputs(self, cutoff: datetime, limit: int) -> list[StoredObject]:
        """DONE items completed before ``cutoff`` whose result is still stored."""
        rows = self._all("retention_due_outputs", cutoff=cutoff, limit=limit)
        return [StoredObject.from_row(r, "output_key") for r in rows]

    def mark_outputs_deleted(self, ids: Sequence[int], now: datetime) -> int:
        return len(self._all("mark_outputs_deleted", ids=list(ids), now=now)) if ids else 0

    def retention_due_jobs(self, cutoff: datetime, limit: int) -> list[int]:
        return [int(r["id"]) for r in self._all("retention_due_jobs", cutoff=cutoff, limit=limit)]

    def retention_job_objects(self, job_ids: Sequence[int]) -> list[JobObjects]:
        """The stored keys of these jobs' items."""
        if not job_ids:
            return []
        rows = self._all("retention_job_objects", job_ids=list(job_ids))
        return [JobObjects.from_row(r) for r in rows]

    def delete_jobs(self, job_ids: Sequence[int]) -> tuple[int, int]:
        """Delete finished jobs and their items; returns ``(jobs, items)`` deleted."""
        if not job_ids:
            return 0, 0
        row = self._one("delete_job_items", job_ids=list(job_ids))
        items = int(row["n"]) if row else 0
        jobs = len(self._all("delete_jobs", job_ids=list(job_ids)))
        return jobs, items

    def retention_counts(
        self,
        input_cutoff: datetime,
        output_cutoff: datetime,
        rows_cutoff: datetime,
        *,
        now: datetime,
        bucket: str,
    ) -> dict[str, int]:
        """What is due now: ``inputs``, ``outputs``, ``jobs``, ``items``, ``originals``
        (uploads of ``bucket``, by the inputs window) and ``guest_sessions``."""
        row = self._one(
            "retention_counts",
            input_cutoff=input_cutoff,
            output_cutoff=output_cutoff,
            rows_cutoff=rows_cutoff,
            now=now,
            bucket=bucket,
        )
        assert row is not None
        keys = ("inputs", "outputs", "jobs", "items", "originals", "guest_sessions")
        return {key: int(row[key]) for key in keys}

    # --- HTTP API: callers, owned jobs, usage ---------------------------------
    def api_insert_key(
        self, store_id: str, key_prefix: str, key_hash: bytes, name: str | None
    ) -> Row:
        """Store a new API key's hash; returns the row without the hash."""
        row = self._one(
            "api_insert_key",
            store_id=store_id,
            key_prefix=key_prefix,
            key_hash=key_hash,
            label=name,
        )
        assert row is not None
        return row

    def api_find_key(self, key_hash: bytes) -> Row | None:
        """The live (not revoked) key with this hash: ``id, store_id, key_prefix, last_used_at``."""
        return self._one("api_find_key", key_hash=key_hash)

    def api_touch_key(self, key_id: int) -> None:
        self._all("api_touch_key", id=key_id)

    def api_list_keys(self, store_id: str | None) -> list[Row]:
        return self._all("api_list_keys", store_id=store_id)

    def api_revoke_key(self, key_id: int) -> bool:
        return self._one("api_revoke_key", id=key_id) is not None

    def api_insert_store_session(self, token_hash: bytes, key_id: int, ttl_seconds: float) -> None:
        """Record a browser signed in with a store's key (and forget a few expired sessions)."""
        self._all("api_prune_store_sessions")
        self._all("api_insert_store_session", token_hash=token_hash, key_id=key_id,
                  ttl_seconds=ttl_seconds)  # fmt: skip

    def api_find_store_session(self, token_hash: bytes) -> Row | None:
        """The live key of an unexpired store session: ``id, store_id, key_prefix,
        last_used_at`` (as :meth:`api_find_key`), or None."""
        return self._one("api_find_store_session", token_hash=token_hash)

    def api_delete_store_session(self, token_hash: bytes) -> None:
        self._all("api_delete_store_session", token_hash=token_hash)

    def api_insert_guest(self, guest_id: str, token_hash: bytes, ttl_seconds: float) -> None:
        self._all("api_insert_guest", id=guest_id, token_hash=token_hash, ttl_seconds=ttl_seconds)

    def api_find_guest(self, token_hash: bytes) -> Row | None:
        """The unexpired guest session with this token hash: ``id, last_seen_at``."""
        return self._one("api_find_guest", token_hash=token_hash)

    def api_touch_guest(self, guest_id: str, ttl_seconds: float) -> None:
        self._all("api_touch_guest", id=guest_id, ttl_seconds=ttl_seconds)

    def api_get_job(self, job_id: int) -> Row | None:
        return self._one("api_get_job", id=job_id)

    def api_job_items(self, job_id: int) -> list[Row]:
        return self._all("api_job_items", job_id=job_id)

    def api_list_jobs(
        self, owner_type: str, owner_id: str, store_id: str, limit: int, before: int | None = None
    ) -> list[Row]:
        """The caller's jobs, newest first, at most ``limit``, ids below ``before`` if given."""
        return self._all(
            "api_list_jobs",
            owner_type=owner_type,
            owner_id=owner_id,
            store_id=store_id,
            limit=limit,
            before=before,
        )

    def api_items_of_jobs(self, job_ids: Sequence[int]) -> list[Row]:
        """The items of ``job_ids`` (each row with its ``job_id``), by job, then item id."""
        return self._all("api_items_of_jobs", job_ids=list(job_ids))

    def api_get_item(self, item_id: int) -> Row | None:
        return self._one("api_get_item", id=item_id)

    def api_usage(
        self, owner_type: str, owner_id: str, store_id: str, window_seconds: float
    ) -> tuple[int, datetime | None]:
        """Items the caller created in the window, and when the oldest leaves it (or None)."""
        with self._cursor() as cur:
            return self._owner_usage(cur, owner_type, owner_id, store_id, window_seconds)

    def api_quota_usage(self, quotas: ApiQuotas) -> list[ApiUsage]:
        """The usage of each quota in ``quotas`` that has a limit (a read, nothing locked)."""
        with self._cursor() as cur:
            return self._quota_usage(cur, quotas)

    def api_insert_job_within_quota(
        self, job: NewJob, owner: tuple[str, str], quotas: ApiQuotas
    ) -> tuple[int | None, list[ApiUsage]]:
        """Check the quotas and insert the job as one atomic step.

        One transaction takes a per-schema advisory lock for each limited quota (the owner, the
        client network; in sorted key order, so concurrent requests cannot deadlock), counts
        the usage under those locks and inserts the job and its items only if every quota has
        room for all of them. Concurrent requests of one owner or one network are serialized
        here, so together they never exceed a limit.

        Args:
            job: the job and its items (:meth:`insert_job`'s fields).
            owner: ``(owner_type, owner_id)`` of the API caller.
            quotas: the limits its items count against; the client network is recorded on
                the job when given.

        Returns:
            ``(job_id, usage)``: the new job id, or None when a quota has no room (nothing
            written); the usage of each limited quota before this request.
        """
        with self._cursor() as cur, cur.connection.transaction():  # pool: autocommit
            for key in sorted(quotas.lock_keys()):
                cur.execute(self._q["api_lock_usage"], {"key": key})
            usage = self._quota_usage(cur, quotas)
            if any(not u.room_for(len(job.items)) for u in usage):
                return None, usage
            job_id = self._insert_job_rows(cur, job, owner, quotas.client_network)
        self.refresh_active_jobs()
        return job_id, usage

    def _quota_usage(self, cur: psycopg.Cursor[Any], quotas: ApiQuotas) -> list[ApiUsage]:
        usage = []
        window = quotas.window_seconds
        if quotas.owner_limit > 0:
            used, frees_at = self._owner_usage(
                cur, quotas.owner_type, quotas.owner_id, quotas.store_id, window
            )
            usage.append(ApiUsage("owner", quotas.owner_limit, used, frees_at))
        if quotas.network_limit > 0 and quotas.client_network is not None:
            cur.execute(
                self._q["api_network_usage"],
                {"client_network": quotas.client_network, "window_seconds": window},
            )
            row = cur.fetchone()
            assert row is not None  # an aggregate without GROUP BY: always one row
            usage.append(
                ApiUsage("address", quotas.network_limit, int(row["used"]), row["frees_at"])
            )
        return usage

    def _owner_usage(
        self,
        cur: psycopg.Cursor[Any],
        owner_type: str,
        owner_id: str,
        store_id: str,
        window_seconds: float,
    ) -> tuple[int, datetime | None]:
        cur.execute(
            self._q["api_usage"],
            {
                "owner_type": owner_type,
                "owner_id": owner_id,
                "store_id": store_id,
                "window_seconds": window_seconds,
            },
        )
        row = cur.fetchone()
        if row is None:
            return 0, None
        return int(row["used"]), row["frees_at"]

    def applied_migrations(self) -> set[int]:
        """Migration versions applied to the project schema (empty: never migrated).

        Raises:
            DatabaseUnavailable: the database cannot be reached.
        """
        row = self._one("migrations_table_present")
        if row is None or not row["present"]:
            return set()
        return {int(r["version"]) for r in self._all("applied_migrations")}

    def api_ping(self) -> None:
        """One trivial query on the project schema (readiness probes).

        Raises:
            DatabaseUnavailable: the database cannot be reached.
        """
        self._all("api_ping")

    # --- metrics ------------------------------------------------------------------------
    def pending_by_store(self, top: int) -> tuple[int, list[tuple[str, int]]]:
        """Stores with PENDING items, and the ``top`` largest backlogs (for the gauges).

        Returns:
            ``(stores with pending items, [(store_id, pending items), ...])``, largest first.
        """
        rows = self._all("metrics_pending_by_store", limit=top)
        stores = int(rows[0]["stores"]) if rows else 0
        return stores, [(str(r["store_id"]), int(r["n"])) for r in rows[: max(top, 0)]]

    # --- operator console and levers (docs/OPERATIONS.md) ---------------------------------
    def ops_insert_operator_key(self, name: str, key_prefix: str, key_hash: bytes) -> Row:
        """Store a new operator key's hash; returns ``id, name, key_prefix, created_at``."""
        row = self._one(
            "ops_insert_operator_key", label=name, key_prefix=key_prefix, key_hash=key_hash
        )
        assert row is not None
        return row

    def ops_find_operator_key(self, key_hash: bytes) -> Row | None:
        """The live operator key with this hash: ``id, name, key_prefix, last_used_at``."""
        return self._one("ops_find_operator_key", key_hash=key_hash)

    def ops_touch_operator_key(self, key_id: int) -> None:
        self._all("ops_touch_operator_key", id=key_id)

    def ops_list_operator_keys(self) -> list[Row]:
        return self._all("ops_list_operator_keys")

    def ops_revoke_operator_key(self, key_id: int) -> bool:
        return self._one("ops_revoke_operator_key", id=key_id) is not None

    def ops_insert_session(self, token_hash: bytes, key_id: int, ttl_seconds: float) -> None:
        """Record a signed-in operator browser (and forget a few expired sessions)."""
        self._all("ops_prune_sessions")
        self._all("ops_insert_session", token_hash=token_hash, key_id=key_id,
                  ttl_seconds=ttl_seconds)  # fmt: skip

    def ops_find_session(self, token_hash: bytes) -> Row | None:
        """The operator key of an unexpired session of a live key, or None."""
        return self._one("ops_find_session", token_hash=token_hash)

    def ops_delete_session(self, token_hash: bytes) -> None:
        self._all("ops_delete_session", token_hash=token_hash)

    def ops_audit(
        self,
        actor: str,
        action: str,
        target: str,
        reason: str | None,
        details: Mapping[str, Any] | None = None,
    ) -> Row:
        """Write one audit entry; returns its ``id, at``."""
        row = self._one(
            "ops_audit", actor=actor, action=action, target=target[:500],
            reason=reason, details=json.dumps(dict(details or {}), default=str),
        )  # fmt: skip
        assert row is not None
        return row

    def ops_audit_recent(self, limit: int) -> list[Row]:
        return self._all("ops_audit_recent", limit=limit)

    def ops_status_counts(self) -> dict[str, int]:
        """Items by status, every status present (0 when none)."""
        counts = dict.fromkeys((str(status) for status in ItemStatus), 0)
        for row in self._all("ops_status_counts"):
            counts[row["status"]] = int(row["n"])
        return counts

    def ops_store_stats(self, since: datetime, limit: int) -> list[Row]:
        """Per store: ``pending, in_flight, done, failed`` (since ``since``), ``p50, p95``
        (seconds insert to DONE, None without DONE items), ``weight, quota, paused,
        paused_reason``; ordered by store id, at most ``limit`` stores."""
        return self._all("ops_store_stats", since=since, limit=limit)

    def ops_get_store(self, store_id: str) -> Row | None:
        return self._one("ops_get_store", store_id=store_id)

    def ops_set_store(
        self,
        store_id: str,
        *,
        weight: int | None = None,
        quota: int | None = None,
        clear_quota: bool = False,
        paused: bool | None = None,
        reason: str | None = None,
    ) -> Row:
        """Change a store's settings (None keeps a field) and wake the scheduler leader.

        Returns:
            The store's row after the change (``weight, quota, paused, paused_reason``).
        """
        row = self._one(
            "ops_set_store", store_id=store_id, weight=weight, quota=quota,
            clear_quota=clear_quota, paused=paused, reason=reason,
        )  # fmt: skip
        assert row is not None
        return row

    def ops_paused_stores(self) -> int:
        row = self._one("ops_paused_stores")
        return int(row["n"]) if row else 0

    def ops_failed_items(self, match: FailedFilter, limit: int) -> tuple[int, list[Row]]:
        """FAILED items matching ``match``, newest first: ``(total matching, first rows)``."""
        rows = self._all("ops_failed_items", limit=limit, **match.params())
        if rows:
            return int(rows[0]["total"]), rows
        return self.ops_count_failed(match), []

    def ops_count_failed(self, match: FailedFilter) -> int:
        row = self._one("ops_count_failed", **match.params())
        return int(row["n"]) if row else 0

    def ops_count_source_deleted(self, match: FailedFilter) -> int:
        """How many FAILED items match ``match`` but stay FAILED on a retry: retention deleted
        their uploaded source (``source_deleted_at``)."""
        row = self._one("ops_count_source_deleted", **match.params())
        return int(row["n"]) if row else 0

    def ops_retry_failed(self, match: FailedFilter, limit: int | None = None) -> list[int]:
        """FAILED items matching ``match`` (at most ``limit``; None: all) back to PENDING,
        their jobs reopened; returns the item ids. Items whose uploaded source retention
        deleted are skipped (:meth:`ops_count_source_deleted`)."""
        rows = self._all("ops_retry_failed", limit=limit, **match.params())
        job_ids = sorted({int(r["job_id"]) for r in rows})
        if job_ids:
            self._all("reopen_jobs", ids=job_ids)
        return [int(r["id"]) for r in rows]

    def ops_get_item(self, item_id: int) -> Row | None:
        return self._one("ops_get_item", id=item_id)

    # --- go-live levers (pipeline/golive.py) --------------------------------------------------
    def golive_rows(self) -> list[Row]:
        """Every go-live lever ever set: ``name, value`` (decoded JSON), ``reason,
        changed_by, changed_at``; a lever without a row has its start value."""
        return self._all("golive_rows")

    def golive_set(
        self, name: str, value: Any, *, reason: str | None, changed_by: str | None
    ) -> Row | None:
        """Set lever ``name`` to ``value`` (JSON-encodable) and wake the scheduler leader.

        Returns:
            The new row, or None when the lever already had this value (nothing changed).
        """
        return self._one(
            "golive_set", lever=name, value=json.dumps(value), reason=reason, changed_by=changed_by
        )

    def pending_heads_enabled(
        self, store_ids: Sequence[str], per_store: int, now: datetime, disabled: Sequence[str]
    ) -> list[PendingItem]:
        """:meth:`pending_heads` leaving out the items of the ``disabled`` models."""
        if not store_ids:
            return []
        rows = self._all(
            "pending_heads_enabled", store_ids=list(store_ids), per_store=per_store, now=now,
            disabled=list(disabled),
        )  # fmt: skip
        return [PendingItem.from_row(r) for r in rows]


@dataclass(frozen=True)
class FailedFilter:
    """Which FAILED items an operator means (each None = any).

    Attributes:
        store_id, job_id, model, error_code: equal to these.
        since, until: ``completed_at`` in ``[since, until)``.
    """

    store_id: str | None = None
    job_id: int | None = None
    model: str | None = None
    error_code: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def params(self) -> dict[str, Any]:
        return {
            "store_id": self.store_id, "job_id": self.job_id, "model": self.model,
            "error_code": self.error_code, "since": self.since, "until": self.until,
        }  # fmt: skip

    @property
    def is_empty(self) -> bool:
        return all(value is None for value in self.params().values())
