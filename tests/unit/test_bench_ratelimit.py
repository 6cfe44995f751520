"""The figures of the limiter benchmark (bench/bench_ratelimit.py), on made-up grant times."""

from __future__ import annotations

import math

import pytest

from bench.bench_ratelimit import percentile, replay_429s, summarize


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))


def test_summarize_counts_whole_windows_after_the_warmup() -> None:
    # 8 per 1 s window, evenly spaced (exact binary fractions), for 5 s; warm-up 1 s; the run
    # ends at 5.5 s.
    grants = [i / 8 for i in range(40)]
    figures = summarize(
        grants, grants, [0.1] * 40, limit=8, window=1.0, measure_from=1.0, measure_until=5.5
    )
    assert figures.grants == 40
    assert figures.measured_windows == 4  # [1, 5): the half window at the end is left out
    assert figures.utilization == pytest.approx(1.0)
    assert figures.overshoot == pytest.approx(1.0)
    assert figures.peak_sixtieth == 1
    assert figures.wait_p50_ms == pytest.approx(100.0)


def test_summarize_sees_a_burst_at_a_fixed_window_boundary() -> None:
    # A fixed-window limiter: 10 at the end of one window and 10 at the start of the next.
    grants = [0.95 + i * 0.001 for i in range(10)] + [1.0 + i * 0.001 for i in range(10)]
    sent = [t + 0.002 for t in grants]
    figures = summarize(
        grants, sent, [0.0] * 20, limit=10, window=1.0, measure_from=0.0, measure_until=2.0
    )
    assert figures.overshoot == pytest.approx(2.0)
    assert figures.overshoot_sent == pytest.approx(2.0)
    assert figures.utilization == pytest.approx(1.0)  # 20 grants in two windows
    assert figures.peak_sixtieth == 10  # each burst fits in 1/60 s


def test_summarize_without_a_whole_window() -> None:
    figures = summarize(
        [0.1], [0.1], [0.0], limit=5, window=1.0, measure_from=0.0, measure_until=0.5
    )
    assert figures.measured_windows == 0
    assert math.isnan(figures.utilization)


def test_replay_counts_what_the_emulator_would_refuse() -> None:
    # 3 per 1 s window (binary fractions, exact): one window apart is allowed (the old one
    # has left) ...
    assert replay_429s([0.0, 0.25, 0.5, 1.0, 1.25, 1.5], limit=3, window=1.0) == 0
    # ... a fourth one inside the window is refused, and a refusal is not recorded.
    assert replay_429s([0.0, 0.25, 0.5, 0.875, 0.9375, 1.0], limit=3, window=1.0) == 2
    assert replay_429s([], limit=3, window=1.0) == 0
