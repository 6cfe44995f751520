"""Jobs and items the way upstream inserts them, and waits on their status (tests, benchmarks).

:func:`insert_job` writes one job and its items with the columns docs/UPSTREAM.md documents
(items go in by one ``COPY``, so a benchmark's 100,000 items take seconds; the insert trigger
fires for ``COPY`` as for ``INSERT``, so the scheduler is notified the same way).
:func:`wait_until` and :func:`wait_for_status` poll Postgres until a condition holds, and raise
:class:`TimeoutError` naming what did not happen (test code turns that into a failure).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb

MODEL = "nightmareai/real-esrgan"
FINAL = ("DONE", "FAILED", "CANCELED")
"""Statuses an item never leaves (docs/LIFECYCLE.md)."""
ITEM_FIELDS = ("store_id", "prompt", "model", "params", "priority", "preset", "status",
               "next_attempt_at")  # fmt: skip
"""Per-item columns an item mapping may set besides ``source_url`` (``status`` and
``next_attempt_at`` are for tests that need an item in a given state; upstream never sets them)."""
_DEFAULTS: dict[str, Any] = {"params": {}, "priority": 0, "status": "PENDING"}

T = TypeVar("T")


@dataclass(frozen=True)
class InsertedJob:
    """The ids :func:`insert_job` created (items in the order given)."""

    job_id: int
    item_ids: list[int]


def connect(database_url: str, schema: str) -> psycopg.Connection[Any]:
    """An autocommit connection with ``search_path`` set to ``schema`` (each poll sees the
    latest commits)."""
    return psycopg.connect(database_url, options=f"-c search_path={schema}", autocommit=True)


def insert_job(
    conn: psycopg.Connection[Any],
    store_id: str,
    items: Sequence[str | Mapping[str, Any]],
    *,
    model: str = MODEL,
    params: Mapping[str, Any] | None = None,
    prompt: str | None = None,
    preset: str | None = None,
) -> InsertedJob:
    """Insert one job of ``store_id`` and its items in one transaction.

    Args:
        conn: a connection whose ``search_path`` is the pipeline's schema (:func:`connect`);
            inside a caller's transaction the job joins it.
        store_id: the job's store (and each item's unless the item sets ``store_id``).
        items: a source URL each, or a mapping with ``source_url`` and any of
            :data:`ITEM_FIELDS`.
        model, params, prompt, preset: the job's columns (``params`` default ``{}``).

    Returns:
        The job id and the item ids, in the order of ``items``.

    Raises:
        ValueError: an item mapping sets a column outside :data:`ITEM_FIELDS`.
        psycopg.Error: the rows were refused (e.g. a CHECK constraint).
    """
    rows = [{"source_url": item} if isinstance(item, str) else dict(item) for item in items]
    extra = sorted({key for row in rows for key in row} - {"source_url"})
    unknown = set(extra) - set(ITEM_FIELDS)
    if unknown:
        raise ValueError(f"not an item column: {sorted(unknown)}")
    columns = ["job_id", "store_id", "source_url", *(c for c in extra if c != "store_id")]
    with conn.transaction():
        job = conn.execute(
            "INSERT INTO image_optimization_jobs (store_id, model, prompt, params, preset) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (store_id, model, prompt, Jsonb(dict(params or {})), preset),
        ).fetchone()
        assert job is not None
        job_id = int(job[0])
        with conn.cursor() as cur, cur.copy(
            f"COPY image_optimization_items ({', '.join(columns)}) FROM STDIN"
        ) as copy:  # fmt: skip
            for row in rows:
                values = {**_DEFAULTS, "job_id": job_id, "store_id": store_id, **row}
                copy.write_row([_adapt(values.get(c)) for c in columns])
        ids = conn.execute(
            "SELECT id FROM image_optimization_items WHERE job_id = %s ORDER BY id", (job_id,)
        ).fetchall()
    return InsertedJob(job_id, [int(r[0]) for r in ids])


def _adapt(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, dict) else value


def wait_until(
    check: Callable[[], T | None], timeout: float, what: str, *, interval: float = 0.05
) -> T:
    """Call ``check`` every ``interval`` s until it returns a truthy value; return that value.

    Raises:
        TimeoutError: ``"{what} within {timeout} s"`` when ``timeout`` s pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:g} s")
        time.sleep(interval)


def item_statuses(
    conn: psycopg.Connection[Any],
    *,
    item_ids: Collection[int] | None = None,
    job_ids: Collection[int] | None = None,
) -> dict[int, str]:
    """``{item_id: status}`` of the given items (and/or of the given jobs), or of all."""
    rows = conn.execute(
        "SELECT id, status FROM image_optimization_items "
        "WHERE (%(items)s::bigint[] IS NULL OR id = ANY(%(items)s)) "
        "AND (%(jobs)s::bigint[] IS NULL OR job_id = ANY(%(jobs)s))",
        {
            "items": None if item_ids is None else list(item_ids),
            "jobs": None if job_ids is None else list(job_ids),
        },
    ).fetchall()
    return {int(r[0]): str(r[1]) for r in rows}


def wait_for_status(
    conn: psycopg.Connection[Any],
    *,
    item_ids: Collection[int] | None = None,
    job_ids: Collection[int] | None = None,
    statuses: Collection[str] = FINAL,
    count: int | None = None,
    timeout: float,
    interval: float = 0.1,
) -> dict[int, str]:
    """Wait until every selected item (or at least ``count`` of them) is in one of ``statuses``.

    Items are selected as in :func:`item_statuses`; with ``item_ids``, an id without a row
    counts as not there yet.

    Returns:
        ``{item_id: status}`` of every selected item when the condition held.

    Raises:
        TimeoutError: not within ``timeout`` s (the message gives the counts by status).
    """
    last: dict[int, str] = {}

    def reached() -> dict[int, str] | None:
        nonlocal last
        last = item_statuses(conn, item_ids=item_ids, job_ids=job_ids)
        there = sum(s in statuses for s in last.values())
        if count is not None:
            return last if there >= count else None
        wanted = len(item_ids) if item_ids is not None else len(last)
        return last if last and there == wanted else None

    try:
        return wait_until(reached, timeout, "", interval=interval)
    except TimeoutError:
        by_status: dict[str, int] = {}
        for status in last.values():
            by_status[status] = by_status.get(status, 0) + 1
        want = f"{count} items" if count is not None else "every item"
        raise TimeoutError(
            f"{want} not {'/'.join(statuses)} within {timeout:g} s: {by_status}"
        ) from None
