"""Fault scenarios 2 and 3: Redis restarts empty (broker queues and limiter state gone),
and Postgres restarts mid-run. Both run on servers of the test's own, never the shared ones."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.faults.conftest import (
    REPEATS,
    FaultStack,
    PrivatePostgres,
    PrivateRedis,
    assert_all_done,
    wait_until,
)

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
    assert_all_done(
        stack,
        scenario="2. Redis restart losing queues and limiter state",
        crashes=1,
        command=CMD.format("redis_restart"),
    )


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
    assert_all_done(
        stack,
        scenario="3. Postgres restart mid-run",
        crashes=1,
        command=CMD.format("postgres_restart"),
    )
    with stack.connect() as conn:
        half = conn.execute(
            "SELECT count(*) FROM image_optimization_items "
            "WHERE (status = 'DONE') <> (output_key IS NOT NULL AND completed_at IS NOT NULL) "
            "OR (status = 'PROCESSING' AND prediction_id IS NULL)"
        ).fetchone()
    assert half == (0,)


@pytest.mark.parametrize("run", RUNS)
def test_postgres_cut_under_the_workers_queries_costs_no_extra_prediction(
    private_postgres: PrivatePostgres, make_stack: Any, run: int
) -> None:
    """Deterministic half of scenario 3: the workers' writes are cut while they execute.

    A short outage is absorbed by the pool (a checkout waits for a new connection); what
    breaks is a statement running when its session is cut (``57P01``). The test holds a table
    lock so that every worker's ``mark_processing`` waits inside ``execute``, terminates those
    sessions while the lock is still held (what a fast shutdown does to them; stopping the
    server instead races: the lock holder may exit first and let a write through), then
    restarts the server. Each message must be retried without a traceback, and the rescuer
    must adopt each prediction by its input URL, so no item pays twice.
    """
    stack: FaultStack = make_stack(
        database_url=private_postgres.url,
        extra_env={"IMAGEOPT_RESCUE_SUBMITTING_SECONDS": "4"},
    )
    stack.start_scheduler()
    stack.start_workers("workers", threads=3)
    stack.emulator(slow_response_seconds=1.0)  # the answers come after the lock is taken
    ids = stack.insert(stack.good(3))
    wait_until(lambda: len(stack.predictions()) == 3, 60, "three predictions not created")
    holder = stack.connect()
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE image_optimization_items IN EXCLUSIVE MODE")  # reads still pass
    waiting = (
        "FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE '%SET status = ''PROCESSING'', prediction_id%'"
    )
    with stack.connect() as probe:
        wait_until(
            lambda: (probe.execute(f"SELECT count(*) {waiting}").fetchone() or (0,))[0] >= 3,
            15,
            "three worker writes not waiting on the lock",
        )
        cut = probe.execute(f"SELECT pg_terminate_backend(pid) {waiting}").fetchall()
    assert cut.count((True,)) >= 3
    stack.emulator(slow_response_seconds=0.0)
    private_postgres.stop("fast")  # and every other session, the lock holder's too
    holder.close()
    time.sleep(1.0)
    private_postgres.start()
    out = assert_all_done(
        stack,
        scenario="3b. Postgres cut under the workers' writes",
        crashes=1,
        command=CMD.format("under_the_workers_queries"),
    )
    assert out.predictions == dict.fromkeys(ids, 1)
    logs = (stack.log_dir / "workers.log").read_text(errors="replace")
    assert logs.count("database_unavailable") >= 3, "the outage did not reach the workers"
