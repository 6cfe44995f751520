"""Prometheus metrics of the rate limiter, incremented by :class:`~pipeline.ratelimit.RateLimiter`.

Labels have bounded cardinality: ``budget`` is ``create`` or ``read``; ``reason`` comes from
the code that calls ``pause`` (``provider_429``, ``manual``), never from a provider's message.
Gauges for the budget and its usage are exported elsewhere from ``RateLimiter.stats()``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

GRANTS = Counter(
    "imageopt_rate_limit_grants_total",
    "Requests let through by the global rate limiter.",
    ["budget"],
)

WAIT_SECONDS = Histogram(
    "imageopt_rate_limit_wait_seconds",
    "Seconds a caller waited for its rate-limit grant (0 when granted at once).",
    ["budget"],
    buckets=(0.0, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

TIMEOUTS = Counter(
    "imageopt_rate_limit_timeouts_total",
    "Acquire calls that gave up because no slot was free before their deadline.",
    ["budget"],
)

PAUSES = Counter(
    "imageopt_rate_limit_pauses_total",
    "Global pauses of a budget (e.g. after an HTTP 429 from the provider).",
    ["budget", "reason"],
)

GUARD_SECONDS = Gauge(
    "imageopt_rate_limit_guard_seconds",
    "Margin over the window in force for the hard limit, seconds (small once the arrival "
    "correction is settled).",
    ["budget"],
    multiprocess_mode="livemax",  # every creation process derives the same guard: one series
)

ARRIVAL_SPREAD_SECONDS = Gauge(
    "imageopt_rate_limit_arrival_spread_seconds",
    "How much later the slowest recent request reached the provider than the fastest (created_at "
    "minus dispatch), seconds: what a fixed guard would have to cover.",
    ["budget"],
    multiprocess_mode="livemax",
)
