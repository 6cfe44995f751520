"""Per-store pause and weights on real Postgres: a paused store's items stay PENDING while the
other stores are metered with their weights as before; paused stores never stall the rotation;
a change of a store's settings wakes the scheduler leader (NOTIFY)."""

from __future__ import annotations

import psycopg
import pytest

from pipeline.repository import Repository
from tests.conftest import DATABASE_URL
from tests.integration.test_scheduling import (
    NOW,
    Sent,
    add_items,
    finish_queued,
    meter,
    sql,
    store_of,
)

pytestmark = pytest.mark.integration


def pending_of(schema: str, store: str) -> int:
    return int(
        sql(
            schema,
            "SELECT count(*) FROM image_optimization_items WHERE store_id = %s "
            "AND status = 'PENDING'",
            (store,),
        )[0][0]
    )


def test_a_paused_store_keeps_its_items_pending_and_the_others_keep_their_shares(
    db_schema: str, repo: Repository
) -> None:
    for store in ("a", "b", "c", "p"):
        add_items(db_schema, store, 4)
    repo.ops_set_store("a", weight=2)
    repo.ops_set_store("p", paused=True, reason="supplier feed broken")
    sent = Sent()
    m = meter(repo, 8, sent)
    assert m.run_once(NOW).queued == 8
    assert "".join(store_of(db_schema, sent.ids)) == "aabcaabc"
    assert pending_of(db_schema, "p") == 4

    row = repo.ops_set_store("p", paused=False)
    assert (row["paused"], row["paused_reason"], row["weight"]) == (False, None, 1)
    finish_queued(db_schema)
    m.run_once(NOW)
    assert pending_of(db_schema, "p") < 4  # resumed: metered again, nothing was lost


def test_many_paused_stores_never_stall_the_rotation(db_schema: str, repo: Repository) -> None:
    paused = [f"a{i:02d}" for i in range(12)]  # all sort before the live store
    for store in paused:
        add_items(db_schema, store, 2)
        repo.ops_set_store(store, paused=True)
    add_items(db_schema, "zz", 3)
    sent = Sent()
    result = meter(repo, 2, sent).run_once(NOW)  # 2 probes' worth of capacity, 12 paused first
    assert result.queued == 2
    assert store_of(db_schema, sent.ids) == ["zz", "zz"]
    assert repo.ops_paused_stores() == 12


def test_a_weight_change_takes_effect_on_the_next_pass_and_wakes_the_leader(
    db_schema: str, repo: Repository
) -> None:
    for store in ("a", "b"):
        add_items(db_schema, store, 20)
    sent = Sent()
    m = meter(repo, 4, sent)
    m.run_once(NOW)
    assert sorted(store_of(db_schema, sent.ids)) == ["a", "a", "b", "b"]
    finish_queued(db_schema)
    with psycopg.connect(DATABASE_URL, autocommit=True) as listener:
        listener.execute("LISTEN imageopt_pending")
        row = repo.ops_set_store("b", weight=3, quota=50)
        # The channel is database-wide: other test workers' schemas notify on it too.
        woken = any(n.payload == db_schema for n in listener.notifies(timeout=5))
    assert woken
    assert (row["weight"], row["quota"]) == (3, 50)
    sent.ids.clear()
    m.cursor = None
    m.run_once(NOW)
    assert "".join(store_of(db_schema, sent.ids)) == "abbb"
    assert repo.ops_set_store("b", clear_quota=True)["quota"] is None
