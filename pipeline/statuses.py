"""The statuses of items and jobs, exactly as the database stores them.

One definition for every package: the ``CHECK`` constraints of
``sql/migrations/0001_initial.sql`` name the same strings, and a :class:`~enum.StrEnum`
member compares equal to its string, so rows read from Postgres compare with these directly.
"""

from __future__ import annotations

from enum import StrEnum


class ItemStatus(StrEnum):
    """An item's status (``image_optimization_items.status``; docs/LIFECYCLE.md)."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    SUBMITTING = "SUBMITTING"
    PROCESSING = "PROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class JobStatus(StrEnum):
    """A job's status (``image_optimization_jobs.status``), derived from its items'."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


FINAL_ITEM_STATUSES = frozenset({ItemStatus.DONE, ItemStatus.FAILED, ItemStatus.CANCELED})
"""Item statuses nothing moves on from but an operator's retry (FAILED → PENDING)."""

NON_FINAL_ITEM_STATUSES = tuple(s for s in ItemStatus if s not in FINAL_ITEM_STATUSES)
"""PENDING, QUEUED, SUBMITTING, PROCESSING, in lifecycle order."""

FINAL_JOB_STATUSES = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELED})
