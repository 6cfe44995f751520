"""Several OS processes share one budget through Redis: the hard limit, utilization under
saturation, smoothness, and a pause set by one process that every process obeys.

Grant times are the slots on Redis' clock returned by the Lua script, so the checks do not
depend on the processes' clocks.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from pipeline.ratelimit import Budget, RateLimiter
from pipeline.ratelimit.budget import MICROS_PER_SECOND
from pipeline.ratelimit.gcra import max_in_any_window

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# 20 grants per 2 s window: T = 0.1 s, burst 3 (tau = 0.2 s).
BUDGET = Budget("create", 600, window_seconds=2.0, burst=3)


def barrier(client: redis.Redis, namespace: str, parties: int) -> float:
    """Wait until ``parties`` processes arrived (a loaded machine imports slowly); the common
    start time, a moment after the last one arrived."""
    client.incr(f"{namespace}:ready")
    while int(client.get(f"{namespace}:ready") or 0) < parties:
        time.sleep(0.01)
    client.set(f"{namespace}:start", time.time() + 0.2, nx=True)
    return float(client.get(f"{namespace}:start") or 0)


def hammer(namespace: str, parties: int, seconds: float) -> list[int]:
    """Run in a spawned process: acquire back to back for ``seconds``; the grants' slots."""
    client = redis.Redis.from_url(REDIS_URL)
    limiter = RateLimiter(client, BUDGET, namespace=namespace)
    start_at = barrier(client, namespace, parties)
    end_at = start_at + seconds
    time.sleep(max(0.0, start_at - time.time()))
    slots: list[int] = []
    while time.time() < end_at:
        slots.append(round(limiter.acquire_grant(timeout=10.0).granted_at * MICROS_PER_SECOND))
    client.close()
    return slots


@pytest.fixture
def namespace() -> Iterator[str]:
    prefix = f"test-{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def run_processes(namespace: str, processes: int, seconds: float) -> tuple[float, list[int]]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        result = pool.starmap_async(hammer, [(namespace, processes, seconds)] * processes)
        slots = [slot for slots in result.get(timeout=seconds + 60) for slot in slots]
    client = redis.Redis.from_url(REDIS_URL)
    start_at = float(client.get(f"{namespace}:start") or 0)
    client.close()
    return start_at, slots


def test_four_processes_never_exceed_the_window_and_use_the_whole_budget(namespace: str) -> None:
    _, grants = run_processes(namespace, processes=4, seconds=6.0)
    grants.sort()
    window, limit = BUDGET.window_us, BUDGET.limit

    # Hard: no rolling window holds more than the limit.
    assert max_in_any_window(grants, window) <= limit

    # Saturated: from the first grant, whole windows are (almost) full.
    whole_windows = (grants[-1] - grants[0]) // window
    assert whole_windows >= 2
    in_whole_windows = sum(1 for g in grants if g < grants[0] + whole_windows * window)
    assert in_whole_windows >= 0.97 * whole_windows * limit

    # Smooth: half a window never holds more than GCRA allows (5 T + burst), far below 20.
    assert max_in_any_window(grants, window // 4) <= 8


def test_a_pause_set_by_one_process_stops_every_process(namespace: str) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        result = pool.starmap_async(hammer, [(namespace, 2, 4.0)] * 2)
        client = redis.Redis.from_url(REDIS_URL)
        while client.get(f"{namespace}:start") is None:  # both processes are acquiring
            time.sleep(0.01)
        start_at = float(client.get(f"{namespace}:start") or 0)
        time.sleep(max(0.0, start_at + 1.5 - time.time()))
        limiter = RateLimiter(client, BUDGET, namespace=namespace)
        paused_until = round(limiter.pause(1.0, "provider_429") * MICROS_PER_SECOND)
        client.close()
        grants = sorted(slot for slots in result.get(timeout=40) for slot in slots)
    paused_from = paused_until - 1_000_000

    assert any(g <= paused_from for g in grants)
    assert not [g for g in grants if paused_from < g < paused_until]
    after = [g for g in grants if g >= paused_until]
    assert after
    # It resumes at the steady rate, without a burst: at most one grant per T.
    assert max_in_any_window(after, BUDGET.emission_us) == 1
    assert max_in_any_window(grants, BUDGET.window_us) <= BUDGET.limit
