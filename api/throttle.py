"""Per-caller request limits of the API (seed 002: 30/min for the API, 10/min for job creation;
reads have a larger budget of their own, :func:`is_read`).

A sliding log per caller and limit in Redis (``throttle.lua``), so every api replica shares
the count and no rolling window ever admits more than the limit. The provider's global budget
is a different thing (:mod:`pipeline.ratelimit`): this one protects the api from its callers.

Keys: ``<namespace>:api-throttle:<limit name>:<caller>`` (sorted set, expires after a window).
A limit may have its own window (new guest sessions per address count over an hour).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from importlib import resources

import redis

from pipeline.errors import RateLimiterUnavailable

MICROS_PER_SECOND = 1_000_000
READ_METHODS = frozenset({"GET", "HEAD"})
"""The safe methods (RFC 9110 §9.2.1) the routes answer: they change nothing, so they count
against the read budget (``IMAGEOPT_API_READ_RATE_PER_MINUTE``), not the 30/min."""


def is_read(method: str) -> bool:
    """Whether a request with ``method`` is a read (:data:`READ_METHODS`)."""
    return method.upper() in READ_METHODS


@dataclass(frozen=True)
class Decision:
    """One admission decision.

    Attributes:
        admitted: the request may go on.
        limit: requests allowed per window.
        remaining: requests left in the window after this one.
        retry_after: seconds until a request would be admitted (0 when admitted).
    """

    admitted: bool
    limit: int
    remaining: int
    retry_after: float

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` in whole seconds, rounded up (RFC 9110 §10.2.3), at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


class Throttle:
    """Named sliding-window limits shared by every api process through Redis.

    Args:
        client: a ``redis.Redis`` client.
        namespace: key prefix of the deployment (``Settings.redis_namespace``).
        window_seconds: the rolling window (60 s for per-minute limits).
    """

    def __init__(self, client: redis.Redis, namespace: str, window_seconds: float = 60.0) -> None:
        self._client = client
        self._namespace = namespace
        self._window_us = int(window_seconds * MICROS_PER_SECOND)
        text = resources.files("api").joinpath("throttle.lua").read_text(encoding="utf-8")
        self._script = client.register_script(text)

    def hit(
        self, name: str, caller: str, limit: int, window_seconds: float | None = None
    ) -> Decision:
        """Count one request of ``caller`` against limit ``name``.

        Args:
            name: the limit (``api``, ``read``, ``create``, ``guest-session``, ...).
            caller: a stable, bounded-length caller key (never a raw secret).
            limit: requests per window; ``0`` or less disables the limit.
            window_seconds: this limit's rolling window, seconds; None = the throttle's own.

        Returns:
            The decision (a refused request is not counted).

        Raises:
            RateLimiterUnavailable: Redis could not be reached.
        """
        if limit <= 0:
            return Decision(True, 0, 0, 0.0)
        key = f"{self._namespace}:api-throttle:{name}:{caller}"
        try:
            window_us = (
                self._window_us
                if window_seconds is None
                else int(window_seconds * MICROS_PER_SECOND)
            )
            reply = self._script(keys=[key], args=[limit, window_us, uuid.uuid4().hex])
        except redis.RedisError as exc:
            raise RateLimiterUnavailable(f"api throttle unavailable: {type(exc).__name__}") from exc
        admitted, remaining, retry_us = (int(x) for x in reply)
        return Decision(bool(admitted), limit, remaining, retry_us / MICROS_PER_SECOND)
