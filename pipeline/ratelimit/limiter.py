"""The global rate limiter: one budget of one provider account, shared through Redis.

Every process (dramatiq workers, the scheduler, a bench script) builds a :class:`RateLimiter`
on the same Redis keys and obtains the same guarantees:

* hard: never more than ``budget.limit`` grants in any rolling window of
  ``budget.window_seconds``, whatever the number of processes and hosts;
* smooth: grants are spaced by ``T = window / limit`` with a burst of ``budget.burst_size``;
* fair: callers are served in the order of their reservations; each sleeps locally until its
  slot instead of polling Redis.

The decisions are made atomically by Lua scripts on Redis' own clock (``reserve.lua``,
``confirm.lua``, ``release.lua``, ``pause.lua``, ``stats.lua``, loaded by name as dramatiq loads
its scripts); :mod:`pipeline.ratelimit.gcra` is the same algorithm in plain Python, and
``docs/RATE_LIMITER.md`` explains it. Redis errors are translated into
:class:`~pipeline.errors.RateLimiterUnavailable`.

Size: one class over five Lua scripts (reserve, confirm, release, pause, stats) that share
its key layout and error translation; split, the scripts' contract would be read in two places.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
import structlog

from pipeline.errors import RateLimiterUnavailable, RateLimitTimeout
from pipeline.ratelimit import metrics
from pipeline.ratelimit.budget import MICROS_PER_SECOND, Budget
from pipeline.ratelimit.gcra import Decision

log = structlog.get_logger(__name__)

IDLE_TTL_SECONDS = 24 * 3600
"""Lifetime of a budget's state after its last use (seconds); then the keys vanish and the
next use is a cold start."""

MAX_WAIT_SECONDS = 1e9
"""Cap on the wait passed to Redis, so that ``acquire(timeout=math.inf)`` stays an integer."""


def load_script(name: str) -> str:
    """The text of the Lua script ``name`` (without ``.lua``) shipped in this package."""
    return resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Grant:
    """A granted request.

    Attributes:
        granted_at: the slot on Redis' clock (unix seconds, microsecond resolution); the
            instant from which the hard guarantee counts this request.
        waited: seconds the caller spent in ``acquire`` (local monotonic clock).
        dispatched_at: the dispatch stamp on Redis' clock (unix seconds): the later of the
            slot and the caller's confirmation after its sleep; the log counts the request
            from here.
        token: the reservation's member in the log (for :meth:`RateLimiter.record_arrival`).
    """

    granted_at: float
    waited: float
    dispatched_at: float
    token: str


@dataclass(frozen=True)
class LimiterStats:
    """A snapshot of one budget, on Redis' clock (the shape behind the seed's stats endpoint).

    Attributes:
        budget: the budget's name.
        budget_rpm: the configured requests per minute (the seed's ``maxRPM``).
        limit: grants allowed per window (``budget_rpm`` scaled to the window).
        window_seconds: the rolling window (seconds).
        granted_in_window: grants in the last window up to now (``requestsInLastMinute``
            for a 60 s window); the virtual entries of a cold start are not counted.
        waiting: reservations whose slot is still in the future (``queueLength``).
        usage_percent: ``granted_in_window / limit * 100`` (``rpmUsagePercent``).
        paused_until: unix seconds until which the budget is paused, or None.
        pause_reason: why it is paused, or None.
        now: Redis' clock when the snapshot was taken (unix seconds).
    """

    budget: str
    budget_rpm: int
    limit: int
    window_seconds: float
    granted_in_window: int
    waiting: int
    usage_percent: float
    paused_until: float | None
    pause_reason: str | None
    now: float


class RateLimiter:
    """One budget of one provider account, enforced across processes through Redis.

    Keys (all with TTLs, so an idle budget leaves nothing behind), with a Redis Cluster hash
    tag (the part in braces) so that one script's keys share a slot:

    * ``<namespace>:ratelimit:{<account>:<budget>}:state`` hash: ``tat``, ``paused_until``,
      ``pause_reason``;
    * ``...:log`` sorted set of reserved slots (microseconds), pruned beyond the window;
    * ``...:cold`` sorted set of the virtual entries of the last cold start.

    Args:
        client: a ``redis.Redis`` client (``Redis.from_url``); bytes or decoded responses.
        budget: the budget to enforce.
        namespace: key prefix shared by the deployment (``Settings.redis_namespace``).
        account: the provider account the budget belongs to.
        idle_ttl_seconds: keep the state this long after the last use (seconds).
        sleep: how to wait for a slot (``time.sleep``; swapped in tests).
        guard: the guard in force, seconds, asked at every reservation (an
            :class:`~pipeline.ratelimit.arrivals.ArrivalGuard`); ``None`` keeps
            ``budget.guard_seconds``. Clamped to ``[0, window / 10]``.
    """

    def __init__(
        self,
        client: redis.Redis,
        budget: Budget,
        *,
        namespace: str = "imageopt",
        account: str = "default",
        idle_ttl_seconds: float = IDLE_TTL_SECONDS,
        sleep: Callable[[float], object] = time.sleep,
        guard: Callable[[], float] | None = None,
    ) -> None:
        self.budget = budget
        self._guard = guard
        self.account = account
        self._client = client
        self._sleep = sleep
        self._idle_ttl_ms = max(
            math.ceil(idle_ttl_seconds * 1000), math.ceil(2 * budget.window_seconds * 1000)
        )
        prefix = f"{namespace}:ratelimit:{{{account}:{budget.name}}}"
        self.state_key = f"{prefix}:state"
        self.log_key = f"{prefix}:log"
        self.cold_key = f"{prefix}:cold"
        self._reserve = client.register_script(load_script("reserve"))
        self._confirm = client.register_script(load_script("confirm"))
        self._release = client.register_script(load_script("release"))
        self._pause = client.register_script(load_script("pause"))
        self._stats = client.register_script(load_script("stats"))
        self._log = log.bind(budget=budget.name, account=account)

    @property
    def keys(self) -> tuple[str, str, str]:
        """Every Redis key of this budget."""
        return (self.state_key, self.log_key, self.cold_key)

    # --- taking grants ------------------------------------------------------------------------

    def acquire(self, timeout: float) -> float:
        """Block until a request may go out.

        Args:
            timeout: the longest the caller accepts to wait (seconds).

        Returns:
            Seconds waited.

        Raises:
            RateLimitTimeout: no slot is free within ``timeout``; nothing was reserved.
            RateLimiterUnavailable: Redis could not be reached.
        """
        return self.acquire_grant(timeout).waited

    def acquire_grant(self, timeout: float) -> Grant:
        """Like :meth:`acquire`, returning the grant: its slot and dispatch stamp on Redis'
        clock and its log token (for :meth:`record_arrival` and the benchmarks).

        The call reserves the next slot and sleeps until it. If the sleep is interrupted (any
        exception, ``KeyboardInterrupt``, dramatiq's time limit), the reservation is given back
        when still in the future. After the sleep it checks that the reservation still stands:
        a pause revokes reservations inside it, and then the call reserves again, within the
        same deadline.

        Args:
            timeout: the longest the caller accepts to wait (seconds).

        Returns:
            The grant.

        Raises:
            RateLimitTimeout: no slot is free within ``timeout``; nothing was reserved.
            RateLimiterUnavailable: Redis could not be reached.
        """
        started = time.monotonic()
        deadline = started + max(0.0, timeout)
        while True:
            remaining = min(max(0.0, deadline - time.monotonic()), MAX_WAIT_SECONDS)
            token = uuid.uuid4().hex
            decision = self._call_reserve(token, math.floor(remaining * MICROS_PER_SECOND))
            if not decision.granted:
                metrics.TIMEOUTS.labels(budget=self.budget.name).inc()
                self._log.info(
                    "rate_limit_timeout",
                    timeout_seconds=timeout,
                    earliest_wait_seconds=decision.wait_us / MICROS_PER_SECOND,
                )
                raise RateLimitTimeout(
                    f"rate budget {self.budget.name!r}: no slot within {timeout:.3f} s "
                    f"(earliest in {decision.wait_us / MICROS_PER_SECOND:.3f} s)"
                )
            stamp = decision.slot
            if decision.wait_us > 0:
                self._sleep_until_slot(token, decision.wait_us / MICROS_PER_SECOND)
                kept, _, stamp = self._call_confirm(token)
                if not kept:
                    self._log.info("rate_limit_reservation_revoked")
                    continue
            waited = time.monotonic() - started
            metrics.GRANTS.labels(budget=self.budget.name).inc()
            metrics.WAIT_SECONDS.labels(budget=self.budget.name).observe(waited)
            return Grant(
                granted_at=decision.slot / MICROS_PER_SECOND,
                waited=waited,
                dispatched_at=stamp / MICROS_PER_SECOND,
                token=token,
            )

    def record_arrival(self, grant: Grant, arrived_at: float) -> float:
        """Count a granted request from its estimated arrival at the provider from now on.

        The arrival correction (docs/RATE_LIMITER.md): the provider counts a request when it
        arrives; once its answer tells when that was, the log entry moves there (never earlier
        than it is, never past Redis' now), so the next window is measured from the arrival
        and the guard only has to cover the estimate's error.

        Args:
            grant: the grant the request was sent under.
            arrived_at: its estimated arrival on Redis' clock (unix seconds).

        Returns:
            The entry's stamp afterwards (unix seconds), or 0.0 when the entry is gone (it left
            the window, or Redis lost it).

        Raises:
            RateLimiterUnavailable: Redis could not be reached.
        """
        kept, _, stamp = self._call_confirm(grant.token, math.floor(arrived_at * MICROS_PER_SECOND))
        return stamp / MICROS_PER_SECOND if kept else 0.0

    def try_acquire(self) -> bool:
        """Take a grant only if one is free right now (never waits, never queues).

        Returns:
            True when granted.

        Raises:
            RateLimiterUnavailable: Redis could not be reached.
        """
        decision = self._call_reserve(uuid.uuid4().hex, 0)
        if decision.granted:
            metrics.GRANTS.labels(budget=self.budget.name).inc()
            metrics.WAIT_SECONDS.labels(budget=self.budget.name).observe(0.0)
        return decision.granted

    # --- adaptive pause -----------------------------------------------------------------------

    def pause(self, seconds: float, reason: str) -> float:
        """Stop every process from taking grants for ``seconds`` from now (Redis' clock).

        Call it on an HTTP 429 with the parsed ``Retry-After``. A longer pause in force is kept.
        Reservations inside the pause are revoked; their holders reserve again after it.

        Args:
            seconds: length of the pause (seconds); 0 or less pauses nothing.
            reason: a bounded label (``provider_429``); it becomes a metric label.

        Returns:
            The end of the pause in force (unix seconds, Redis' clock).

        Raises:
            RateLimiterUnavailable: Redis could not be reached.
        """
        paused_until, revoked, now = self._call_pause(
            max(0, math.ceil(seconds * MICROS_PER_SECOND)), reason
        )
        metrics.PAUSES.labels(budget=self.budget.name, reason=reason).inc()
        self._log.warning(
            "rate_limit_paused",
            reason=reason,
            pause_seconds=seconds,
            paused_for_seconds=max(0, paused_until - now) / MICROS_PER_SECOND,
            revoked_reservations=revoked,
        )
        return paused_until / MICROS_PER_SECOND

    # --- observing and operating --------------------------------------------------------------

    def stats(self) -> LimiterStats:
        """A consistent snapshot of the budget, read on Redis' clock.

        Raises:
            RateLimiterUnavailable: Redis could not be reached.
        """
        reply = self._run(self._stats, list(self.keys), [self.budget.window_us])
        now, granted, waiting, paused_until = (int(x) for x in reply[:4])
        reason = _text(reply[4])
        paused = paused_until > now
        return LimiterStats(
            budget=self.budget.name,
            budget_rpm=self.budget.rpm,
            limit=self.budget.limit,
            window_seconds=self.budget.window_seconds,
            granted_in_window=granted,
            waiting=waiting,
            usage_percent=round(granted / self.budget.limit * 100.0, 2),
            paused_until=paused_until / MICROS_PER_SECOND if paused else None,
            pause_reason=(reason or None) if paused else None,
            now=now / MICROS_PER_SECOND,
        )

    def reset(self) -> None:
        """Delete the budget's keys (tests, ops). The next use is a cold start.

        Raises:
            RateLimiterUnavailable: Redis could not be reached.
        """
        try:
            self._client.delete(*self.keys)
        except redis.RedisError as exc:
            raise RateLimiterUnavailable(f"rate limiter reset failed: {exc}") from exc
        self._log.info("rate_limit_reset")

    # --- internals ----------------------------------------------------------------------------

    def _log_window_us(self) -> int:
        """The span of the sliding log: the window plus the guard in force (microseconds)."""
        if self._guard is None:
            return self.budget.log_window_us
        guard = min(max(0.0, self._guard()), self.budget.window_seconds / 10)
        return self.budget.window_us + round(guard * MICROS_PER_SECOND)

    def _call_reserve(self, token: str, max_wait_us: int) -> Decision:
        """Run ``reserve.lua`` for ``token``, accepting a wait up to ``max_wait_us``."""
        budget = self.budget
        reply = self._run(
            self._reserve,
            list(self.keys),
            [
                budget.limit,
                self._log_window_us(),
                budget.emission_us,
                budget.burst_size,
                max_wait_us,
                token,
                self._idle_ttl_ms,
            ],
        )
        granted, slot, now, cold_start = (int(x) for x in reply)
        if cold_start:
            self._log.warning("rate_limit_cold_start", limit=budget.limit)
        return Decision(granted=bool(granted), slot=slot, now=now, cold_start=bool(cold_start))

    def _sleep_until_slot(self, token: str, seconds: float) -> None:
        """Sleep ``seconds``; if interrupted, release the reservation and re-raise."""
        try:
            self._sleep(seconds)
        except BaseException:
            self._release_quietly(token)
            raise

    def _release_quietly(self, token: str) -> None:
        """Best effort: a reservation that cannot be released stays in the log, unused."""
        try:
            released, _ = self._call_release(token)
        except RateLimiterUnavailable:
            self._log.warning("rate_limit_release_failed")
            return
        self._log.info("rate_limit_reservation_released", released=released)

    def _call_release(self, token: str) -> tuple[bool, int]:
        """Run ``release.lua``; returns (released, Redis now in microseconds)."""
        reply = self._run(
            self._release, [self.state_key, self.log_key], [self.budget.emission_us, token]
        )
        return bool(int(reply[0])), int(reply[1])

    def _call_pause(self, duration_us: int, reason: str) -> tuple[int, int, int]:
        """Run ``pause.lua``; returns (paused_until, revoked, Redis now), in microseconds."""
        reply = self._run(
            self._pause,
            [self.state_key, self.log_key],
            [duration_us, reason, self.budget.tolerance_us, self._idle_ttl_ms],
        )
        paused_until, revoked, now = (int(x) for x in reply)
        return paused_until, revoked, now

    def _call_confirm(self, token: str, at: int = 0) -> tuple[bool, int, int]:
        """Run ``confirm.lua`` (``at``: move to this stamp, 0 = now); returns (kept, Redis now,
        stamp afterwards), in microseconds."""
        reply = self._run(self._confirm, [self.log_key], [self._log_window_us(), token, at])
        kept, now, stamp = (int(x) for x in reply)
        return bool(kept), now, stamp

    def _run(self, script: Any, keys: list[str], args: Sequence[str | int]) -> list[Any]:
        try:
            reply = script(keys=keys, args=list(args))
        except redis.RedisError as exc:
            raise RateLimiterUnavailable(
                f"rate limiter for budget {self.budget.name!r} unavailable: {exc}"
            ) from exc
        return list(reply)


def _text(value: object) -> str:
    """A Redis reply as text, whether the client decodes responses or not."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
