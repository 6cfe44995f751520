"""Liveness and readiness from each process's own work loop, not from the thread that answers.

``/metrics`` is served by a thread (scheduler) or by a forked process (a worker group): it keeps
answering while the loop that does the work is stuck. The probes here read what the loop itself
recorded:

* scheduler: :data:`SCHEDULER_LOOP`, beaten by each pass of ``scheduler/loop.py`` (the leader's
  cycle and the standby's retry alike); a dependency error is a :meth:`LoopHeartbeat.fault`.
* worker group: each dramatiq worker process writes a :class:`WorkerBeat` file beside its
  multiprocess metrics (``health-<pid>.json``) from a thread that beats only while every
  consumer and worker thread of that process is alive (``workers/heartbeat.py``, which also
  writes the process's console presence; ``workers/health.py``); the group's
  exposition process reads them all (:func:`worker_verdicts`).
* api: its event loop (``api/liveness.py``).

Thresholds come from settings (``IMAGEOPT_*_LIVENESS_SECONDS``, ``IMAGEOPT_WORKER_STALL_SECONDS``).
A :class:`Verdict` renders as the probe's JSON body: 200 when ``ok``, else 503.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HEALTH_FILE_GLOB = "health-*.json"
"""Worker beat files in the group's multiprocess directory (the metrics collector reads only
``*.db`` there, so they do not disturb it)."""


@dataclass(frozen=True)
class Verdict:
    """One probe's answer.

    Attributes:
        ok: True for HTTP 200, False for 503.
        detail: JSON-safe facts behind it (ages in seconds, counts); no address, no secret.
    """

    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def body(self) -> bytes:
        """The JSON body: ``{"status": "ok"|"fail", ...detail}``."""
        return json.dumps({"status": "ok" if self.ok else "fail", **self.detail}).encode()


# --- an in-process loop (the scheduler) ----------------------------------------------------


class LoopHeartbeat:
    """The last time a loop went round, and the last dependency error it met (thread-safe).

    Times are ``time.monotonic()`` seconds; ``clock`` is injectable for unit tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._beat: float | None = None
        self._fault: tuple[float, str] | None = None

    def beat(self) -> None:
        """The loop went round (call once per pass, leader or standby)."""
        with self._lock:
            self._beat = self._clock()

    def fault(self, reason: str) -> None:
        """The loop met a dependency error (``reason`` is an exception class name)."""
        with self._lock:
            self._fault = (self._clock(), reason)

    def liveness(self, threshold: float) -> Verdict:
        """Live while the last pass is at most ``threshold`` s old (or, before the first pass,
        while the process is younger than that)."""
        with self._lock:
            now, beat = self._clock(), self._beat
        age = now - (beat if beat is not None else self._started)
        detail = {"loop_age_seconds": round(age, 3), "threshold_seconds": threshold}
        return Verdict(age <= threshold, detail)

    def readiness(self, threshold: float) -> Verdict:
        """Ready when live, past its first pass, and without a dependency error in the last
        ``threshold`` s."""
        live = self.liveness(threshold)
        with self._lock:
            now, beat, fault = self._clock(), self._beat, self._fault
        detail = dict(live.detail)
        recent_fault = fault is not None and now - fault[0] <= threshold
        if fault is not None and recent_fault:
            detail["fault"] = fault[1]
        if beat is None:
            detail["starting"] = True
        return Verdict(live.ok and beat is not None and not recent_fault, detail)


SCHEDULER_LOOP = LoopHeartbeat()
"""The scheduler process's loop (``scheduler/loop.py`` beats it)."""


# --- worker processes (beat files read by the group's exposition process) -----------------


@dataclass(frozen=True)
class WorkerBeat:
    """What one dramatiq worker process last wrote.

    Attributes:
        pid: the worker process.
        beat_at: wall-clock seconds (``time.time()``) of the write; written only while every
            consumer and worker thread of the process is alive.
        last_message_at: wall-clock seconds of the last message it handled (processed or
            skipped), or of its boot before the first.
        backlog: ready messages in its queues' Redis lists at ``beat_at``; None when Redis could
            not be read.
    """

    pid: int
    beat_at: float
    last_message_at: float
    backlog: int | None


def write_worker_beat(directory: Path, beat: WorkerBeat) -> None:
    """Write ``beat`` to ``directory/health-<pid>.json`` atomically (write, then rename)."""
    path = directory / f"health-{beat.pid}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(beat)), encoding="utf-8")
    os.replace(tmp, path)


def remove_worker_beat(directory: Path, pid: int) -> None:
    """Forget a process that stops on purpose (its absence is then no failure of the group)."""
    with contextlib.suppress(FileNotFoundError):
        (directory / f"health-{pid}.json").unlink()


def read_worker_beats(directory: Path) -> list[WorkerBeat]:
    """Every beat file in ``directory``; unreadable or half-written ones are skipped."""
    beats = []
    for path in sorted(directory.glob(HEALTH_FILE_GLOB)):
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            data = json.loads(path.read_text(encoding="utf-8"))
            beats.append(
                WorkerBeat(
                    pid=int(data["pid"]),
                    beat_at=float(data["beat_at"]),
                    last_message_at=float(data["last_message_at"]),
                    backlog=None if data["backlog"] is None else int(data["backlog"]),
                )
            )
    return beats


@dataclass(frozen=True)
class WorkerThresholds:
    """Seconds. ``live``: the oldest beat allowed (``IMAGEOPT_WORKER_LIVENESS_SECONDS``);
    ``stall``: the longest a process may go without handling a message while its queues hold
    ready ones (``IMAGEOPT_WORKER_STALL_SECONDS``; above the actors' 180 s time limit)."""

    live: float
    stall: float


def _worker_problems(
    beats: Iterable[WorkerBeat], now: float, limits: WorkerThresholds
) -> Iterator[str]:
    for beat in beats:
        age = now - beat.beat_at
        if age > limits.live:
            yield f"worker {beat.pid}: no heartbeat for {age:.1f} s"
        elif beat.backlog and now - beat.last_message_at > limits.stall:
            idle = now - beat.last_message_at
            yield f"worker {beat.pid}: {beat.backlog} ready, none handled for {idle:.1f} s"


def worker_verdicts(
    beats: list[WorkerBeat], now: float, limits: WorkerThresholds
) -> tuple[Verdict, Verdict]:
    """``(liveness, readiness)`` of a worker group from its processes' beats.

    Live when there is at least one beat and no process is silent for longer than
    ``limits.live`` or stalled (ready messages, none handled for ``limits.stall``). Ready when
    live and every process could read its queues in Redis at its last beat.
    """
    problems = list(_worker_problems(beats, now, limits))
    detail: dict[str, Any] = {"processes": len(beats), "threshold_seconds": limits.live}
    if beats:
        detail["oldest_beat_seconds"] = round(max(now - b.beat_at for b in beats), 3)
        detail["backlog"] = sum(b.backlog or 0 for b in beats)
    if problems:
        detail["problems"] = problems
    if not beats:
        detail["starting"] = True
    live = Verdict(bool(beats) and not problems, detail)
    unreadable = [b.pid for b in beats if b.backlog is None]
    ready_detail = dict(detail, **({"redis_unreadable": unreadable} if unreadable else {}))
    return live, Verdict(live.ok and not unreadable, ready_detail)
