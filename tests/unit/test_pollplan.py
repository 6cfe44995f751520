"""``pipeline.pollplan``: the first poll at the median runtime (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.pollplan import RuntimeWindow, first_poll_delay, runtime_seconds, webhook_waits
from pipeline.provider import Prediction


def test_no_median_below_the_minimum_number_of_runtimes() -> None:
    window = RuntimeWindow(size=10, min_samples=3)
    window.observe("m", 2.0)
    window.observe("m", 4.0)
    assert window.median("m") is None
    window.observe("m", 9.0)
    assert window.median("m") == 4.0
    assert window.median("other") is None


def test_the_window_keeps_only_the_latest_runtimes() -> None:
    window = RuntimeWindow(size=3, min_samples=1)
    for seconds in (100.0, 100.0, 100.0, 1.0, 2.0, 3.0):
        window.observe("m", seconds)
    assert window.median("m") == 2.0


def test_models_are_kept_apart() -> None:
    window = RuntimeWindow(size=5, min_samples=1)
    window.observe("fast", 1.0)
    window.observe("slow", 30.0)
    assert (window.median("fast"), window.median("slow")) == (1.0, 30.0)


@pytest.mark.parametrize(
    ("median", "expected"),
    [(None, 1.0), (0.2, 1.0), (4.5, 4.5), (90.0, 30.0)],
)
def test_first_delay_is_the_median_within_initial_and_maximum(
    median: float | None, expected: float
) -> None:
    assert first_poll_delay(median, initial=1.0, maximum=30.0) == expected


def test_runtime_from_the_providers_stamps() -> None:
    start = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    assert runtime_seconds(start, start + timedelta(seconds=4.25)) == 4.25
    assert runtime_seconds(start, None) is None
    assert runtime_seconds(None, start) is None
    assert runtime_seconds(start, start - timedelta(seconds=1)) is None  # clock went back


def test_prediction_runtime_parses_replicate_timestamps() -> None:
    done = Prediction.from_json(
        {
            "id": "p1",
            "status": "succeeded",
            "created_at": "2026-11-22T03:00:00.000000Z",
            "completed_at": "2026-11-22T03:00:05.500000Z",
        }
    )
    running = Prediction.from_json({"id": "p2", "status": "processing", "created_at": "x"})
    assert done.runtime_seconds == 5.5
    assert running.runtime_seconds is None


def test_a_webhook_is_overdue_at_the_models_first_poll_delay_plus_the_grace() -> None:
    waits = webhook_waits(
        {"fast": 0.2, "usual": 4.5, "slow": 90.0}, initial=1.0, maximum=30.0, grace=30.0
    )
    assert waits.by_model == {"fast": 31.0, "usual": 34.5, "slow": 60.0}
    assert waits.default == 31.0  # no estimate: the fixed first delay
    assert waits.of("usual") == 34.5
    assert waits.of("unknown/model") == 31.0
    assert waits.of(None) == 31.0


def test_the_shortest_webhook_wait_bounds_the_scan() -> None:
    assert webhook_waits({}, initial=2.0, maximum=30.0, grace=5.0).shortest == 7.0
    waits = webhook_waits({"slow": 20.0}, initial=2.0, maximum=30.0, grace=5.0)
    assert waits.shortest == 7.0  # the default (models without an estimate) is shorter
