"""Jobs and items as upstream inserts them, and waits on them, for tests: the helpers of
:mod:`devstack.rows` (which the benchmarks use too) on the test database, failing the test with
what did not happen instead of raising :class:`TimeoutError`."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import pytest

from devstack import rows
from devstack.rows import FINAL, MODEL, InsertedJob, item_statuses
from tests.conftest import DATABASE_URL

__all__ = ["FINAL", "MODEL", "InsertedJob", "connect", "insert_job", "item_statuses",
           "wait_for_status", "wait_until"]  # fmt: skip

T = TypeVar("T")


@contextmanager
def connect(schema: str, database_url: str = DATABASE_URL) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to ``schema`` of the test database, closed on exit."""
    with rows.connect(database_url, schema) as conn:
        yield conn


def insert_job(
    schema: str,
    store_id: str,
    items: Sequence[str | Mapping[str, Any]],
    *,
    database_url: str = DATABASE_URL,
    **job: Any,
) -> InsertedJob:
    """:func:`devstack.rows.insert_job` on its own connection to ``schema``."""
    with connect(schema, database_url) as conn:
        return rows.insert_job(conn, store_id, items, **job)


def wait_until(
    check: Callable[[], T | None], timeout: float, what: str, *, interval: float = 0.05
) -> T:
    """:func:`devstack.rows.wait_until`; the test fails with ``"{what} within {timeout} s"``."""
    try:
        return rows.wait_until(check, timeout, what, interval=interval)
    except TimeoutError as exc:
        pytest.fail(str(exc))


def wait_for_status(
    schema: str,
    *,
    item_ids: Collection[int] | None = None,
    job_ids: Collection[int] | None = None,
    statuses: Collection[str] = FINAL,
    count: int | None = None,
    timeout: float,
    interval: float = 0.1,
    database_url: str = DATABASE_URL,
) -> dict[int, str]:
    """:func:`devstack.rows.wait_for_status` on ``schema``; the test fails on a timeout."""
    with connect(schema, database_url) as conn:
        try:
            return rows.wait_for_status(
                conn, item_ids=item_ids, job_ids=job_ids, statuses=statuses, count=count,
                timeout=timeout, interval=interval,
            )  # fmt: skip
        except TimeoutError as exc:
            pytest.fail(str(exc))
