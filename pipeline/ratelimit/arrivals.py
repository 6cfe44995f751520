"""The arrival correction of the create budget: each creation worker moves its requests' log
entries to their estimated arrival at the provider, and derives the guard that is left from
what all processes saw (through Redis). Logic in :mod:`.jitter`; docs/RATE_LIMITER.md.

Each process folds its offsets into one summary and writes it every :data:`PUBLISH_SECONDS` as a
member of the budget's sorted set, scored by the newest dispatch stamp (Redis' clock); members
older than :data:`HORIZON_SECONDS` are trimmed by the writers and the key expires with the
horizon. Readers refresh the smallest offset and the guard every :data:`REFRESH_SECONDS`. When
Redis fails, the last values (or the configured guard) stay, and nothing raises: a request
whose entry is not corrected is simply counted from its dispatch.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime
from typing import cast

import redis
import structlog

from pipeline.errors import RateLimiterUnavailable
from pipeline.ratelimit import metrics
from pipeline.ratelimit.budget import Budget
from pipeline.ratelimit.jitter import (
    JitterSummary,
    estimated_arrival,
    merge_all,
    residual_guard,
)
from pipeline.ratelimit.limiter import Grant, RateLimiter

log = structlog.get_logger(__name__)

HORIZON_SECONDS = 600.0
"""Offsets older than this are forgotten (seconds): ten windows of 60 s, enough creates for a
settled smallest offset, short enough that clock drift stays small (docs/RATE_LIMITER.md)."""
PUBLISH_SECONDS = 5.0
"""How often one process writes its summary at most, seconds."""
REFRESH_SECONDS = 5.0
"""How long a process keeps the smallest offset and the guard before reading Redis again."""


class ArrivalGuard:
    """One per process and budget: :meth:`record` after each accepted create, :meth:`current`
    as the limiter's guard.

    Args:
        client: Redis client.
        budget: the budget (its window decides when the correction is settled).
        namespace: key prefix; the sorted set is
            ``<namespace>:ratelimit:{<account>:<budget>}:jitter`` (the limiter's hash tag).
        account: the provider account.
        fallback: the configured guard, seconds, used until the correction is settled.
        ceiling: the largest guard, seconds.
    """

    def __init__(
        self,
        client: redis.Redis,
        budget: Budget,
        *,
        namespace: str,
        account: str = "default",
        fallback: float,
        ceiling: float,
    ) -> None:
        self._client = client
        self._budget = budget
        self.key = f"{namespace}:ratelimit:{{{account}:{budget.name}}}:jitter"
        self._fallback = fallback
        self._ceiling = ceiling
        self._process = uuid.uuid4().hex[:12]
        self._sequence = 0
        self._pending: JitterSummary | None = None  # not yet published
        self._known: JitterSummary | None = None  # all processes, at the last read
        self._newest = 0.0
        self._published = float("-inf")
        self._guard = min(fallback, ceiling)
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def record(self, limiter: RateLimiter, grant: Grant, created: datetime | None) -> None:
        """Count an accepted create from its estimated arrival (one Redis round trip).

        Args:
            limiter: the budget's limiter the grant came from.
            grant: the grant the request was sent under.
            created: the provider's ``created_at``; ``None`` leaves the entry at its dispatch.
        """
        arrived = self.observe(grant.dispatched_at, created)
        if arrived is None:
            return
        try:
            limiter.record_arrival(grant, arrived)
        except RateLimiterUnavailable as exc:
            log.debug("arrival_not_recorded", error=str(exc))

    def observe(self, dispatched_at: float, created: datetime | None) -> float | None:
        """Add one create's offset; returns its estimated arrival on Redis' clock (unix
        seconds), or ``None`` without ``created_at``."""
        if created is None:
            return None
        offset = created.timestamp() - dispatched_at
        sample = JitterSummary.of(offset)
        now = time.monotonic()
        with self._lock:
            self._pending = sample.merge(self._pending)
            self._newest = max(self._newest, dispatched_at)
            low = self._pending.merge(self._known).low
            arrived = estimated_arrival(dispatched_at, offset, low)
            if now - self._published < PUBLISH_SECONDS:
                return arrived
            pending, newest = self._pending, self._newest
            self._known = pending.merge(self._known)
            self._pending, self._published = None, now
            self._sequence += 1
            member = f"{self._process}:{self._sequence}:{pending.encode()}"
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.zadd(self.key, {member: newest})
                pipe.zremrangebyscore(self.key, "-inf", f"({newest - HORIZON_SECONDS}")
                pipe.expire(self.key, int(HORIZON_SECONDS))
                pipe.execute()
        except redis.RedisError as exc:
            log.debug("arrival_offsets_not_published", error=type(exc).__name__)
        return arrived

    def current(self) -> float:
        """The guard to use now, seconds (re-read every :data:`REFRESH_SECONDS`)."""
        now = time.monotonic()
        with self._lock:
            if now - self._read_at < REFRESH_SECONDS:
                return self._guard
            self._read_at = now
        try:
            rows = cast(
                list[tuple[bytes | str, float]],
                self._client.zrange(self.key, 0, -1, withscores=True),
            )
        except redis.RedisError as exc:
            log.debug("arrival_offsets_unavailable", error=type(exc).__name__)
            return self._guard
        known = merge_all(s for s in (_summary(m) for m, _ in rows) if s is not None)
        span = rows[-1][1] - rows[0][1] if rows else 0.0
        with self._lock:
            self._known = known
            merged = known.merge(self._pending) if known is not None else self._pending
            self._guard = residual_guard(
                merged,
                span,
                window_seconds=self._budget.window_seconds,
                fallback=self._fallback,
                ceiling=self._ceiling,
            )
            guard = self._guard
        metrics.GUARD_SECONDS.labels(budget=self._budget.name).set(guard)
        if merged is not None:
            metrics.ARRIVAL_SPREAD_SECONDS.labels(budget=self._budget.name).set(merged.spread)
        return guard

    @property
    def offsets(self) -> JitterSummary | None:
        """The offsets of all processes at the last :meth:`current`, with this process' own."""
        with self._lock:
            return self._known.merge(self._pending) if self._known is not None else self._pending


def _summary(member: object) -> JitterSummary | None:
    """The summary inside a ``<process>:<sequence>:<low>:<high>:<count>`` member."""
    text = member.decode() if isinstance(member, bytes) else str(member)
    return JitterSummary.decode(text.split(":", 2)[-1])
