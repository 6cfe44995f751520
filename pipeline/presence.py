"""Which processes are alive: each writes a small Redis key with a time to live, every few
seconds; the operator console lists the keys it finds (docs/OPERATIONS.md, "Overview").

A key is ``{namespace}:presence:{kind}:{host}:{pid}`` holding JSON (``kind``, ``host``,
``pid``, ``started_at``, ``beat_at`` in unix seconds, plus what the process adds: a worker's
queues, the scheduler's leadership and cycle). It expires after :data:`PRESENCE_TTL_SECONDS`,
so a process that died drops off the list by itself, with nothing to clean up. Presence is
a display aid, never a decision input: losing Redis loses only the list.

A worker process writes its key from the heartbeat that also feeds its liveness probe
(:mod:`workers.heartbeat`), so the console lists a worker exactly while its probe would call
it alive; the scheduler writes its key from a :class:`PresenceThread`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis
import structlog

log = structlog.get_logger(__name__)

PRESENCE_INTERVAL_SECONDS = 5.0
"""How often a process rewrites its key, seconds."""
PRESENCE_TTL_SECONDS = 20.0
"""How long a key outlives its last write, seconds (several missed beats before it drops)."""
MAX_LISTED = 500
"""The most presence keys :func:`seen` reads (bounds one console refresh)."""


def presence_key(namespace: str, kind: str, host: str, pid: int) -> str:
    """The Redis key of one process's presence."""
    return f"{namespace}:presence:{kind}:{host}:{pid}"


def beat(
    client: redis.Redis, namespace: str, kind: str, info: Mapping[str, Any], started_at: float
) -> None:
    """Write this process's presence once (``SET ... PX``).

    Raises:
        redis.RedisError: Redis did not answer (callers that beat in a loop log and go on).
    """
    host, pid = socket.gethostname(), os.getpid()
    doc = {"kind": kind, "host": host, "pid": pid, "started_at": started_at,
           "beat_at": time.time(), **info}  # fmt: skip
    client.set(
        presence_key(namespace, kind, host, pid),
        json.dumps(doc, default=str),
        px=int(PRESENCE_TTL_SECONDS * 1000),
    )


def remove(client: redis.Redis, namespace: str, kind: str) -> None:
    """Delete this process's key (a clean stop leaves the list at once); Redis errors are
    ignored: the key expires anyway."""
    key = presence_key(namespace, kind, socket.gethostname(), os.getpid())
    with contextlib.suppress(redis.RedisError):
        client.delete(key)


def seen(client: redis.Redis, namespace: str) -> list[dict[str, Any]]:
    """Every live presence document, by kind, host and pid (at most :data:`MAX_LISTED`)."""
    keys: list[Any] = []
    for key in client.scan_iter(match=f"{namespace}:presence:*", count=200):
        keys.append(key)
        if len(keys) >= MAX_LISTED:
            break
    docs = []
    values: list[Any] = client.mget(keys) if keys else []  # type: ignore[assignment]
    for raw in values:
        if raw is None:  # expired between SCAN and MGET
            continue
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if isinstance(doc, dict):
            docs.append(doc)
    return sorted(docs, key=lambda d: (str(d.get("kind")), str(d.get("host")), d.get("pid", 0)))


class PresenceThread:
    """Beats every :data:`PRESENCE_INTERVAL_SECONDS` in a daemon thread until :meth:`close`.

    Args:
        client: Redis.
        namespace: ``IMAGEOPT_REDIS_NAMESPACE``.
        kind: ``worker``, ``scheduler``, ...
        info: called before each beat for the process's own fields.
        interval: seconds between beats.
    """

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        kind: str,
        info: Callable[[], Mapping[str, Any]] = dict,
        interval: float = PRESENCE_INTERVAL_SECONDS,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._kind = kind
        self._info = info
        self._interval = interval
        self._started_at = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"presence-{kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                beat(self._client, self._namespace, self._kind, self._info(), self._started_at)
            except redis.RedisError as exc:
                log.warning("presence_beat_failed", error=type(exc).__name__)
            self._stop.wait(self._interval)

    def close(self) -> None:
        """Stop beating and remove the key (a clean stop leaves the list at once)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval + 1)
        remove(self._client, self._namespace, self._kind)
