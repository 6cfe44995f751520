"""The operator console's pure views: a store's line (rates, latencies) and a process seen
recently (ages from its beats)."""

from __future__ import annotations

from api.opspage import process_view, store_view


def store_row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "store_id": "shop-1", "pending": 7, "in_flight": 2, "done": 30, "failed": 10,
        "p50": 1.234, "p95": 9.876, "weight": 3, "quota": None, "paused": True,
        "paused_reason": "feed broken",
    }  # fmt: skip
    row.update(overrides)
    return row


def test_a_store_line_gives_throughput_per_hour_failure_rate_and_rounded_latencies() -> None:
    view = store_view(store_row(), window_hours=1.0)
    assert view == {
        "storeId": "shop-1", "pending": 7, "inFlight": 2, "throughputPerHour": 30.0,
        "failedLastHour": 10, "failureRate": 0.25, "p50Seconds": 1.23, "p95Seconds": 9.88,
        "weight": 3, "quota": None, "paused": True, "pausedReason": "feed broken",
    }  # fmt: skip


def test_a_store_with_nothing_finished_has_no_failure_rate_or_latency() -> None:
    view = store_view(store_row(done=0, failed=0, p50=None, p95=None), window_hours=2.0)
    assert (view["failureRate"], view["p50Seconds"], view["throughputPerHour"]) == (None, None, 0.0)


def test_a_process_line_says_how_long_ago_it_beat_and_cycled() -> None:
    doc = {"kind": "scheduler", "host": "h", "pid": 7, "beat_at": 100.0, "leader": True,
           "cycle": 12, "last_cycle_at": 104.5}  # fmt: skip
    view = process_view(doc, now=105.0)
    assert (view["seenSecondsAgo"], view["lastCycleSecondsAgo"], view["leader"]) == (5.0, 0.5, True)
    assert process_view({"kind": "worker", "beat_at": 200.0}, now=100.0)["seenSecondsAgo"] == 0.0
