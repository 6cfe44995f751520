"""``bench.soak_verdicts``: the soak's figures from recorded numbers (pure arithmetic)."""

from __future__ import annotations

from bench.soak_verdicts import (
    Fault,
    Sample,
    fairness,
    jain,
    max_in_window,
    responses_429_outside,
    rss_flat,
    rss_steps,
    rss_steps_by_process,
    utilization,
)


def test_max_in_window_counts_a_half_open_rolling_window() -> None:
    assert max_in_window([0.0, 1.0, 9.9, 10.0, 10.5], window=10.0) == 4
    assert max_in_window([], window=10.0) == 0


def test_429s_count_only_outside_the_storms_and_their_tail() -> None:
    counter = [(0, 0), (1, 5), (2, 9), (3, 9), (4, 10), (6, 10), (7, 11), (9, 13)]
    samples = [Sample(at=float(t), responses_429=n) for t, n in counter]
    storm = Fault("provider:429 storm", start=0.5, end=2.5)
    # 5 + 4 during the storm, +1 in its 2 s tail (answers in flight); +1 and +2 later
    assert responses_429_outside(samples, [storm]) == 3
    assert responses_429_outside(samples, []) == 13


def test_utilization_skips_faults_their_settling_and_idle_seconds() -> None:
    samples = [Sample(at=float(t), backlog={"s": 1 if t < 8 else 0}) for t in range(12)]
    stamps = [t + 0.5 for t in range(12)]  # one creation a second
    fault = Fault("kill:api", start=2.0, end=2.5)
    util, span = utilization(stamps, samples, [fault], rate=2.0)
    # backlogged 0..8; the fault and its 10 s settling cover 2..12.5: only 0..1 counts
    assert span == 1.0
    assert util == 0.5


def test_jain_and_fairness_over_backlogged_stores_only() -> None:
    assert jain([3, 3, 3]) == 1.0
    assert abs(jain([6, 0, 0]) - 1 / 3) < 1e-9
    samples = [Sample(at=float(t), backlog={"a": 5, "b": 5, "c": 0}) for t in range(11)]
    subs = {"a": [0.5, 1.5, 2.5], "b": [0.7, 1.7, 2.7], "c": [1.0] * 9}
    # "c" is not backlogged: its burst does not count against the others
    assert fairness(subs, samples, window=5.0) == [1.0, 1.0]


def test_rss_flat_allows_restarts_and_refuses_growth() -> None:
    assert rss_flat([100, 100, 101, 20, 100, 100, 102, 101, 103, 104])
    assert not rss_flat([100, 100, 100, 140, 180, 220, 260, 300, 340, 380])


def test_utilization_is_judged_only_over_enough_seconds_between_faults() -> None:
    from bench.soak_verdicts import MIN_UTILIZATION_SPAN, utilization_verdict

    assert utilization_verdict(0.657, 11.0) == ("n/a: 65.7% over 11 s (< 30 s)", True)
    assert utilization_verdict(float("nan"), 0.0) == ("n/a: none over 0 s (< 30 s)", True)
    assert utilization_verdict(0.657, MIN_UTILIZATION_SPAN) == ("65.7% over 30 s", False)
    assert utilization_verdict(0.985, 363.0) == ("98.5% over 363 s", True)


def test_rss_by_process_shows_a_restart_where_the_sum_of_its_kind_hides_it() -> None:
    samples = [
        Sample(at=float(t), rss_by_process_kib={"scheduler": kib, "scheduler-standby": 81 * 1024},
               rss_kib={"scheduler": kib + 81 * 1024})
        for t, kib in enumerate([80 * 1024] * 5 + [0] + [40 * 1024] * 4)
    ]  # fmt: skip
    by_process = rss_steps_by_process(samples, steps=5)
    assert by_process == {
        "scheduler": [80.0, 80.0, 0.0, 40.0, 40.0],
        "scheduler-standby": [81.0] * 5,
    }
    assert rss_steps(samples, "scheduler", steps=5) == [161.0, 161.0, 81.0, 121.0, 121.0]
