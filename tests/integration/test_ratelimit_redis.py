"""The rate limiter against a real Redis: timeouts, stats, pauses, cancellation, cold start,
and the Lua scripts replayed through the pure model (they must decide exactly alike)."""

from __future__ import annotations

import itertools
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import RateLimitTimeout
from pipeline.ratelimit import Budget, RateLimiter, gcra
from pipeline.ratelimit.budget import MICROS_PER_SECOND
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


@pytest.fixture
def namespace(redis_namespace: str) -> str:
    return redis_namespace


def micros(seconds: float) -> int:
    return round(seconds * MICROS_PER_SECOND)


def test_acquire_past_its_deadline_fails_at_once_and_reserves_nothing(
    client: redis.Redis, namespace: str
) -> None:
    # 2 per 2 s; a cold start assumes both were just used, so the first slot is 1 s away.
    limiter = RateLimiter(client, Budget("create", 60, window_seconds=2.0), namespace=namespace)
    started = time.monotonic()
    with pytest.raises(RateLimitTimeout):
        limiter.acquire(timeout=0.2)
    assert time.monotonic() - started < 0.15
    assert not limiter.try_acquire()
    assert limiter.stats().waiting == 0
    assert 0.8 < limiter.acquire(timeout=math.inf) < 1.2


def test_stats_report_grants_waiters_usage_and_pause(client: redis.Redis, namespace: str) -> None:
    budget = Budget("read", 600, window_seconds=2.0, burst=2)  # 20 per 2 s, T = 0.1 s
    limiter = RateLimiter(client, budget, namespace=namespace)
    for _ in range(3):
        limiter.acquire(timeout=2.0)
    stats = limiter.stats()
    assert (stats.budget, stats.budget_rpm, stats.limit, stats.window_seconds) == (
        "read",
        600,
        20,
        2.0,
    )
    assert stats.granted_in_window == 3  # the cold start's virtual grants are not counted
    assert stats.waiting == 0
    assert stats.usage_percent == 15.0
    assert stats.paused_until is None
    assert stats.pause_reason is None

    gate = threading.Event()
    waiter = RateLimiter(client, budget, namespace=namespace, sleep=lambda _: gate.wait(5))
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(waiter.acquire, 5.0) for _ in range(3)]
        deadline = time.monotonic() + 2
        while limiter.stats().waiting < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert limiter.stats().waiting == 3
        gate.set()
        for future in futures:
            future.result()

    paused_until = limiter.pause(1.5, "provider_429")
    stats = limiter.stats()
    assert stats.paused_until == paused_until
    assert 1.4 < paused_until - stats.now <= 1.5
    assert stats.pause_reason == "provider_429"


def test_a_client_that_decodes_responses_works_the_same(namespace: str) -> None:
    decoded = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        limiter = RateLimiter(decoded, Budget("read", 600, 2.0, burst=1), namespace=namespace)
        limiter.acquire(timeout=2.0)
        limiter.pause(1.0, "provider_429")
        stats = limiter.stats()
        assert stats.granted_in_window == 1
        assert stats.pause_reason == "provider_429"
    finally:
        decoded.close()


def test_every_key_has_a_ttl_so_idle_budgets_vanish(client: redis.Redis, namespace: str) -> None:
    limiter = RateLimiter(client, Budget("create", 600, 2.0, burst=1), namespace=namespace)
    limiter.acquire(timeout=2.0)
    limiter.pause(0.1, "provider_429")
    ttls = {key: cast(int, client.pttl(key)) for key in limiter.keys}
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    assert ttls[limiter.log_key] <= 2.0 * 1000 + 2000


def test_an_interrupted_wait_gives_its_slot_back(client: redis.Redis, namespace: str) -> None:
    # One grant per second, so the given-back slot (first + 1 s) and the slot after it
    # (first + 2 s) stay distinguishable on a loaded machine.
    budget = Budget("create", 60, window_seconds=10.0, burst=1)
    warm = RateLimiter(client, budget, namespace=namespace)
    first = warm.acquire_grant(timeout=15.0)  # pays the cold start
    waits: list[float] = []

    def interrupted(seconds: float) -> None:
        waits.append(seconds)
        raise KeyboardInterrupt

    limiter = RateLimiter(client, budget, namespace=namespace, sleep=interrupted)
    with pytest.raises(KeyboardInterrupt):
        limiter.acquire(timeout=5.0)
    assert waits, "the interrupted caller should have had to wait for a slot"
    assert limiter.stats().waiting == 0
    # The next caller gets the very slot that was given back.
    again = warm.acquire_grant(timeout=5.0)
    assert again.granted_at - first.granted_at == pytest.approx(1.0, abs=0.3)


def test_a_pause_revokes_a_sleeping_reservation_and_it_waits_for_the_pause(
    client: redis.Redis, namespace: str
) -> None:
    budget = Budget("create", 600, window_seconds=2.0, burst=1)
    RateLimiter(client, budget, namespace=namespace).acquire(timeout=2.0)
    gate = threading.Event()
    calls = itertools.count()

    def first_sleep_blocks(seconds: float) -> None:
        if next(calls) == 0:
            gate.wait(30)  # long enough for a loaded host to see the reservation waiting
        else:
            time.sleep(seconds)

    sleeper = RateLimiter(client, budget, namespace=namespace, sleep=first_sleep_blocks)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(sleeper.acquire_grant, 5.0)
        deadline = time.monotonic() + 20
        while sleeper.stats().waiting == 0:
            assert time.monotonic() < deadline, "the sleeper never reserved a slot"
            time.sleep(0.005)
        paused_until = sleeper.pause(0.6, "provider_429")
        assert sleeper.stats().waiting == 0
        gate.set()
        grant = future.result()
    assert grant.granted_at >= paused_until


def test_losing_every_key_mid_run_never_overshoots_the_window(
    client: redis.Redis, namespace: str
) -> None:
    """A Redis restart without persistence: state and sleeping reservations vanish."""
    budget = Budget("create", 600, window_seconds=2.0, burst=5)  # 20 per 2 s
    end = time.monotonic() + 4.5
    reset_at = time.monotonic() + 2.2

    def hammer() -> list[float]:
        limiter = RateLimiter(client, budget, namespace=namespace)
        grants = []
        while time.monotonic() < end:
            grants.append(limiter.acquire_grant(timeout=5.0).granted_at)
        return grants

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(hammer) for _ in range(4)]
        time.sleep(max(0.0, reset_at - time.monotonic()))
        RateLimiter(client, budget, namespace=namespace).reset()
        grants = [micros(g) for f in futures for g in f.result()]
    assert gcra.max_in_any_window(grants, budget.window_us) <= budget.limit
    assert len(grants) >= 35  # both sides of the reset were saturated


def test_a_late_waker_is_counted_from_its_dispatch_not_its_slot(
    client: redis.Redis, namespace: str
) -> None:
    """The dispatch stamp: the next window counts from when the late caller really went."""
    budget = Budget("create", 120, window_seconds=0.5, burst=1)  # 1 per 0.5 s
    late_by = 0.2

    def oversleep(seconds: float) -> None:
        time.sleep(seconds + late_by)

    late = RateLimiter(client, budget, namespace=namespace, sleep=oversleep)
    first = late.acquire_grant(timeout=5.0)  # cold start: waits one window, wakes late
    assert first.waited >= budget.window_seconds + late_by
    second = RateLimiter(client, budget, namespace=namespace).acquire_grant(timeout=5.0)
    gap = second.granted_at - first.granted_at
    assert gap >= budget.window_seconds + late_by - 0.02  # counted from the real dispatch
    assert gap < budget.window_seconds + late_by + 0.15


# --- the Lua scripts decide exactly like the pure model -----------------------------------

Op = tuple[str, int, int]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    limit=st.integers(min_value=1, max_value=6),
    burst=st.integers(min_value=1, max_value=4),
    program=st.lists(
        st.tuples(
            st.sampled_from(
                ["reserve", "reserve", "reserve", "try", "confirm", "release", "pause", "restart"]
            ),
            st.integers(min_value=0, max_value=40),  # milliseconds to sleep first
            st.integers(min_value=0, max_value=1000),  # operand
        ),
        min_size=1,
        max_size=20,
    ),
)
def test_the_lua_scripts_decide_exactly_like_the_model(
    client: redis.Redis, limit: int, burst: int, program: list[Op]
) -> None:
    budget = Budget("b", limit * 200, window_seconds=0.3, burst=burst)
    limiter = RateLimiter(client, budget, namespace=f"test-{uuid.uuid4().hex}")
    model = gcra.ModelState()
    live: dict[str, int] = {}
    used: list[int] = []
    tokens = itertools.count()

    def settle(now: int) -> None:
        for token, slot in list(live.items()):
            if slot <= now:
                used.append(slot)
                del live[token]
            elif token not in model.log:  # revoked by a pause or lost in a restart
                del live[token]

    try:
        for kind, sleep_ms, operand in program:
            time.sleep(sleep_ms / 1000)
            if kind in ("reserve", "try"):
                token = f"t{next(tokens)}"
                max_wait = 0 if kind == "try" else operand * budget.window_us // 200
                decision = limiter._call_reserve(token, max_wait)
                assert decision == gcra.reserve(model, budget, decision.now, max_wait, token)
                if decision.granted:
                    live[token] = decision.slot
                settle(decision.now)
            elif kind == "release" and live:
                token = sorted(live)[operand % len(live)]
                released, now = limiter._call_release(token)
                assert released == gcra.release(model, budget, now, token)
                if released:
                    del live[token]
                settle(now)
            elif kind == "confirm" and live:
                token = sorted(live)[operand % len(live)]
                at = (decision.now + operand * budget.window_us // 1000) if operand % 2 else 0
                kept, now, stamp = limiter._call_confirm(token, at)
                assert (stamp if kept else None) == gcra.confirm(model, now, token, at)
                settle(now)
            elif kind == "pause":
                duration = operand * budget.window_us // 1000
                paused_until, revoked, now = limiter._call_pause(duration, "provider_429")
                assert (paused_until, revoked) == gcra.pause(
                    model, budget, now, duration, "provider_429"
                )
                settle(now)
            elif kind == "restart":
                limiter.reset()
                model = gcra.ModelState()
                settle(0)
        used.extend(live.values())
        assert gcra.max_in_any_window(used, budget.window_us) <= budget.limit
    finally:
        limiter.reset()
