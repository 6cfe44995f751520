"""One heartbeat per worker process: the one place that judges "this process's loop is alive"
and tells everyone who needs to know.

:class:`WorkerHeartbeat` is a dramatiq middleware. From worker boot to shutdown a thread of its
own wakes every ``interval`` seconds and, only while every consumer thread (which fetches
messages) and worker thread (which runs actors) of the process is alive, hands a :class:`Pulse`
to each of its outputs:

* :class:`workers.health.BeatFile`: the beat file the group's ``/livez`` reads
  (:mod:`pipeline.health`);
* :class:`workers.presence.PresenceKey`: the Redis key the operator console lists
  (:mod:`pipeline.presence`).

A process that is frozen (SIGSTOP, a deadlock of the interpreter) or has lost a thread stops
feeding both at once: its beat file ages past ``IMAGEOPT_WORKER_LIVENESS_SECONDS`` and its
console entry expires with its key. A process that stops on purpose removes both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dramatiq
import redis
import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Pulse:
    """One beat of a live worker process.

    Attributes:
        beat_at: wall-clock seconds (``time.time()``) of the beat.
        last_message_at: wall-clock seconds of the last message the process handled (processed
            or skipped), or of its boot before the first.
    """

    beat_at: float
    last_message_at: float


class HeartbeatOutput(Protocol):
    """Somewhere a worker process's heartbeat is shown."""

    def started(self, broker: dramatiq.Broker, worker: Any) -> None:
        """The worker booted (its queues and threads are known)."""

    def beat(self, pulse: Pulse) -> None:
        """Show one beat.

        Raises:
            OSError, redis.RedisError: the output could not be written (logged; the next beat
                tries again).
        """

    def stopped(self) -> None:
        """The process stops on purpose: take the output away."""


class WorkerHeartbeat(dramatiq.Middleware):
    """dramatiq middleware feeding every heartbeat output of this process from one thread.

    Args:
        outputs: where the beats go.
        interval: seconds between beats; keep it well under every output's expiry (the
            liveness threshold, the presence key's TTL).
    """

    def __init__(self, outputs: Sequence[HeartbeatOutput], interval: float) -> None:
        self._outputs = list(outputs)
        self._interval = interval
        self._last_message_at = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Start beating once dramatiq's consumer and worker threads run."""
        self._last_message_at = time.time()
        for output in self._outputs:
            output.started(broker, worker)
        self._thread = threading.Thread(
            target=self._run, args=(worker,), name="worker-heartbeat", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """A process that stops on purpose takes its outputs with it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 1)
        for output in self._outputs:
            output.stopped()

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        """A message was handled (whatever its outcome)."""
        self._last_message_at = time.time()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """A skipped message counts as handled: the worker took it from the queue."""
        self._last_message_at = time.time()

    def _run(self, worker: dramatiq.Worker) -> None:
        while True:
            if is_alive(worker):
                self._beat(Pulse(beat_at=time.time(), last_message_at=self._last_message_at))
            if self._stop.wait(self._interval):
                return

    def _beat(self, pulse: Pulse) -> None:
        for output in self._outputs:
            try:
                output.beat(pulse)
            except (OSError, redis.RedisError) as exc:
                log.warning("worker_heartbeat_failed", output=type(output).__name__,
                            error=type(exc).__name__)  # fmt: skip


def is_alive(worker: Any) -> bool:
    """True while the worker has consumer and worker threads and every one of them runs."""
    threads = [*worker.consumers.values(), *worker.workers]
    return bool(threads) and all(thread.is_alive() for thread in threads)
