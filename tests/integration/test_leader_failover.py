"""Two real ``scheduler`` processes: one leads, the other stands by; SIGKILL the leader and the
standby takes over within seconds, with no double metering (the in-flight count never exceeds
the bound and no item gets two creation messages). The test itself plays the creation worker:
it pops creation messages from Redis and finishes their items."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psycopg
import pytest
import redis

from devstack.stack import running_stack
from tests.conftest import DATABASE_URL, REDIS_URL
from tests.support.rows import insert_job, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIMIT = 10  # IMAGEOPT_CREATE_RPM=600 x IMAGEOPT_IN_FLIGHT_BUDGET_SECONDS=1 / 60
ITEMS_PER_STORE = 60
STORES = ("s1", "s2", "s3", "s4")


def leader_log_seen(log_dir: Path, name: str) -> bool:
    path = log_dir / f"{name}.log"
    return path.exists() and '"leader_acquired"' in path.read_text(errors="replace")


def standby_rounds(log_dir: Path, name: str) -> int:
    """How often ``name`` found the lock taken (its ``leader_standby`` debug lines)."""
    path = log_dir / f"{name}.log"
    return path.read_text(errors="replace").count('"leader_standby"') if path.exists() else 0


def insert_items(schema: str) -> None:
    for store in STORES:
        urls = [f"https://img.example/{g}.jpg" for g in range(1, ITEMS_PER_STORE + 1)]
        insert_job(schema, store, urls)


def test_a_standby_takes_over_after_sigkill_without_double_metering(
    pipeline_env: dict[str, str], db_schema: str, redis_namespace: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **pipeline_env,
        "IMAGEOPT_CREATE_RPM": "600",
        "IMAGEOPT_IN_FLIGHT_BUDGET_SECONDS": "1",
        "IMAGEOPT_MIN_IN_FLIGHT": "1",
        "REPLICATE_BASE_URL": "http://127.0.0.1:9/v1",
        "IMAGEOPT_LOG_FORMAT": "json",
        "IMAGEOPT_SCHEDULER_TICK_SECONDS": "0.2",
    }
    log_dir = tmp_path / "logs"
    queue_key = f"{redis_namespace}-dramatiq:imageopt-create"
    seen: dict[int, int] = {}
    max_in_flight = 0
    with redis.Redis.from_url(REDIS_URL) as client, running_stack(env, log_dir) as stack:
        group = stack.group
        stack.start_scheduler("sched-a")
        wait_until(lambda: leader_log_seen(log_dir, "sched-a"), 30, "sched-a did not lead")
        stack.start_scheduler("sched-b", IMAGEOPT_LOG_LEVEL="DEBUG")
        # b has tried the lock twice and found it taken: it stands by (not merely slow to start)
        wait_until(lambda: standby_rounds(log_dir, "sched-b") >= 2, 30, "sched-b never tried")
        assert not leader_log_seen(log_dir, "sched-b")
        insert_items(db_schema)
        total = ITEMS_PER_STORE * len(STORES)
        killed_at = took_over = None
        with psycopg.connect(
            DATABASE_URL, options=f"-c search_path={db_schema}", autocommit=True
        ) as conn:
            deadline = time.monotonic() + 90
            while len(seen) < total or any(n != 1 for n in seen.values()):
                assert time.monotonic() < deadline, (len(seen), group.log_tail("sched-b"))
                row = conn.execute(
                    "SELECT count(*) FROM image_optimization_items "
                    "WHERE status IN ('QUEUED', 'SUBMITTING')"
                ).fetchone()
                assert row is not None
                max_in_flight = max(max_in_flight, int(row[0]))
                for _ in range(3):  # a slow worker: about 60 items a second
                    message_id = client.lpop(queue_key)
                    if message_id is None:
                        break
                    raw = client.hget(f"{queue_key}.msgs", message_id)
                    assert raw is not None
                    item_id = int(json.loads(raw)["args"][0])
                    seen[item_id] = seen.get(item_id, 0) + 1
                    conn.execute(
                        "UPDATE image_optimization_items SET status = 'DONE', "
                        "completed_at = now(), updated_at = now() "
                        "WHERE id = %s AND status = 'QUEUED'",
                        (item_id,),
                    )
                if killed_at is None and len(seen) >= total // 4:
                    group.kill("sched-a")  # SIGKILL to the leader's process group
                    killed_at = time.monotonic()
                if killed_at and took_over is None and leader_log_seen(log_dir, "sched-b"):
                    took_over = time.monotonic() - killed_at
                if len(seen) == total and all(n == 1 for n in seen.values()):
                    break
                time.sleep(0.05)
        assert took_over is not None, group.log_tail("sched-b")
        assert took_over < 5.0
        assert max_in_flight <= LIMIT
        # A SIGKILL between the leader's commit and its sends leaves items QUEUED without a
        # message: the new leader sends those at once (the rescuer's threshold is 120 s).
        assert sorted(n for n in seen.values() if n != 1) == []
        assert len(seen) == total
