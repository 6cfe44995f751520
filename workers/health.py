"""The worker heartbeat's output for the group's liveness probe: a beat file per process.

:class:`BeatFile` writes :class:`pipeline.health.WorkerBeat` into the group's multiprocess
directory at each beat of :class:`workers.heartbeat.WorkerHeartbeat` (so only while every
consumer and worker thread of the process is alive). The beat carries the time of the last
message handled and the number of ready messages in the process's queues, so the group's
``/livez`` (:func:`pipeline.metrics_server.serve_worker_metrics`) also fails on a process that
stopped taking work from a non-empty queue. A process that is frozen writes nothing, and its
beat ages past ``IMAGEOPT_WORKER_LIVENESS_SECONDS``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dramatiq

from pipeline import health
from workers.heartbeat import Pulse

DELAY_QUEUE_SUFFIX = ".DQ"
"""dramatiq's delay queues: their messages are not due yet, so they are not backlog."""


class BeatFile:
    """Writes this process's beat file (a :class:`workers.heartbeat.HeartbeatOutput`).

    Args:
        directory: the group's ``PROMETHEUS_MULTIPROC_DIR``.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._broker: dramatiq.Broker | None = None
        self._queues: list[str] = []

    def started(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._broker = broker
        self._queues = list(worker.consumers)

    def beat(self, pulse: Pulse) -> None:
        """Write the beat file.

        Raises:
            OSError: the directory is not writable.
        """
        beat = health.WorkerBeat(
            pid=os.getpid(),
            beat_at=pulse.beat_at,
            last_message_at=pulse.last_message_at,
            backlog=_ready_messages(self._broker, self._queues),
        )
        health.write_worker_beat(self._directory, beat)

    def stopped(self) -> None:
        health.remove_worker_beat(self._directory, os.getpid())


def _ready_messages(broker: dramatiq.Broker | None, queues: list[str]) -> int | None:
    """Ready messages in ``queues``' Redis lists (dramatiq's layout: ``namespace:queue``)."""
    client = getattr(broker, "client", None)
    namespace = getattr(broker, "namespace", "dramatiq")
    if client is None:
        return 0
    try:
        return sum(
            int(client.llen(f"{namespace}:{queue}"))
            for queue in queues
            if not queue.endswith(DELAY_QUEUE_SUFFIX)
        )
    except Exception:  # noqa: BLE001 - Redis down: "cannot tell", which readiness reports
        return None
