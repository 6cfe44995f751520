"""Dramatiq middleware that makes each worker process show on the operator console's list of
workers seen recently (:mod:`pipeline.presence`: a Redis key with a TTL, rewritten every few
seconds from a thread of its own, from boot to shutdown, busy or idle)."""

from __future__ import annotations

from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware

from pipeline.presence import PresenceThread


class WorkerPresence(Middleware):
    """Starts a :class:`pipeline.presence.PresenceThread` when a worker boots.

    Args:
        client: Redis (the process's own connection pool).
        namespace: ``IMAGEOPT_REDIS_NAMESPACE``.
    """

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self._thread: PresenceThread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        queues = sorted(getattr(worker, "queues", None) or broker.get_declared_queues())
        threads = int(getattr(worker, "worker_threads", 0))
        self._thread = PresenceThread(
            self._client, self._namespace, "worker",
            info=lambda: {"queues": queues, "threads": threads},
        )  # fmt: skip
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self._thread is not None:
            self._thread.close()
            self._thread = None
