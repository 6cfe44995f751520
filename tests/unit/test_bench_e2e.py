"""``bench.bench_e2e``: the provider-clock headroom figure (pure arithmetic) and the broker
figure's refusal to report a profile without samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench._harness import ProcSampler
from bench.bench_e2e import arrival_headroom, broker_cpu_ms


def test_arrival_headroom_is_the_tightest_span_of_limit_plus_one_arrivals() -> None:
    # limit 2 per 10 s window: spans of 3 consecutive arrivals are 10.5 s and 10.2 s
    assert abs(arrival_headroom([0.0, 4.0, 10.5, 14.2], limit=2, window=10.0) - 0.2) < 1e-9
    # an overshoot shows as a negative headroom
    assert arrival_headroom([0.0, 1.0, 9.9], limit=2, window=10.0) < 0
    assert arrival_headroom([0.0], limit=2, window=10.0) == float("inf")


def test_a_profile_without_samples_gives_no_broker_figure(tmp_path: Path) -> None:
    # An empty folder (py-spy failed) must not read as "the broker costs 0 ms".
    with pytest.raises(SystemExit, match="no py-spy samples of scheduler"):
        broker_cpu_ms(tmp_path, ProcSampler({}), items=10)
