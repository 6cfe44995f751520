"""Fault scenarios 1, 4 and 7: workers and the scheduler leader die by SIGKILL at random
moments, and the same creation message reaches two workers at once."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pipeline.taskqueue import TaskQueue, build_broker
from tests.faults.conftest import REPEATS, FaultStack, assert_all_done

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]
RUNS = range(REPEATS)
CMD = "IMAGEOPT_FAULT_REPEATS=N .venv/bin/pytest tests/faults -k {}"


@pytest.mark.parametrize("run", RUNS)
def test_workers_killed_at_random_moments_lose_nothing_and_pay_at_most_once_more_per_kill(
    make_stack: Any, run: int
) -> None:
    stack: FaultStack = make_stack()
    stack.start_scheduler()
    stack.start_workers("create", queues="create", threads=2)
    stack.start_workers("poll", queues="poll", threads=2)
    stack.insert(stack.good(12))
    stack.wait_started(1)
    creation_kills = 0
    for round_ in range(4):
        time.sleep(stack.rng.uniform(0.3, 2.0))
        victim = "create" if round_ % 2 == 0 else "poll"
        stack.kill(victim)
        creation_kills += victim == "create"
        time.sleep(stack.rng.uniform(0.0, 0.5))
        stack.start_workers(victim, queues=victim, threads=2)
    assert_all_done(
        stack,
        scenario="1. SIGKILL of creation and polling workers (4 kills)",
        crashes=creation_kills,
        command=CMD.format("workers_killed"),
    )


@pytest.mark.parametrize("run", RUNS)
def test_a_killed_scheduler_leader_is_replaced_by_its_standby(make_stack: Any, run: int) -> None:
    stack: FaultStack = make_stack()
    stack.start_scheduler("scheduler-a")
    stack.leader(("scheduler-a",))
    stack.start_scheduler("scheduler-b")
    stack.start_workers("workers", threads=4)
    stack.insert(stack.good(6))
    stack.wait_started(1)
    time.sleep(stack.rng.uniform(0.0, 1.0))
    first = stack.leader(("scheduler-a", "scheduler-b"))
    stack.kill(first)
    standby = "scheduler-b" if first == "scheduler-a" else "scheduler-a"
    assert stack.leader((standby,), timeout=10) == standby
    stack.insert(stack.good(6))  # work that only the new leader can meter
    assert_all_done(
        stack,
        scenario="4. SIGKILL of the scheduler leader",
        crashes=1,
        command=CMD.format("scheduler_leader"),
        timeout=45,
    )


@pytest.mark.parametrize("run", RUNS)
def test_the_same_creation_message_delivered_to_two_workers_creates_one_prediction(
    make_stack: Any, run: int
) -> None:
    stack: FaultStack = make_stack()
    stack.start_scheduler()
    ids = stack.insert(stack.good(6))
    stack.wait_status("QUEUED", len(ids), timeout=60)
    broker = build_broker(stack.env["REDIS_URL"], stack.env["IMAGEOPT_REDIS_NAMESPACE"])
    try:
        queue = TaskQueue(broker)
        queue.send_create(ids)  # two more copies of each message, side by side
        queue.send_create(ids)
    finally:
        broker.close()
    stack.start_workers("workers-1", queues="create,poll", threads=3)
    stack.start_workers("workers-2", queues="create,poll", threads=3)
    out = assert_all_done(
        stack,
        scenario="7. same creation message delivered 3x to two workers",
        command=CMD.format("same_creation_message"),
        timeout=45,
    )
    assert out.predictions == dict.fromkeys(ids, 1)
