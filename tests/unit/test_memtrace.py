"""The memory-growth debugging aid (pipeline.memtrace): a growing source is named in its dump."""

from __future__ import annotations

import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from pipeline import memtrace


class Holder:
    """A type of this test's own, so its count in the dump is ours alone."""


def test_dump_names_the_growing_allocation_and_type(tmp_path: Path) -> None:
    path = tmp_path / "dump.txt"
    trace = memtrace.MemTrace(path, interval=60)
    tracemalloc.start(2)  # few frames: comparing pytest's many traces stays quick
    try:
        first = tracemalloc.take_snapshot()
        types0 = memtrace.type_counts()
        kept = [Holder() for _ in range(5000)]  # ~0.3 MiB of instances allocated on this line
        trace._dump(first, types0, elapsed=60.0)
    finally:
        tracemalloc.stop()
    text = path.read_text()
    assert text.startswith("=== +60 s traced")
    top = text.splitlines()[1]  # the largest growth comes first
    assert "unit/test_memtrace.py:" in top
    assert "Holder +5000" in text.splitlines()[-1]
    assert len(kept) == 5000


def test_the_switch_starts_a_thread_that_dumps_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGEOPT_MEMTRACE_DIR", str(tmp_path / "dumps"))
    monkeypatch.setenv("IMAGEOPT_MEMTRACE_SECONDS", "0.05")
    thread = memtrace.start_from_env("scheduler")
    assert thread is not None
    try:
        deadline = time.monotonic() + 30
        while not list((tmp_path / "dumps").glob("memtrace-scheduler-*.txt")):
            assert time.monotonic() < deadline, "no dump within 30 s"
            time.sleep(0.05)
    finally:
        thread.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert not tracemalloc.is_tracing()


def test_off_unless_its_variable_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGEOPT_MEMTRACE_DIR", raising=False)
    assert memtrace.start_from_env("scheduler") is None


def test_type_counts_counts_live_objects() -> None:
    kept = [Holder() for _ in range(10)]
    assert memtrace.type_counts()["Holder"] >= 10
    assert isinstance(memtrace.type_counts(), Counter)
    assert kept
