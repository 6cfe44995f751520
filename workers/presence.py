"""The worker heartbeat's output for the operator console: this process's presence key
(:mod:`pipeline.presence`: a Redis key with a TTL, listed on ``/ops`` while it lives).

:class:`PresenceKey` rewrites the key at each beat of :class:`workers.heartbeat.WorkerHeartbeat`,
busy or idle, so a worker is listed exactly while its liveness probe would call it alive, and
drops off ``PRESENCE_TTL_SECONDS`` after its last beat.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
import redis

from pipeline import presence
from workers.health import DELAY_QUEUE_SUFFIX
from workers.heartbeat import Pulse

KIND = "worker"


class PresenceKey:
    """Writes this process's presence key (a :class:`workers.heartbeat.HeartbeatOutput`).

    Args:
        client: Redis (the process's own connection pool).
        namespace: ``IMAGEOPT_REDIS_NAMESPACE``.
    """

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self._started_at = time.time()
        self._info: dict[str, Any] = {}

    def started(self, broker: dramatiq.Broker, worker: Any) -> None:
        # The queues it consumes (dramatiq's Worker keeps no list of them; its consumers are
        # keyed by queue, delay queues included).
        queues = sorted(q for q in worker.consumers if not q.endswith(DELAY_QUEUE_SUFFIX))
        self._info = {"queues": queues, "threads": int(getattr(worker, "worker_threads", 0))}
        self._started_at = time.time()

    def beat(self, pulse: Pulse) -> None:
        """Write the key.

        Raises:
            redis.RedisError: Redis did not answer.
        """
        presence.beat(self._client, self._namespace, KIND, self._info, self._started_at)

    def stopped(self) -> None:
        presence.remove(self._client, self._namespace, KIND)
