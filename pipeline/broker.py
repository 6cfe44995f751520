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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
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
    """``RedisBroker`` whose consumers survive Redis restarts (module docstring)."""

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _ResilientConsumer
