"""Budgets: requests per minute scaled to the window, burst defaults, integer GCRA parameters."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigurationError
from pipeline.ratelimit import Budget
from pipeline.ratelimit.budget import MAX_LIMIT


def test_the_limit_per_window_is_the_rate_scaled_to_the_window() -> None:
    assert Budget("create", 450).limit == 450
    assert Budget("create", 450, window_seconds=2.0).limit == 15
    assert Budget("read", 600, window_seconds=2.0).limit == 20


def test_the_default_burst_is_one_seconds_worth_and_at_least_one() -> None:
    assert Budget("create", 450).burst_size == 7
    assert Budget("read", 2400).burst_size == 40
    assert Budget("slow", 30).burst_size == 1


def test_the_burst_is_clamped_to_the_limit_per_window() -> None:
    assert Budget("create", 600, window_seconds=0.5, burst=100).burst_size == 5


def test_the_emission_interval_is_rounded_up_to_whole_microseconds() -> None:
    budget = Budget("create", 450)
    assert budget.window_us == 60_000_000
    assert budget.emission_us == 133_334  # 60 s / 450 = 133_333.3 us
    assert budget.tolerance_us == 6 * 133_334


@pytest.mark.parametrize(
    ("rpm", "window", "burst", "name"),
    [
        (0, 60.0, None, "create"),
        (10, 0.0, None, "create"),
        (10, float("nan"), None, "create"),
        (10, 1.0, None, "create"),  # 10 rpm gives no request in one second
        (450, 60.0, 0, "create"),
        (450, 60.0, None, ""),
        (450, 60.0, None, "a:b"),
    ],
)
def test_budgets_that_cannot_grant_are_rejected(
    rpm: int, window: float, burst: int | None, name: str
) -> None:
    with pytest.raises(ConfigurationError):
        Budget(name, rpm, window_seconds=window, burst=burst)


def test_a_budget_too_large_for_one_lua_cold_start_is_refused() -> None:
    assert Budget("create", MAX_LIMIT, 60.0).limit == MAX_LIMIT
    with pytest.raises(ConfigurationError, match="over"):
        Budget("create", MAX_LIMIT + 1, 60.0)
    assert Budget("create", 10 * MAX_LIMIT, 6.0).limit == MAX_LIMIT  # shorter window: fine


def test_the_guard_widens_the_log_window_but_not_the_rate() -> None:
    plain = Budget("create", 450, 60.0)
    guarded = Budget("create", 450, 60.0, guard_seconds=0.3)
    assert guarded.limit == plain.limit == 450
    assert guarded.emission_us == plain.emission_us
    assert guarded.log_window_us == plain.window_us + 300_000
    with pytest.raises(ConfigurationError, match="guard"):
        Budget("create", 450, 60.0, guard_seconds=60.0)
