"""The arrival estimate and the residual guard (pure logic of ``pipeline.ratelimit.jitter``)."""

from __future__ import annotations

import pytest

from pipeline.ratelimit.jitter import (
    MIN_SAMPLES,
    RESIDUAL_GUARD_SECONDS,
    JitterSummary,
    estimated_arrival,
    merge_all,
    residual_guard,
)


def test_the_estimate_is_the_dispatch_plus_how_much_slower_than_the_fastest() -> None:
    # The provider's clock runs 3.7 s behind Redis'; the fastest request took 2 ms.
    low = -3.7 + 0.002
    assert estimated_arrival(100.0, -3.7 + 0.090, low) == pytest.approx(100.088)
    assert estimated_arrival(100.0, low, low) == 100.0  # the fastest: counted at its dispatch
    assert estimated_arrival(100.0, low - 1.0, low) == 100.0  # never before its dispatch


def test_the_configured_guard_holds_until_the_correction_is_settled() -> None:
    few = JitterSummary(0.0, 0.2, MIN_SAMPLES - 1)
    many = JitterSummary(0.0, 0.2, MIN_SAMPLES)
    kwargs = {"window_seconds": 60.0, "fallback": 0.3, "ceiling": 0.6}
    assert residual_guard(None, 0.0, **kwargs) == 0.3
    assert residual_guard(few, 120.0, **kwargs) == 0.3  # too few creates
    assert residual_guard(many, 59.0, **kwargs) == 0.3  # not yet one window of them
    assert residual_guard(many, 60.0, **kwargs) == RESIDUAL_GUARD_SECONDS
    assert residual_guard(many, 60.0, window_seconds=1.0, fallback=0.3, ceiling=0.01) == 0.01


def test_summaries_merge_and_round_trip_through_text() -> None:
    merged = merge_all(JitterSummary.of(o) for o in (0.02, -0.01, 0.005))
    assert merged == JitterSummary(-0.01, 0.02, 3)
    assert merged.spread == pytest.approx(0.03)
    assert merge_all([]) is None
    assert JitterSummary.decode(merged.encode()) == merged
    for bad in ("", "1:2", "a:b:c", "0.2:0.1:3", "0:1:0", "0:1:2:3"):
        assert JitterSummary.decode(bad) is None
