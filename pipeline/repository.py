"""The only module that runs SQL: named queries from ``sql/queries.sql`` over a connection pool.

psycopg errors are translated here into :class:`pipeline.errors.DatabaseUnavailable`, so callers
never see a driver exception.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from pipeline.errors import DatabaseUnavailable
from pipeline.queries import load_queries

Row = dict[str, Any]
NON_FINAL = ("PENDING", "QUEUED", "SUBMITTING", "PROCESSING")
STATUSES = ("PENDING", "QUEUED", "SUBMITTING", "PROCESSING", "DONE", "FAILED", "CANCELED")


class Repository:
    """Typed access to the jobs and items tables.

    Args:
        pool: a pool from :func:`pipeline.db.create_pool` (connections on the project schema).
    """

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self._pool = pool
        self._q = load_queries()

    # --- plumbing -----------------------------------------------------------------------
    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        try:
            with self._pool.connection() as conn, conn.cursor() as cur:
                yield cur
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"database unavailable: {exc.sqlstate or 'connection'}") from exc

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

    def pending_heads(self, store_ids: Sequence[str], per_store: int, now: datetime) -> list[Row]:
        """Up to ``per_store`` due PENDING items per store (priority, then age)."""
        if not store_ids:
            return []
        return self._all("pending_heads", store_ids=list(store_ids), per_store=per_store, now=now)

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
    def get_work_item(self, item_id: int) -> Row | None:
        return self._one("get_work_item", id=item_id)

    def record_input(self, item_id: int, input_key: str) -> bool:
        return self._one("record_input", id=item_id, input_key=input_key) is not None

    def claim_submission(self, item_id: int) -> int | None:
        """QUEUED -> SUBMITTING; returns the attempt number, or None if not QUEUED."""
        row = self._one("claim_submission", id=item_id)
        return int(row["attempts"]) if row else None

    def mark_processing(self, item_id: int, prediction_id: str) -> bool:
        return self._one("mark_processing", id=item_id, prediction_id=prediction_id) is not None

    def release_submission(self, item_id: int, delay_seconds: float, code: str, message: str) -> bool:
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
        self, item_id: int, from_statuses: Sequence[str], delay_seconds: float, code: str, message: str
    ) -> bool:
        return (
            self._one(
                "retry_later",
                id=item_id,
                from_statuses=list(from_statuses),
                delay_seconds=delay_seconds,
                code=code,
                message=message,
            )
            is not None
        )

    def fail_item(self, item_id: int, from_statuses: Sequence[str], code: str, message: str) -> bool:
        return (
            self._one(
                "fail_item", id=item_id, from_statuses=list(from_statuses), code=code, message=message
            )
            is not None
        )

    def record_poll(self, item_id: int) -> int | None:
        row = self._one("record_poll", id=item_id)
        return int(row["poll_count"]) if row else None

    def mark_done(
        self, item_id: int, *, output_key: str, width: int, height: int, size: int, content_type: str
    ) -> bool:
        return (
            self._one(
                "mark_done",
                id=item_id,
                output_key=output_key,
                width=width,
                height=height,
                bytes=size,
                content_type=content_type,
            )
            is not None
        )

    # --- jobs ----------------------------------------------------------------------------
    def refresh_active_jobs(self) -> list[Row]:
        """Recompute counters and status of active jobs; returns the jobs that changed."""
        return self._all("refresh_active_jobs")

    def insert_job(
        self,
        *,
        store_id: str,
        model: str,
        prompt: str | None,
        params: Mapping[str, Any],
        preset: str | None,
        items: Sequence[Mapping[str, Any]],
    ) -> int:
        """Insert a job and its items in one transaction (what an upstream system does).

        Args:
            items: mappings with ``source_url`` and optional ``prompt``, ``model``, ``params``,
                ``priority``.

        Returns:
            The new job id.
        """
        with self._cursor() as cur:
            cur.execute(
                self._q["insert_job"],
                {
                    "store_id": store_id,
                    "model": model,
                    "prompt": prompt,
                    "params": json.dumps(dict(params)),
                    "preset": preset,
                },
            )
            row = cur.fetchone()
            assert row is not None
            job_id = int(row["id"])
            cur.executemany(
                self._q["insert_item"],
                [
                    {
                        "job_id": job_id,
                        "store_id": store_id,
                        "source_url": item["source_url"],
                        "prompt": item.get("prompt"),
                        "model": item.get("model"),
                        "params": json.dumps(dict(item.get("params") or {})),
                        "priority": int(item.get("priority") or 0),
                    }
                    for item in items
                ],
            )
        self.refresh_active_jobs()
        return job_id

    def cancel_job(self, job_id: int) -> list[Row]:
        """Cancel every non-final item of a job; returns ``id, prediction_id`` of each."""
        rows = self._all("cancel_job_items", job_id=job_id)
        self.refresh_active_jobs()
        return rows

    def retry_failed(self, job_id: int | None, error_code: str | None) -> list[int]:
        """FAILED -> PENDING (dead letters retried by ops); returns the item ids."""
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
        counts = {status: 0 for status in NON_FINAL}
        for row in self._all("queue_depths"):
            counts[row["status"]] = int(row["n"])
        return counts

    # --- rescuer -------------------------------------------------------------------------
    def stale_queued(self, now: datetime, older_than: float, limit: int) -> list[int]:
        return [r["id"] for r in self._all("stale_queued", now=now, older_than=older_than, limit=limit)]

    def touch_queued(self, ids: Sequence[int]) -> list[int]:
        return [r["id"] for r in self._all("touch_queued", ids=list(ids))] if ids else []

    def stale_submitting(self, now: datetime, older_than: float, limit: int) -> list[Row]:
        return self._all("stale_submitting", now=now, older_than=older_than, limit=limit)

    def adopt_prediction(self, item_id: int, prediction_id: str) -> bool:
        return self._one("adopt_prediction", id=item_id, prediction_id=prediction_id) is not None

    def requeue_submitting(self, item_id: int) -> bool:
        return self._one("requeue_submitting", id=item_id) is not None

    def stale_processing(self, now: datetime, older_than: float, limit: int) -> list[int]:
        return [
            r["id"] for r in self._all("stale_processing", now=now, older_than=older_than, limit=limit)
        ]

    def expired_items(self, now: datetime, max_age: float, limit: int) -> list[Row]:
        return self._all("expired_items", now=now, max_age=max_age, limit=limit)
