"""Metering on real Postgres: weighted round-robin across stores, priority then age within a
store, the in-flight bound, the pause flag, items in backoff, and job counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pipeline.allowlist import build_allowlist
from pipeline.repository import Repository
from scheduler.metering import PendingDispatcher
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.integration

MODEL = "nightmareai/real-esrgan"


def sql(schema: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        cur = conn.execute(query, params)
        return list(cur.fetchall()) if cur.description else []


def add_items(
    schema: str, store: str, count: int, *, priority: int = 0, age_seconds: float = 0.0
) -> list[int]:
    """Insert ``count`` PENDING items for ``store`` (one job), oldest first; returns their ids."""
    job = sql(
        schema,
        "INSERT INTO image_optimization_jobs (store_id, model) VALUES (%s, %s) RETURNING id",
        (store, MODEL),
    )[0][0]
    rows = sql(
        schema,
        "INSERT INTO image_optimization_items (job_id, store_id, source_url, priority, created_at) "
        "SELECT %s, %s, 'https://img.example/' || %s || '-' || g || '.jpg', %s, "
        "       now() - make_interval(secs => %s) + g * interval '1 ms' "
        "FROM generate_series(1, %s) g RETURNING id",
        (job, store, store, priority, age_seconds, count),
    )
    return [int(r[0]) for r in rows]


def store_of(schema: str, ids: list[int]) -> list[str]:
    found = dict(
        sql(schema, "SELECT id, store_id FROM image_optimization_items WHERE id = ANY(%s)", (ids,))
    )
    return [found[i] for i in ids]


class Sent:
    """Records creation messages in the order the meter sends them."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def __call__(self, ids: Any) -> int:
        batch = [int(i) for i in ids]
        self.ids.extend(batch)
        return len(batch)


def meter(repo: Repository, limit: int, sent: Sent, *, paused: bool = False) -> PendingDispatcher:
    return PendingDispatcher(
        repo=repo, allowlist=build_allowlist("1:1"), limit=limit, enqueue=sent, paused=paused
    )


def finish_queued(schema: str) -> None:
    """What workers and pollers do, in one step: every QUEUED item ends DONE."""
    sql(
        schema,
        "UPDATE image_optimization_items SET status = 'DONE', completed_at = now(), "
        "updated_at = now() WHERE status = 'QUEUED'",
    )


NOW = datetime.now(UTC) + timedelta(seconds=5)


def test_round_robin_order_follows_store_weights(db_schema: str, repo: Repository) -> None:
    for store in ("a", "b", "c"):
        add_items(db_schema, store, 4)
    sql(db_schema, "INSERT INTO image_optimization_stores (store_id, weight) VALUES ('a', 2)")
    sent = Sent()
    result = meter(repo, 8, sent).run_once(NOW)
    assert result.queued == 8
    assert "".join(store_of(db_schema, sent.ids)) == "aabcaabc"


def test_priority_goes_before_age_within_a_store(db_schema: str, repo: Repository) -> None:
    old = add_items(db_schema, "a", 3, age_seconds=600)
    urgent = add_items(db_schema, "a", 1, priority=5)
    sent = Sent()
    meter(repo, 2, sent).run_once(NOW)
    assert sent.ids == [urgent[0], old[0]]


def test_the_rotation_continues_across_passes_and_a_late_store_is_served_within_one_round(
    db_schema: str, repo: Repository
) -> None:
    stores = [f"s{i:02d}" for i in range(6)]
    for store in stores:
        add_items(db_schema, store, 20, age_seconds=60)
    sent = Sent()
    m = meter(repo, 2, sent)
    m.run_once(NOW)  # s00, s01
    finish_queued(db_schema)
    late = add_items(db_schema, "late", 1)[0]  # sorts after every sNN
    served_at = None
    for n in range(1, len(stores) + 2):  # one round: every store once, 2 per pass
        m.run_once(NOW)
        finish_queued(db_schema)
        if late in sent.ids:
            served_at = n
            break
    assert served_at is not None
    assert served_at <= (len(stores) + 1) // 2 + 1
    assert store_of(db_schema, sent.ids[:8]) == [
        "s00",
        "s01",
        "s02",
        "s03",
        "s04",
        "s05",
        "late",
        "s00",
    ]


def test_in_flight_never_exceeds_the_limit(db_schema: str, repo: Repository) -> None:
    for store in ("a", "b"):
        add_items(db_schema, store, 50)
    sent = Sent()
    m = meter(repo, 7, sent)
    first = m.run_once(NOW)
    second = m.run_once(NOW)
    assert (first.queued, second.queued, second.in_flight, second.saturated) == (7, 0, 7, True)
    sql(
        db_schema,
        "UPDATE image_optimization_items SET status = 'SUBMITTING' WHERE id = ANY(%s)",
        (sent.ids[:3],),
    )
    assert m.run_once(NOW).queued == 0  # SUBMITTING still counts
    sql(
        db_schema,
        "UPDATE image_optimization_items SET status = 'PROCESSING' WHERE id = ANY(%s)",
        (sent.ids[:3],),
    )
    assert m.run_once(NOW).queued == 3
    assert repo.count_in_flight() == 7
    assert len(set(sent.ids)) == len(sent.ids) == 10


def test_paused_submissions_leave_every_item_pending(db_schema: str, repo: Repository) -> None:
    add_items(db_schema, "a", 5)
    sent = Sent()
    result = meter(repo, 10, sent, paused=True).run_once(NOW)
    assert result.paused
    assert result.queued == 0
    assert sent.ids == []
    assert repo.queue_depths()["PENDING"] == 5
    assert meter(repo, 10, sent).run_once(NOW).queued == 5  # unpaused: nothing was lost


def test_items_in_backoff_wait_and_the_rotation_moves_past_them(
    db_schema: str, repo: Repository
) -> None:
    waiting = add_items(db_schema, "a", 2)
    sql(
        db_schema,
        "UPDATE image_optimization_items SET next_attempt_at = now() + interval '1 h' "
        "WHERE id = ANY(%s)",
        (waiting,),
    )
    ready = add_items(db_schema, "b", 1)
    sent = Sent()
    m = meter(repo, 1, sent)
    m.run_once(NOW)  # visits only 'a' (capacity 1): nothing due there
    assert sent.ids == []
    assert m.cursor == "a"
    m.run_once(NOW)
    assert sent.ids == ready


def test_invalid_items_fail_at_metering_without_using_capacity(
    db_schema: str, repo: Repository
) -> None:
    bad = add_items(db_schema, "a", 1)[0]
    sql(
        db_schema,
        "UPDATE image_optimization_items SET model = 'acme/unknown' WHERE id = %s",
        (bad,),
    )
    good = add_items(db_schema, "a", 1)
    sent = Sent()
    result = meter(repo, 5, sent).run_once(NOW)
    assert (result.invalid, sent.ids) == (1, good)
    assert sql(
        db_schema, "SELECT status, error_code FROM image_optimization_items WHERE id = %s", (bad,)
    ) == [("FAILED", "unknown_model")]


def test_job_status_and_counters_follow_items(db_schema: str, repo: Repository) -> None:
    ids = add_items(db_schema, "a", 4)
    empty_job = sql(
        db_schema,
        "INSERT INTO image_optimization_jobs (store_id, model) VALUES ('b', %s) RETURNING id",
        (MODEL,),
    )[0][0]
    since = datetime.now(UTC) - timedelta(seconds=30)
    repo.refresh_recent_jobs(since)
    job = (
        "SELECT status, total_items, done_items, failed_items, canceled_items "
        "FROM image_optimization_jobs WHERE id = (SELECT job_id FROM "
        "image_optimization_items WHERE id = %s)"
    )
    assert sql(db_schema, job, (ids[0],)) == [("PENDING", 4, 0, 0, 0)]
    sql(
        db_schema,
        "UPDATE image_optimization_items SET status = 'PROCESSING', updated_at = now() "
        "WHERE id = %s",
        (ids[0],),
    )
    repo.refresh_recent_jobs(since)
    assert sql(db_schema, job, (ids[0],)) == [("PROCESSING", 4, 0, 0, 0)]
    for item_id, status in zip(ids, ("DONE", "DONE", "FAILED", "CANCELED"), strict=True):
        sql(
            db_schema,
            "UPDATE image_optimization_items SET status = %s, updated_at = now() WHERE id = %s",
            (status, item_id),
        )
    changed = repo.refresh_recent_jobs(since)
    assert [r.status for r in changed] == ["DONE"]
    assert sql(db_schema, job, (ids[0],)) == [("DONE", 4, 2, 1, 1)]
    assert repo.refresh_recent_jobs(since) == []  # nothing changed: nothing written
    repo.refresh_active_jobs()
    assert sql(
        db_schema, "SELECT status FROM image_optimization_jobs WHERE id = %s", (empty_job,)
    ) == [("PENDING",)]  # items not inserted yet: left alone
