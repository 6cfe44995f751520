"""A debugging aid for memory growth: ``tracemalloc`` and ``gc`` figures written to a file.

Off unless ``IMAGEOPT_MEMTRACE_DIR`` is set (never in the normal path). When on, a daemon
thread starts :mod:`tracemalloc` (25 frames per traceback, so the allocation's caller in our
code is visible) and every ``IMAGEOPT_MEMTRACE_SECONDS`` appends to ``DIR/memtrace-<pid>.txt``:

- the traced total, and the 25 sources that grew most since the first snapshot (by
  traceback, :meth:`tracemalloc.Snapshot.compare_to`), each with the frames of our packages;
- the 25 object types whose live count (``gc.get_objects``) grew most since the first dump.

A steady state shows the same totals dump after dump; a leak shows one source climbing. The
tracing itself costs memory and CPU (roughly doubles allocation time), so figures of RSS
are taken from runs without it (docs/RELIABILITY.md "Scheduler memory").
"""

from __future__ import annotations

import gc
import os
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

FRAMES = 25
TOP = 25
_OURS = ("/pipeline/", "/scheduler/", "/workers/", "/api/", "/cli/")


def type_counts() -> Counter[str]:
    """Live objects tracked by the garbage collector, by type name."""
    return Counter(type(o).__name__ for o in gc.get_objects())


def _where(trace: tracemalloc.StatisticDiff) -> str:
    """The allocating frame, then the innermost two frames of our packages that led to it
    (a traceback lists its frames oldest first)."""
    inner = list(reversed(trace.traceback))
    ours = [f for f in inner[1:] if any(part in f.filename for part in _OURS)][:2]
    return " <- ".join(
        f"{'/'.join(f.filename.rsplit('/', 2)[-2:])}:{f.lineno}" for f in [inner[0], *ours]
    )


class MemTrace(threading.Thread):
    """The dumping thread (a daemon: it dies with the process).

    Args:
        path: the file appended to.
        interval: seconds between dumps.
    """

    def __init__(self, path: Path, interval: float) -> None:
        super().__init__(name="memtrace", daemon=True)
        self._path = path
        self._interval = interval
        self._halt = threading.Event()  # not _stop: threading.Thread has a _stop method

    def run(self) -> None:
        tracemalloc.start(FRAMES)
        first = tracemalloc.take_snapshot()
        types0 = type_counts()
        started = time.monotonic()
        try:
            while not self._halt.wait(self._interval):
                self._dump(first, types0, time.monotonic() - started)
        finally:
            tracemalloc.stop()

    def stop(self) -> None:
        self._halt.set()

    def _dump(self, first: tracemalloc.Snapshot, types0: Counter[str], elapsed: float) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        current, peak = tracemalloc.get_traced_memory()
        lines = [f"=== +{elapsed:.0f} s traced {current / 2**20:.2f} MiB (peak {peak / 2**20:.2f})"]
        for diff in snapshot.compare_to(first, "traceback")[:TOP]:
            lines.append(
                f"{diff.size_diff / 1024:+10.1f} KiB {diff.count_diff:+8d} blocks "
                f"(now {diff.size / 1024:.1f} KiB)  {_where(diff)}"
            )
        types = type_counts()
        grown = sorted(types, key=lambda t: types[t] - types0.get(t, 0), reverse=True)[:TOP]
        lines.append(
            "objects: " + ", ".join(f"{t} {types[t] - types0.get(t, 0):+d}" for t in grown)
        )
        with self._path.open("a") as out:
            out.write("\n".join(lines) + "\n")


def start_from_env(process: str) -> MemTrace | None:
    """Start a :class:`MemTrace` when ``IMAGEOPT_MEMTRACE_DIR`` is set (seconds between dumps:
    ``IMAGEOPT_MEMTRACE_SECONDS``, default 60); ``None`` otherwise. A debugging switch, kept out
    of :class:`pipeline.config.Settings` on purpose: no deployment sets it."""
    folder = os.environ.get("IMAGEOPT_MEMTRACE_DIR")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    interval = float(os.environ.get("IMAGEOPT_MEMTRACE_SECONDS", "60"))
    thread = MemTrace(Path(folder) / f"memtrace-{process}-{os.getpid()}.txt", interval)
    thread.start()
    return thread
