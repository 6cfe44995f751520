"""The scheduler loop in a thread (real Postgres and Redis): an insert wakes it through
LISTEN/NOTIFY, not the tick; the heartbeat line carries cycle, queue by status and RPM."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import structlog

from pipeline.allowlist import build_allowlist
from pipeline.migrate import migrate
from pipeline.provider import ProviderClient
from pipeline.taskqueue import TaskQueue, build_broker
from scheduler.loop import Scheduler, SchedulerConfig
from tests.conftest import DATABASE_URL, REDIS_URL
from tests.support.cycles import wait_cycles
from tests.support.rows import insert_job, wait_for_status, wait_until

pytestmark = pytest.mark.integration

MODEL = "nightmareai/real-esrgan"


@contextlib.contextmanager
def run_scheduler(
    schema: str, namespace: str, *, expect_leader: bool = True, **overrides: Any
) -> Iterator[Scheduler]:
    config = SchedulerConfig(
        database_url=DATABASE_URL, schema=schema, in_flight_limit=10, **overrides
    )
    broker = build_broker(REDIS_URL, namespace)
    provider = ProviderClient("http://127.0.0.1:9/v1", "")  # never called: nothing to rescue
    scheduler = Scheduler(
        config=config,
        queue=TaskQueue(broker),
        provider=provider,
        storage=None,  # type: ignore[arg-type]  # the rescuer finds no work
        allowlist=build_allowlist("1:1"),
        rpm_usage=lambda: {"create": "3/450 (0.7%)"},
    )
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while expect_leader and not scheduler.is_leader and time.monotonic() < deadline:
        time.sleep(0.02)
    assert scheduler.is_leader or not expect_leader
    try:
        yield scheduler
    finally:
        stop.set()
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:  # wake it to see the stop
            conn.execute("SELECT pg_notify('imageopt_pending', %s)", (schema,))
        thread.join(timeout=10)
        assert not thread.is_alive()
        provider.close()
        broker.close()


def insert_item(schema: str, store: str = "s") -> int:
    """One PENDING item in a job of its own (as upstream inserts it); its id."""
    return insert_job(schema, store, ["https://img.example/a.jpg"], model=MODEL).item_ids[0]


def wait_status(schema: str, item_id: int, want: str, timeout: float) -> float:
    """Seconds until ``item_id`` has status ``want``."""
    started = time.monotonic()
    wait_for_status(schema, item_ids=[item_id], statuses=(want,), timeout=timeout, interval=0.005)
    return time.monotonic() - started


def test_an_insert_wakes_the_idle_leader_through_notify_not_the_tick(
    db_schema: str, redis_namespace: str
) -> None:
    with run_scheduler(db_schema, redis_namespace, tick=30.0):
        time.sleep(0.3)  # let it fall asleep on the 30 s tick
        waits = []
        for _ in range(5):
            item = insert_item(db_schema)
            waits.append(wait_status(db_schema, item, "QUEUED", timeout=5))
            time.sleep(0.1)
        assert max(waits) < 1.0, waits


def test_the_heartbeat_logs_cycle_queue_by_status_and_rpm(
    db_schema: str, redis_namespace: str
) -> None:
    insert_item(db_schema)
    with (
        structlog.testing.capture_logs() as logs,
        run_scheduler(db_schema, redis_namespace, heartbeat_interval=0.2, tick=0.1) as scheduler,
    ):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and scheduler.cycle < 5:
            time.sleep(0.05)
        time.sleep(0.3)
    beats = [entry for entry in logs if entry["event"] == "heartbeat"]
    assert len(beats) >= 2
    last = beats[-1]
    assert last["cycle"] > beats[0]["cycle"] >= 1
    assert last["queue"] == {"PENDING": 0, "QUEUED": 1, "SUBMITTING": 0, "PROCESSING": 0}
    assert last["queue_length"] == 1
    assert (last["in_flight"], last["in_flight_limit"]) == (1, 10)
    assert last["rpm"] == {"create": "3/450 (0.7%)"}
    assert last["submissions_paused"] is False


def test_a_paused_leader_keeps_new_items_pending(db_schema: str, redis_namespace: str) -> None:
    with (
        structlog.testing.capture_logs() as logs,
        run_scheduler(db_schema, redis_namespace, submissions_paused=True, tick=0.1) as scheduler,
    ):
        item = insert_item(db_schema)
        wait_cycles(scheduler, 2, db_schema)  # the leader has looked at the item, and held it
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={db_schema}") as conn:
        row = conn.execute(
            "SELECT status FROM image_optimization_items WHERE id = %s", (item,)
        ).fetchone()
    assert row == ("PENDING",)
    assert any(entry["event"] == "submissions_paused" for entry in logs)


def test_a_new_leader_sends_the_messages_its_predecessor_committed_but_never_sent(
    db_schema: str, redis_namespace: str
) -> None:
    items = [insert_item(db_schema) for _ in range(3)]
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={db_schema}") as conn:
        conn.execute(  # a dead leader's last pass: committed QUEUED ...
            "UPDATE image_optimization_items SET status = 'QUEUED' WHERE id = ANY(%s)", (items,)
        )
    broker = build_broker(REDIS_URL, redis_namespace)
    queue = TaskQueue(broker)
    try:
        queue.send_create(items[:1])  # ... and sent only the first message
        with run_scheduler(db_schema, redis_namespace, tick=30.0):  # rescuer: 120 s threshold
            deadline = time.monotonic() + 5
            while set(queue.pending_create_items()) != set(items) and time.monotonic() < deadline:
                time.sleep(0.05)
        sent = queue.pending_create_items()
    finally:
        broker.close()
    assert sent == Counter(items)  # one message each: none lost, none sent twice


def test_a_leader_on_a_schema_without_this_releases_migrations_waits_for_them(
    db_schema: str, redis_namespace: str
) -> None:
    """A release that starts before `imageopt migrate` ran: the leader meters nothing, logs
    ``schema_not_migrated`` with the missing versions, and starts once they are applied."""
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={db_schema}") as conn:
        conn.execute("DROP TABLE image_optimization_controls")  # as before release 0005
        conn.execute("DELETE FROM imageopt_schema_migrations WHERE version = 5")
    item = insert_item(db_schema)
    with (
        structlog.testing.capture_logs() as logs,
        run_scheduler(
            db_schema, redis_namespace, expect_leader=False, tick=0.1, schema_retry=0.2
        ) as scheduler,
    ):
        # twice refused to lead (the first refusal may predate nothing: wait for a second)
        wait_until(
            lambda: sum(e["event"] == "schema_not_migrated" for e in logs) >= 2,
            10,
            "the scheduler did not look at the schema twice",
        )
        led = scheduler.is_leader
        with psycopg.connect(DATABASE_URL, options=f"-c search_path={db_schema}") as conn:
            held = conn.execute(
                "SELECT status FROM image_optimization_items WHERE id = %s", (item,)
            ).fetchone()
        migrate(DATABASE_URL, db_schema)
        waited = wait_status(db_schema, item, "QUEUED", timeout=5)
    assert held == ("PENDING",)
    assert led is False
    errors = [e for e in logs if e["event"] == "schema_not_migrated"]
    assert errors
    assert errors[0]["missing"] == [5]
    assert waited < 5
