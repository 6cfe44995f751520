"""Median prediction runtimes per model, shared through Redis: polling workers write them,
creation workers read them to choose the first poll delay (:mod:`pipeline.pollplan`).

A hint only saves polls. When Redis fails or holds nothing, the fixed first delay applies,
and nothing about an item's state depends on it (Postgres holds that).
"""

from __future__ import annotations

import threading
import time

import redis
import structlog

from pipeline.pollplan import RuntimeWindow, first_poll_delay

log = structlog.get_logger(__name__)

PUBLISH_SECONDS = 5.0
"""How often one process writes a model's median at most, seconds."""
CACHE_SECONDS = 5.0
"""How long a reader keeps a model's median before asking Redis again, seconds."""
TTL_SECONDS = 86_400
"""A hint nobody refreshed for a day is dropped (the model may have changed)."""


class RuntimeHints:
    """One per process. ``observe`` in polling workers, ``first_delay`` in creation workers.

    Args:
        client: Redis client.
        namespace: key prefix (``IMAGEOPT_REDIS_NAMESPACE``); the hash is
            ``{namespace}:poll:runtime`` (model -> median seconds).
        initial: the fixed first delay, seconds (``IMAGEOPT_POLL_INITIAL_DELAY_SECONDS``).
        maximum: the longest delay, seconds (``IMAGEOPT_POLL_MAX_DELAY_SECONDS``).
        window: the runtimes seen by this process (default: a new :class:`RuntimeWindow`).
    """

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        *,
        initial: float,
        maximum: float,
        window: RuntimeWindow | None = None,
    ) -> None:
        self._client = client
        self._key = f"{namespace}:poll:runtime"
        self._initial = initial
        self._maximum = maximum
        self._window = window or RuntimeWindow()
        self._published: dict[str, float] = {}
        self._cache: dict[str, tuple[float, float | None]] = {}
        self._lock = threading.Lock()

    def observe(self, model: str, seconds: float) -> None:
        """Record a finished prediction's runtime; publish the model's median every
        :data:`PUBLISH_SECONDS` at most."""
        self._window.observe(model, seconds)
        median = self._window.median(model)
        if median is None:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._published.get(model, float("-inf")) < PUBLISH_SECONDS:
                return
            self._published[model] = now
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(self._key, model, f"{median:.3f}")
                pipe.expire(self._key, TTL_SECONDS)
                pipe.execute()
        except redis.RedisError as exc:
            log.debug("runtime_hint_not_published", model=model, error=type(exc).__name__)

    def first_delay(self, model: str) -> float:
        """Seconds from submission to the first poll of a ``model`` prediction."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(model)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            median = cached[1]
        else:
            median = self._read(model)
            with self._lock:
                self._cache[model] = (now, median)
        return first_poll_delay(median, initial=self._initial, maximum=self._maximum)

    def medians(self) -> dict[str, float]:
        """Every model's published median runtime, seconds (one ``HGETALL``); empty when
        Redis fails or holds none (the scheduler's rescuer then waits the fixed first delay)."""
        try:
            raw = self._client.hgetall(self._key)
        except redis.RedisError as exc:
            log.debug("runtime_hints_unavailable", error=type(exc).__name__)
            return {}
        found: dict[str, float] = {}
        for model, value in raw.items():  # type: ignore[union-attr]
            try:
                found[_text(model)] = float(_text(value))
            except ValueError:
                continue
        return found

    def _read(self, model: str) -> float | None:
        try:
            raw = self._client.hget(self._key, model)
        except redis.RedisError as exc:
            log.debug("runtime_hint_unavailable", model=model, error=type(exc).__name__)
            return None
        if raw is None:
            return None
        try:
            return float(raw)  # type: ignore[arg-type]
        except ValueError:
            return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
