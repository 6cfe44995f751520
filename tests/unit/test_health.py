"""The probes' decisions (pipeline/health.py, api/liveness.py), on recorded times."""

from __future__ import annotations

from pathlib import Path

from api.liveness import EventLoopLag
from pipeline.health import (
    LoopHeartbeat,
    WorkerBeat,
    WorkerThresholds,
    read_worker_beats,
    remove_worker_beat,
    worker_verdicts,
    write_worker_beat,
)

LIMITS = WorkerThresholds(live=60, stall=300)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_loop_is_live_until_its_last_pass_is_older_than_the_threshold() -> None:
    clock = Clock()
    loop = LoopHeartbeat(clock)
    assert loop.liveness(60).ok  # starting: as old as the process
    assert not loop.readiness(60).ok  # but not ready before its first pass
    loop.beat()
    clock.now += 60
    assert loop.liveness(60).ok
    assert loop.readiness(60).ok
    clock.now += 0.5
    verdict = loop.liveness(60)
    assert not verdict.ok
    assert verdict.detail["loop_age_seconds"] == 60.5


def test_a_dependency_error_makes_a_live_loop_unready_for_the_threshold() -> None:
    clock = Clock()
    loop = LoopHeartbeat(clock)
    loop.beat()
    loop.fault("OperationalError")
    loop.beat()
    assert loop.liveness(60).ok
    ready = loop.readiness(60)
    assert not ready.ok
    assert ready.detail["fault"] == "OperationalError"
    clock.now += 61
    loop.beat()
    assert loop.readiness(60).ok


def _beat(pid: int = 7, *, beat_at: float, last: float, backlog: int | None = 0) -> WorkerBeat:
    return WorkerBeat(pid=pid, beat_at=beat_at, last_message_at=last, backlog=backlog)


def test_a_worker_group_without_beats_is_not_live_yet() -> None:
    live, ready = worker_verdicts([], 1000.0, LIMITS)
    assert not live.ok
    assert not ready.ok
    assert live.detail["starting"]


def test_a_silent_worker_process_fails_the_group() -> None:
    beats = [_beat(1, beat_at=990, last=900), _beat(2, beat_at=939, last=900)]
    live, _ = worker_verdicts(beats, 1000.0, LIMITS)
    assert not live.ok
    assert live.detail["problems"] == ["worker 2: no heartbeat for 61.0 s"]


def test_a_worker_that_handles_nothing_while_its_queue_is_full_is_stalled() -> None:
    idle_but_empty = _beat(beat_at=999, last=600, backlog=0)
    assert worker_verdicts([idle_but_empty], 1000.0, LIMITS)[0].ok
    busy = _beat(beat_at=999, last=701, backlog=40)
    assert worker_verdicts([busy], 1000.0, LIMITS)[0].ok
    stalled = _beat(beat_at=999, last=699, backlog=40)
    live, _ = worker_verdicts([stalled], 1000.0, LIMITS)
    assert not live.ok
    assert "40 ready" in live.detail["problems"][0]


def test_a_worker_that_cannot_read_redis_is_live_but_not_ready() -> None:
    live, ready = worker_verdicts([_beat(beat_at=999, last=999, backlog=None)], 1000.0, LIMITS)
    assert live.ok
    assert not ready.ok
    assert ready.detail["redis_unreadable"] == [7]


def test_beat_files_round_trip_and_a_broken_one_is_skipped(tmp_path: Path) -> None:
    beat = _beat(3, beat_at=5.5, last=4.25, backlog=None)
    write_worker_beat(tmp_path, beat)
    (tmp_path / "health-9.json").write_text("{not json")
    (tmp_path / "counter_1.db").write_bytes(b"metrics, not a beat")
    assert read_worker_beats(tmp_path) == [beat]
    remove_worker_beat(tmp_path, 3)
    remove_worker_beat(tmp_path, 3)  # twice is fine
    assert read_worker_beats(tmp_path) == []


def test_event_loop_lag_fails_liveness_only_while_it_is_recent() -> None:
    lag = EventLoopLag(threshold=5)
    lag.record(100.0, 0.01)
    assert lag.verdict(100.0).ok
    lag.record(101.0, 6.0)
    verdict = lag.verdict(101.0)
    assert not verdict.ok
    assert verdict.detail["loop_lag_seconds"] == 6.0
    lag.record(116.5, 0.01)  # the long wait is more than 3 thresholds ago
    assert lag.verdict(116.5).ok
