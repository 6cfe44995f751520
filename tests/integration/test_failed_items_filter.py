"""The FAILED items an operator's filter matches have one definition
(``image_optimization_failed_matching``, migration 0012): the list the console shows, its count
and the bulk retry select the same rows for the same filter (real Postgres)."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg
import pytest

from pipeline.queries import load_queries
from pipeline.repository import FailedFilter, Repository
from tests.support.rows import connect, insert_job

pytestmark = pytest.mark.integration

ESRGAN = "nightmareai/real-esrgan"
SDXL = "stability-ai/sdxl"


def fail(conn: psycopg.Connection[object], item_id: int, code: str, ago: timedelta) -> None:
    conn.execute(
        "UPDATE image_optimization_items SET status = 'FAILED', error_code = %s, "
        "error_message = 'x', completed_at = now() - %s WHERE id = %s",
        (code, ago, item_id),
    )


def retried_ids(schema: str, match: FailedFilter) -> set[int]:
    """What ``ops_retry_failed`` would move, in a transaction rolled back."""
    with connect(schema) as conn, conn.transaction(force_rollback=True):
        rows = conn.execute(load_queries()["ops_retry_failed"], {**match.params(), "limit": None})
        return {int(row[0]) for row in rows.fetchall()}


def test_the_list_the_count_and_the_retry_select_the_same_failed_items(
    db_schema: str, repo: Repository
) -> None:
    a = insert_job(db_schema, "shop-1", ["https://i/a1", "https://i/a2", "https://i/a3",
                                         {"source_url": "https://i/a4", "model": SDXL}],
                   model=ESRGAN)  # fmt: skip
    b = insert_job(db_schema, "shop-2", ["https://i/b1", "https://i/b2"], model=SDXL)
    a1, a2, _a3, a4 = a.item_ids
    b1, _b2 = b.item_ids
    with connect(db_schema) as conn:
        fail(conn, a1, "source_fetch_failed", timedelta(hours=2))
        fail(conn, a2, "invalid_image", timedelta(minutes=10))
        fail(conn, a4, "source_fetch_failed", timedelta(0))
        fail(conn, b1, "source_fetch_failed", timedelta(hours=1))
        conn.execute("UPDATE image_optimization_items SET status = 'DONE' WHERE id = %s", (_a3,))
        now: datetime = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]

    expected = {
        FailedFilter(): {a1, a2, a4, b1},
        FailedFilter(store_id="shop-1"): {a1, a2, a4},
        FailedFilter(job_id=b.job_id): {b1},
        FailedFilter(model=SDXL): {a4, b1},  # the item's own model, else its job's
        FailedFilter(error_code="source_fetch_failed"): {a1, a4, b1},
        FailedFilter(since=now - timedelta(minutes=90)): {a2, a4, b1},
        FailedFilter(until=now - timedelta(minutes=30)): {a1, b1},
        FailedFilter(store_id="shop-1", model=SDXL, error_code="source_fetch_failed"): {a4},
        FailedFilter(store_id="shop-3"): set(),
    }
    for match, items in expected.items():
        total, listed = repo.ops_failed_items(match, 100)
        assert {int(row["id"]) for row in listed} == items, match
        assert total == repo.ops_count_failed(match) == len(items), match
        assert retried_ids(db_schema, match) == items, match
    assert {row["model"] for row in repo.ops_failed_items(FailedFilter(model=SDXL), 100)[1]} == {
        SDXL
    }


def test_the_filter_is_inlined_into_the_calling_query(db_schema: str) -> None:
    """A SQL function the planner inlines costs nothing over the query written out: no
    ``Function Scan`` node, the items table scanned in the caller's plan."""
    sql = load_queries()["ops_count_failed"]
    params = FailedFilter(store_id="shop-1").params()
    with connect(db_schema) as conn:
        plan = "\n".join(str(row[0]) for row in conn.execute(f"EXPLAIN {sql}", params))
    assert "Function Scan" not in plan
    assert "image_optimization_items" in plan
