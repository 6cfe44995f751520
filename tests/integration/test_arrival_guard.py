"""``pipeline.ratelimit.arrivals``: the create budget's arrival correction against a real Redis:
offsets shared between processes, log entries moved to the estimated arrival, the guard that is
left, and the limiter holding the limit over the window plus the guard in force."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import pytest
import redis

import pipeline.ratelimit.arrivals as arrivals_module
import pipeline.ratelimit.jitter as jitter_module
from pipeline.ratelimit import Budget, Grant, RateLimiter
from pipeline.ratelimit.arrivals import ArrivalGuard
from pipeline.ratelimit.budget import MICROS_PER_SECOND
from pipeline.ratelimit.gcra import max_in_any_window
from pipeline.ratelimit.jitter import RESIDUAL_GUARD_SECONDS

pytestmark = pytest.mark.integration

T0 = 1_795_000_000.0  # unix seconds, as Redis' clock would give them


@pytest.fixture(autouse=True)
def no_throttling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arrivals_module, "PUBLISH_SECONDS", 0.0)
    monkeypatch.setattr(arrivals_module, "REFRESH_SECONDS", 0.0)
    monkeypatch.setattr(jitter_module, "MIN_SAMPLES", 4)


def guard(client: redis.Redis, namespace: str, window: float = 60.0) -> ArrivalGuard:
    budget = Budget("create", 450, window, guard_seconds=0.3)
    return ArrivalGuard(client, budget, namespace=namespace, fallback=0.3, ceiling=0.6)


def stamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def test_processes_share_the_fastest_offset_and_settle_after_one_window(
    redis_client: redis.Redis, redis_namespace: str
) -> None:
    quiet, busy, reader = (guard(redis_client, redis_namespace) for _ in range(3))
    assert reader.current() == 0.3  # nothing seen yet: the configured guard
    # The provider's clock is 5 s behind Redis'; the quiet host's requests take 2 ms.
    for i in range(3):
        assert quiet.observe(T0 + i, stamp(T0 + i - 5.0 + 0.002)) == pytest.approx(T0 + i)
    reader.current()  # reads the quiet host's offsets
    late = busy.observe(T0 + 10, stamp(T0 + 10 - 5.0 + 0.090))  # 88 ms slower than the fastest
    assert late == pytest.approx(T0 + 10 + 0.088)
    assert reader.current() == 0.3  # 4 creates, but over 10 s only: not settled
    busy.observe(T0 + 61, stamp(T0 + 61 - 5.0 + 0.002))
    assert reader.current() == RESIDUAL_GUARD_SECONDS  # 5 creates over 61 s
    assert 0 < int(redis_client.ttl(reader.key)) <= 600
    assert quiet.observe(T0 + 62, None) is None  # no created_at: no estimate


def test_a_recorded_arrival_moves_the_log_entry_and_the_next_window(
    redis_client: redis.Redis, redis_namespace: str
) -> None:
    budget = Budget("create", 120, window_seconds=0.5, burst=1)  # 1 per 0.5 s
    limiter = RateLimiter(redis_client, budget, namespace=redis_namespace, guard=lambda: 0.0)
    arrivals = ArrivalGuard(
        redis_client, budget, namespace=redis_namespace, fallback=0.0, ceiling=0.0
    )
    first = limiter.acquire_grant(timeout=5.0)
    arrivals.observe(first.dispatched_at - 1, stamp(first.dispatched_at - 1 - 5.0))  # fastest
    time.sleep(0.2)  # the answer tells: it arrived 0.15 s after its dispatch
    arrivals.record(limiter, first, stamp(first.dispatched_at - 5.0 + 0.15))
    entry = redis_client.zscore(limiter.log_key, first.token)
    assert entry is not None
    assert entry / MICROS_PER_SECOND == pytest.approx(first.dispatched_at + 0.15, abs=1e-5)
    second = limiter.acquire_grant(timeout=5.0)
    assert second.granted_at - first.granted_at >= budget.window_seconds + 0.15 - 1e-5
    # An arrival in the future is capped at Redis' now; a vanished entry reports 0.
    assert limiter.record_arrival(second, second.dispatched_at + 3600) <= time.time() + 1
    redis_client.delete(limiter.log_key)
    assert limiter.record_arrival(second, second.dispatched_at + 0.1) == 0.0


def test_garbage_members_are_ignored(redis_client: redis.Redis, redis_namespace: str) -> None:
    reader = guard(redis_client, redis_namespace)
    redis_client.zadd(reader.key, {"p:1:soon:later:many": T0})
    assert reader.current() == 0.3


def test_without_redis_the_configured_guard_stays_and_nothing_raises() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    offline = guard(dead, "nowhere")
    limiter = RateLimiter(dead, Budget("create", 450), namespace="nowhere")
    grant = Grant(granted_at=T0, waited=0.0, dispatched_at=T0, token="t")
    offline.record(limiter, grant, stamp(T0 + 0.01))  # publish and move fail quietly
    assert offline.current() == 0.3
    dead.close()


def test_the_limiter_holds_the_limit_over_window_plus_the_guard_in_force(
    redis_client: redis.Redis, redis_namespace: str
) -> None:
    budget = Budget("create", 600, window_seconds=1.0, burst=1)  # 10 per second, no guard
    limiter = RateLimiter(redis_client, budget, namespace=redis_namespace, guard=lambda: 0.08)
    grants = [limiter.acquire_grant(timeout=10.0) for _ in range(2 * budget.limit + 1)]
    slots = [g.granted_at for g in grants]
    assert max_in_any_window(slots, 1.08 - 1e-6) <= budget.limit
    assert slots[budget.limit] - slots[0] >= 1.08 - 1e-6  # the guard in force, not the budget's
    assert all(g.dispatched_at >= g.granted_at for g in grants)
