"""dramatiq's Redis broker, with connection losses that never end a consumer thread.

dramatiq 2.2.1's ``RedisBroker`` maps ``redis.ConnectionError`` to ``ConnectionClosed`` (which
the worker treats as "reconnect in a second") on fetch, ack and nack, but not on
``requeue``, and never maps ``redis.TimeoutError`` (Bogdanp/dramatiq#894). When Redis goes
away while a consumer holds delayed messages (every poll message is delayed), the consumer
thread's ``handle_delayed_messages`` raises a raw ``redis.ConnectionError``; the worker's
``except Exception`` branch then calls ``close()``, whose ``requeue`` raises the same error
again, outside any handler: the thread ends. The process lives on, its ``/livez`` answers,
and it never consumes that queue again (found by the soak, docs/RELIABILITY.md: a Redis
restart left "unhandled_exception" in ``Thread-3`` of a polling worker). Here ``requeue`` and
every other consumer call report a lost connection as ``ConnectionClosed``, so ``close()``
swallows it and the thread reconnects as dramatiq intends.

It also gives each queue's consumer its own longest idle pause (``fetch_wait_ms``): dramatiq has
one worker timeout for every consumer of a process, and a consumer that finds its queue empty
looks again after at most that long. A short pause is what a queue on the latency path needs
(a webhook's finish, a new item's creation); every other consumer (delay queues, fallback
polls) then paid the same ten looks a second for nothing: 30 ms of CPU per idle second for a
polling worker at 100 ms against 4 ms at 1,000 ms (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed

CONNECTION_LOSSES = (redis.ConnectionError, redis.TimeoutError)
"""redis-py's errors that mean "the server is (for now) out of reach"."""


class _ResilientConsumer(_RedisConsumer):
    """``_RedisConsumer`` whose Redis calls report a lost connection as ``ConnectionClosed``."""

    def ack(self, message: Any) -> None:
        with _as_connection_closed():
            super().ack(message)  # type: ignore[no-untyped-call]

    def nack(self, message: Any) -> None:
        with _as_connection_closed():
            super().nack(message)  # type: ignore[no-untyped-call]

    def requeue(self, messages: Iterable[Any]) -> None:
        with _as_connection_closed():
            super().requeue(messages)  # type: ignore[no-untyped-call]

    def __next__(self) -> Any:
        with _as_connection_closed():
            return super().__next__()  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def _as_connection_closed() -> Iterator[None]:
    try:
        yield
    except CONNECTION_LOSSES as exc:
        raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]


class ResilientRedisBroker(RedisBroker):
    """``RedisBroker`` whose consumers survive Redis restarts and pause per queue (module
    docstring).

    Args:
        fetch_wait_ms: longest idle pause, milliseconds, of the consumer of each named queue
            (a delay queue by its own name, ``<queue>.DQ``); the others keep the worker's
            timeout. The remaining keyword arguments are ``RedisBroker``'s.
    """

    def __init__(self, *, fetch_wait_ms: Mapping[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.fetch_wait_ms = dict(fetch_wait_ms or {})

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> _RedisConsumer:
        """A consumer of ``queue_name`` whose idle pause is its own (``fetch_wait_ms``) or
        ``timeout`` (dramatiq's worker timeout), milliseconds."""
        return self.consumer_class(
            self, queue_name, prefetch, self.fetch_wait_ms.get(queue_name, timeout)
        )

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _ResilientConsumer
