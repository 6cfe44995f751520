"""The global rate limiter: named budgets per provider account, shared by all processes via Redis.

Use one :class:`RateLimiter` per budget::

    limiter = RateLimiter(client, Budget("create", settings.create_rpm,
                                         settings.rate_window_seconds),
                          namespace=settings.redis_namespace)
    limiter.acquire(timeout=settings.rate_limit_acquire_timeout_seconds)
    ...
    limiter.pause(parse_retry_after(header, settings.default_retry_after_seconds),
                  reason="provider_429")

See ``docs/RATE_LIMITER.md`` for the algorithm and its guarantees.
"""

from __future__ import annotations

from pipeline.ratelimit.budget import Budget
from pipeline.ratelimit.limiter import Grant, LimiterStats, RateLimiter
from pipeline.ratelimit.retry_after import parse_retry_after

__all__ = ["Budget", "Grant", "LimiterStats", "RateLimiter", "parse_retry_after"]
