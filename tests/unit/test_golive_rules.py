"""The go-live levers' pure rules: start values from the environment, rows over them, the
rollout's stable buckets and the reader's short cache."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.golive import (
    FLAGS,
    GoLiveReader,
    GoLiveState,
    Rollout,
    bucket,
    start_state,
    state_from_rows,
)


def row(name: str, value: Any) -> dict[str, Any]:
    return {"name": name, "value": value, "reason": None, "changed_by": "t",
            "changed_at": datetime(2026, 1, 1, tzinfo=UTC)}  # fmt: skip


def test_flags_start_on_and_the_environment_sets_them_by_either_name() -> None:
    assert start_state({}).flags == dict.fromkeys(FLAGS, True)
    env = {
        "SIZE_PREVIEW_ENABLED": "false",
        "IMAGEOPT_FLAG_ONBOARDING_ENABLED": "off",
        "ONBOARDING_ENABLED": "true",  # the IMAGEOPT_ name wins
        "AUTH_REQUIRED": "false  # Start with anonymous mode",  # as the seed writes it
    }
    state = start_state(env)
    assert state.flags["SIZE_PREVIEW_ENABLED"] is False
    assert state.flags["ONBOARDING_ENABLED"] is False
    assert state.flags["CUSTOM_PRESETS_ENABLED"] is True
    assert state.auth_required is False
    assert start_state({"IMAGEOPT_AUTH_REQUIRED": "1"}).auth_required is True


def test_a_flag_that_is_not_a_boolean_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="SIZE_PREVIEW_ENABLED"):
        start_state({"SIZE_PREVIEW_ENABLED": "maybe"})


def test_rows_override_the_start_values() -> None:
    start = start_state({"SIZE_PREVIEW_ENABLED": "false"})
    state = state_from_rows(
        start,
        [
            row("flag:SIZE_PREVIEW_ENABLED", True),
            row("flag:IMAGE_ANALYSIS_ENABLED", False),
            row("model:a/b", False),
            row("model:c/d", True),
            row("auth_required", True),
            row("rollout", {"percent": 25, "allowStores": ["team"]}),
        ],
    )
    assert state.flag("SIZE_PREVIEW_ENABLED") is True
    assert state.flag("IMAGE_ANALYSIS_ENABLED") is False
    assert state.disabled_models == frozenset({"a/b"})
    assert state.auth_required is True
    assert state.rollout == Rollout(25, ("team",))


def test_the_rollout_admits_allowed_stores_and_everyone_at_100() -> None:
    outside = next(f"store:s{n}" for n in range(1000) if bucket(f"store:s{n}") >= 5)
    assert not Rollout(5).admits(outside, "s")
    assert Rollout(5, ("s",)).admits(outside, "s")
    assert Rollout(100).admits(outside, None)
    assert not Rollout(0).admits(outside, None)


@given(st.text(max_size=50), st.integers(0, 100), st.integers(0, 100))
def test_raising_the_percent_only_adds_callers(identity: str, low: int, high: int) -> None:
    low, high = sorted((low, high))
    if Rollout(low).admits(identity, None):
        assert Rollout(high).admits(identity, None)


def test_buckets_spread_callers_about_evenly() -> None:
    inside = sum(bucket(f"guest:{n}") < 25 for n in range(4000))
    assert 800 < inside < 1200  # 25 % of 4000 is 1000


def test_the_reader_reads_again_only_after_its_interval_or_a_refresh() -> None:
    reads: list[int] = []
    now = [0.0]

    def load() -> list[dict[str, Any]]:
        reads.append(1)
        return [row("model:a/b", False)]

    reader = GoLiveReader(load, start=GoLiveState(dict.fromkeys(FLAGS, True)), interval=1.0,
                          clock=lambda: now[0])  # fmt: skip
    assert reader.cached() is None
    assert reader.disabled_models() == frozenset({"a/b"})
    now[0] = 0.5
    assert reader.cached() is not None
    reader.state()
    assert len(reads) == 1
    now[0] = 1.0
    assert reader.cached() is None
    reader.state()
    reader.refresh()
    reader.state()
    assert len(reads) == 3
