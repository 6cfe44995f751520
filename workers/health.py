"""Worker heartbeats: each dramatiq worker process tells its group's probe that it still works.

A thread started at worker boot writes :class:`pipeline.health.WorkerBeat` every
``interval`` seconds into the group's multiprocess directory, but only while every consumer
thread (which fetches messages) and worker thread (which runs actors) of the process is alive.
The beat carries the time of the last message handled and the number of ready messages in the
process's queues, so the group's ``/livez`` (:func:`pipeline.metrics_server.
serve_worker_metrics`) also fails on a process that stopped taking work from a non-empty queue.
A process that is frozen (SIGSTOP, a deadlock of the interpreter) writes nothing, and its beat
ages past ``IMAGEOPT_WORKER_LIVENESS_SECONDS``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import dramatiq
import structlog

from pipeline import health

log = structlog.get_logger(__name__)

DELAY_QUEUE_SUFFIX = ".DQ"
"""dramatiq's delay queues: their messages are not due yet, so they are not backlog."""


class WorkerHeartbeat(dramatiq.Middleware):
    """dramatiq middleware writing this process's beat file.

    Args:
        directory: the group's ``PROMETHEUS_MULTIPROC_DIR``.
        interval: seconds between beats; keep it well under the liveness threshold.
    """

    def __init__(self, directory: Path, interval: float) -> None:
        self._directory = directory
        self._interval = interval
        self._last_message_at = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Start beating once dramatiq's consumer and worker threads run."""
        self._last_message_at = time.time()
        self._thread = threading.Thread(
            target=self._run, args=(broker, worker), name="worker-heartbeat", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """A process that stops on purpose takes its beat file with it."""
        self._stop.set()
        health.remove_worker_beat(self._directory, os.getpid())

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        """A message was handled (whatever its outcome)."""
        self._last_message_at = time.time()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """A skipped message counts as handled: the worker took it from the queue."""
        self._last_message_at = time.time()

    def _run(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        while not self._stop.wait(self._interval):
            threads = [*worker.consumers.values(), *worker.workers]
            if not threads or not all(thread.is_alive() for thread in threads):
                continue  # a dead consumer or worker thread: no beat, the probe will fail
            beat = health.WorkerBeat(
                pid=os.getpid(),
                beat_at=time.time(),
                last_message_at=self._last_message_at,
                backlog=_ready_messages(broker, list(worker.consumers)),
            )
            try:
                health.write_worker_beat(self._directory, beat)
            except OSError as exc:
                log.warning("worker_heartbeat_failed", error=type(exc).__name__)


def _ready_messages(broker: dramatiq.Broker, queues: list[str]) -> int | None:
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
