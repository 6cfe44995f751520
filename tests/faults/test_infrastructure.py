"""Scenarios 2 and 3 of issue 6: Redis restarts empty (broker queues and limiter state gone),
and Postgres restarts mid-run. Both run on servers of the test's own, never the shared ones."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.faults.conftest import REPEATS, FaultStack, PrivatePostgres, PrivateRedis, assert_sound

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]
RUNS = range(REPEATS)
CMD = "IMAGEOPT_FAULT_REPEATS=N .venv/bin/pytest tests/faults -k {}"


@pytest.mark.parametrize("run", RUNS)
def test_a_redis_restart_that_loses_everything_loses_no_item(
    private_redis: PrivateRedis, make_stack: Any, run: int
) -> None:
    stack: FaultStack = make_stack(redis_url=private_redis.url)
    stack.start_scheduler()
    stack.start_workers("workers", threads=3)
    stack.insert(stack.good(10))
    stack.wait_started(2)
    time.sleep(stack.rng.uniform(0.0, 1.0))
    private_redis.stop()  # SIGKILL: no save, no AOF, so it comes back empty
    time.sleep(stack.rng.uniform(0.5, 2.0))
    private_redis.start()
    out = stack.outcome(timeout=60)
    assert_sound(
        stack,
        out,
        scenario="2. Redis restart losing queues and limiter state",
        crashes=1,
        command=CMD.format("redis_restart"),
    )
    assert all(row["status"] == "DONE" for row in out.rows.values()), out.codes()


@pytest.mark.parametrize("run", RUNS)
def test_a_postgres_restart_mid_run_loses_nothing_and_half_writes_nothing(
    private_postgres: PrivatePostgres, make_stack: Any, run: int
) -> None:
    stack: FaultStack = make_stack(database_url=private_postgres.url)
    stack.start_scheduler()
    stack.start_workers("workers", threads=3)
    stack.insert(stack.good(10))
    stack.wait_started(2)
    time.sleep(stack.rng.uniform(0.0, 1.0))
    private_postgres.stop("fast")  # every session is cut, in-flight transactions roll back
    time.sleep(stack.rng.uniform(0.5, 2.0))
    private_postgres.start()
    out = stack.outcome(timeout=60)
    assert_sound(
        stack,
        out,
        scenario="3. Postgres restart mid-run",
        crashes=1,
        command=CMD.format("postgres_restart"),
    )
    assert all(row["status"] == "DONE" for row in out.rows.values()), out.codes()
    with stack.connect() as conn:
        half = conn.execute(
            "SELECT count(*) FROM image_optimization_items "
            "WHERE (status = 'DONE') <> (output_key IS NOT NULL AND completed_at IS NOT NULL) "
            "OR (status = 'PROCESSING' AND prediction_id IS NULL)"
        ).fetchone()
    assert half == (0,)
