"""Typed rows: what the repository's worker and scheduler queries return.

Each row is a frozen dataclass built in :mod:`pipeline.repository` by its ``from_row``
(procrastinate's ``Job.from_row`` shape) from the mapping psycopg returns, so callers read
``item.source_url`` and mypy checks the name and the type. The columns are those the named
query of the same subject selects in ``sql/queries.sql``; a query that changes its columns
changes its row here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.statuses import ItemStatus, JobStatus

Row = dict[str, Any]
"""An untyped row (the API's view rows and the reporting queries still read these)."""


@dataclass(frozen=True)
class WorkItem:
    """One item with its job's defaults folded in (``get_work_item``, ``claim_work_item``).

    Attributes:
        attempts: creation attempts made, counting the current claim.
        poll_count: GETs of the prediction recorded so far.
        params: the job's params overlaid with the item's (a JSON object).
        model: the item's model, else the job's.
        preset: the output preset (the item's, else the job's), or None.
        created_at: when upstream inserted the item; ``submitted_at`` when it went PROCESSING.
    """

    id: int
    job_id: int
    store_id: str
    source_url: str
    status: ItemStatus
    attempts: int
    priority: int
    prediction_id: str | None
    input_key: str | None
    poll_count: int
    created_at: datetime
    submitted_at: datetime | None
    model: str
    prompt: str | None
    params: Mapping[str, Any]
    preset: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WorkItem:
        return cls(
            id=int(row["id"]),
            job_id=int(row["job_id"]),
            store_id=str(row["store_id"]),
            source_url=str(row["source_url"]),
            status=ItemStatus(row["status"]),
            attempts=int(row["attempts"]),
            priority=int(row["priority"]),
            prediction_id=row["prediction_id"],
            input_key=row["input_key"],
            poll_count=int(row["poll_count"]),
            created_at=row["created_at"],
            submitted_at=row["submitted_at"],
            model=str(row["model"]),  # the job's model is NOT NULL
            prompt=row["prompt"],
            params=row["params"] or {},
            preset=row["preset"],
        )


@dataclass(frozen=True)
class PendingItem:
    """A due PENDING item as metering sees it (``pending_heads``; the job's defaults folded in).

    ``model``, ``prompt`` and ``params`` are what the database holds, unchecked (``params``
    is any JSON value, meant to be an object): validation
    (:func:`pipeline.validation.validate_item`) decides whether the item may be queued.
    """

    id: int
    job_id: int
    store_id: str
    source_url: str
    priority: int
    created_at: datetime
    model: str
    prompt: str | None
    params: Any

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PendingItem:
        return cls(
            id=int(row["id"]),
            job_id=int(row["job_id"]),
            store_id=str(row["store_id"]),
            source_url=str(row["source_url"]),
            priority=int(row["priority"]),
            created_at=row["created_at"],
            model=str(row["model"]),  # the job's model is NOT NULL
            prompt=row["prompt"],
            params=row["params"],
        )


@dataclass(frozen=True)
class StaleSubmission:
    """A SUBMITTING item without progress (``stale_submitting``): the rescuer resolves it."""

    id: int
    input_key: str | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StaleSubmission:
        return cls(int(row["id"]), row["input_key"], row["updated_at"])


@dataclass(frozen=True)
class ExpiredItem:
    """A non-final item past the maximum age (``expired_items``)."""

    id: int
    status: ItemStatus
    prediction_id: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ExpiredItem:
        return cls(int(row["id"]), ItemStatus(row["status"]), row["prediction_id"])


@dataclass(frozen=True)
class StoredObject:
    """An item and one of its stored keys (``retention_due_inputs``: ``input_key``, None when
    only an upload is to be released; ``retention_due_outputs``: ``output_key``)."""

    id: int
    key: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], column: str) -> StoredObject:
        key = row[column]
        return cls(int(row["id"]), None if key is None else str(key))


@dataclass(frozen=True)
class JobObjects:
    """The stored keys of one item of a job due for deletion (``retention_job_objects``)."""

    id: int
    job_id: int
    input_key: str | None
    output_key: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobObjects:
        return cls(int(row["id"]), int(row["job_id"]), row["input_key"], row["output_key"])


@dataclass(frozen=True)
class JobOriginal:
    """An upload a job due for deletion names, needed by no other job
    (``retention_job_originals``)."""

    job_id: int
    source_url: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobOriginal:
        return cls(int(row["job_id"]), str(row["source_url"]))


@dataclass(frozen=True)
class JobChange:
    """A job whose counters or status a refresh changed (``refresh_jobs``)."""

    id: int
    status: JobStatus

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobChange:
        return cls(int(row["id"]), JobStatus(row["status"]))


@dataclass(frozen=True)
class CanceledItem:
    """An item a job's cancel moved to CANCELED (``cancel_job_items``), with the prediction to
    cancel at the provider, if any."""

    id: int
    prediction_id: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CanceledItem:
        return cls(int(row["id"]), row["prediction_id"])


@dataclass(frozen=True)
class QuotaUsage:
    """One store's quota over the rolling window (``quota_usage``).

    Attributes:
        quota: items per window (None: unlimited).
        used: items started (queued) within the window; 0 when unlimited.
        frees_at: when the oldest counted item leaves the window (None: nothing counted, or
            unlimited).
    """

    store_id: str
    quota: int | None
    used: int
    frees_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> QuotaUsage:
        quota = row["quota"]
        return cls(
            str(row["store_id"]),
            None if quota is None else int(quota),
            int(row["used"]),
            row["frees_at"],
        )
