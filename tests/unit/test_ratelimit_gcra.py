"""The pure model of the limiter (reservation GCRA + sliding log): examples and properties."""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ratelimit import Budget
from pipeline.ratelimit.gcra import (
    ModelState,
    cold_history,
    confirm,
    max_in_any_window,
    pause,
    release,
    reserve,
)

T0 = 1_795_000_000_000_000  # a realistic Redis TIME in microseconds
FOREVER = 10**12


def warm(budget: Budget, now: int = T0) -> ModelState:
    """State of a budget that has been idle for a long time (full burst credit)."""
    return ModelState(tat=now - 10 * budget.window_us)


def test_a_warm_budget_grants_its_burst_at_once_then_one_per_emission_interval() -> None:
    budget = Budget("create", 600, window_seconds=2.0, burst=3)  # 20 per 2 s, T = 0.1 s
    state = warm(budget)
    slots = [reserve(state, budget, T0, FOREVER, f"t{i}").slot - T0 for i in range(6)]
    assert slots == [0, 0, 0, 100_000, 200_000, 300_000]


def test_the_log_holds_the_limit_when_gcra_alone_would_exceed_it() -> None:
    budget = Budget("create", 600, window_seconds=2.0, burst=5)
    state = warm(budget)
    slots = [reserve(state, budget, T0, FOREVER, f"t{i}").slot for i in range(40)]
    assert max_in_any_window(slots, budget.window_us) == budget.limit
    # The 21st grant waits until the burst at T0 has left the window.
    assert slots[20] == T0 + budget.window_us


def test_a_caller_that_cannot_wait_long_enough_reserves_nothing() -> None:
    budget = Budget("create", 600, window_seconds=2.0, burst=1)
    state = warm(budget)
    assert reserve(state, budget, T0, 0, "a").granted
    refused = reserve(state, budget, T0, 50_000, "b")
    assert not refused.granted
    assert refused.wait_us == 100_000
    assert set(state.log) == {"a"}
    assert reserve(state, budget, T0, 100_000, "c").slot == T0 + 100_000


def test_a_cold_start_assumes_a_saturated_previous_window() -> None:
    budget = Budget("create", 600, window_seconds=2.0, burst=3)
    assert len(cold_history(budget, T0)) == budget.limit
    state = ModelState()
    first = reserve(state, budget, T0, FOREVER, "a")
    assert first.cold_start
    # The oldest of the 20 virtual grants (T0 - 17 T) leaves the window at T0 + 3 T.
    assert first.slot == T0 + 3 * budget.emission_us
    second = reserve(state, budget, T0, FOREVER, "b")
    assert not second.cold_start
    assert second.slot == first.slot + budget.emission_us


def test_a_pause_revokes_reservations_inside_it_and_resumes_without_a_burst() -> None:
    budget = Budget("create", 600, window_seconds=2.0, burst=4)
    state = warm(budget)
    for i in range(8):
        reserve(state, budget, T0, FOREVER, f"t{i}")
    paused_until, revoked = pause(state, budget, T0 + 1, 1_000_000, "provider_429")
    assert paused_until == T0 + 1_000_001
    assert revoked == 4  # t4..t7 were at T0 + 0.1 .. 0.4 s; t0..t3 were granted at T0
    after = [reserve(state, budget, T0 + 2, FOREVER, f"r{i}").slot for i in range(3)]
    assert after == [paused_until + i * budget.emission_us for i in range(3)]


def test_a_shorter_pause_does_not_cut_a_longer_one() -> None:
    budget = Budget("create", 600, window_seconds=2.0)
    state = warm(budget)
    pause(state, budget, T0, 5_000_000, "provider_429")
    assert pause(state, budget, T0, 1_000_000, "manual") == (T0 + 5_000_000, 0)
    assert state.pause_reason == "provider_429"


def test_releasing_the_newest_reservation_gives_its_slot_to_the_next_caller() -> None:
    budget = Budget("create", 600, window_seconds=2.0, burst=1)
    state = warm(budget)
    slots = [reserve(state, budget, T0, FOREVER, f"t{i}").slot for i in range(3)]
    assert release(state, budget, T0 + 1, "t2")
    assert reserve(state, budget, T0 + 2, FOREVER, "again").slot == slots[2]


def test_a_slot_that_has_come_cannot_be_released() -> None:
    budget = Budget("create", 600, window_seconds=2.0, burst=1)
    state = warm(budget)
    reserve(state, budget, T0, FOREVER, "a")
    assert not release(state, budget, T0, "a")
    assert not release(state, budget, T0, "unknown")


def test_a_late_confirmation_moves_the_next_window_by_the_lateness() -> None:
    budget = Budget("create", 60, window_seconds=1.0, burst=1)  # 1 per second
    state = warm(budget)
    first = reserve(state, budget, T0, FOREVER, "a")
    late = 300_000
    assert confirm(state, first.slot + late, "a") == first.slot + late
    second = reserve(state, budget, first.slot + late, FOREVER, "b")
    assert second.slot == first.slot + late + budget.window_us
    assert confirm(state, second.slot - 1, "b") == second.slot  # early wake: no change
    assert confirm(state, second.slot, "gone") is None
    # The answer came: the entry moves to the estimated arrival, never past now, never back.
    assert confirm(state, second.slot + 500, "b", at=second.slot + 200) == second.slot + 200
    assert confirm(state, second.slot + 600, "b", at=second.slot + 9_000) == second.slot + 600
    assert confirm(state, second.slot + 700, "b", at=second.slot + 100) == second.slot + 600


def test_max_in_any_window_counts_half_open_windows() -> None:
    assert max_in_any_window([], 10) == 0
    assert max_in_any_window([0, 10, 20], 10) == 1
    assert max_in_any_window([0, 9, 10, 10], 10) == 3


# --- properties ----------------------------------------------------------------------------

budgets = st.builds(
    lambda limit, window, burst: Budget(
        "b", round(limit * 60 / window), window_seconds=window, burst=burst
    ),
    limit=st.integers(min_value=1, max_value=400),
    window=st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0, 60.0]),
    burst=st.one_of(st.none(), st.integers(min_value=1, max_value=50)),
)

Op = tuple[str, int, int]
ops = st.lists(
    st.tuples(
        st.sampled_from(
            ["reserve", "reserve", "reserve", "try", "confirm", "release", "pause", "restart"]
        ),
        st.integers(min_value=0, max_value=1000),  # time advance, in thousandths of a window
        st.integers(min_value=0, max_value=1000),  # operand: wait, pause length, which token
    ),
    min_size=1,
    max_size=120,
)


@dataclass
class Run:
    """A simulated run: the state, the clock and every reservation's fate."""

    budget: Budget
    state: ModelState = field(default_factory=ModelState)
    now: int = T0
    live: dict[str, int] = field(default_factory=dict)  # token -> slot, not (yet) withdrawn
    used: list[int] = field(default_factory=list)  # slots whose time came while reserved
    spent: dict[str, int] = field(default_factory=dict)  # token -> slot, for confirm

    def settle(self, now: int) -> None:
        """Advance the clock; reservations whose slot came while still reserved are used."""
        self.now = now
        for token, slot in list(self.live.items()):
            if slot <= now:
                self.used.append(slot)
                self.spent[token] = slot
                del self.live[token]

    def withdraw_missing(self) -> None:
        """Callers whose reservation vanished (pause, restart) find out and do not use it."""
        for token in [t for t in self.live if t not in self.state.log]:
            del self.live[token]


def play(budget: Budget, program: list[Op]) -> Run:
    run = Run(budget)
    counter = itertools.count()
    for kind, advance, operand in program:
        run.settle(run.now + advance * budget.window_us // 1000)
        if kind in ("reserve", "try"):
            token = f"t{next(counter)}"
            max_wait = 0 if kind == "try" else operand * budget.window_us // 100
            decision = reserve(run.state, budget, run.now, max_wait, token)
            assert decision.slot >= run.now
            assert decision.slot >= run.state.paused_until
            if decision.granted:
                run.live[token] = decision.slot
        elif kind == "release" and run.live:
            token = sorted(run.live)[operand % len(run.live)]
            if release(run.state, budget, run.now, token):
                del run.live[token]
        elif kind == "confirm" and run.spent:  # a caller woke, possibly late: stamp it
            token = sorted(run.spent)[operand % len(run.spent)]
            before = run.state.log.get(token)
            at = run.now - operand * budget.window_us // 2000 if operand % 2 else 0
            stamp = confirm(run.state, run.now, token, at=max(0, at))
            target = max(0, at) or run.now
            assert stamp == (None if before is None else max(before, target))
        elif kind == "pause":
            pause(run.state, budget, run.now, operand * budget.window_us // 500, "provider_429")
            run.withdraw_missing()
        elif kind == "restart":
            run.state = ModelState()
            run.withdraw_missing()
    run.used.extend(run.live.values())  # whatever is still reserved will be used
    return run


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(budget=budgets, program=ops)
def test_no_rolling_window_ever_holds_more_than_the_limit(
    budget: Budget, program: list[Op]
) -> None:
    run = play(budget, program)
    assert max_in_any_window(run.used, budget.window_us) <= budget.limit


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(budget=budgets, program=ops)
def test_grants_never_come_closer_than_gcra_allows(budget: Budget, program: list[Op]) -> None:
    """Smoothness: k consecutive grants span at least (k - burst) emission intervals."""
    program = [op for op in program if op[0] != "restart"]  # a restart forgets the spacing
    used = sorted(play(budget, program).used)
    b, t = budget.burst_size, budget.emission_us
    for i in range(len(used) - b):
        assert used[i + b] - used[i] >= t


@settings(max_examples=60, deadline=None)
@given(
    budget=budgets,
    callers=st.integers(min_value=2, max_value=8),
    latency_us=st.integers(min_value=0, max_value=5_000),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_callers_that_always_wait_use_the_whole_budget(
    budget: Budget, callers: int, latency_us: int, seed: int
) -> None:
    """Saturation: each caller reserves again as soon as it wakes (after network latency).

    Any ``limit + 1`` consecutive grants span at least one window (the hard limit) and at most
    ``window / 0.995`` (99.5 % utilization). Waiting callers hold reservations, so latency
    only costs when a caller arrives late for burst credit: at most ``burst * latency`` per
    window, kept here below half a percent of the window (in production: 7 x ~1 ms in 60 s).
    """
    rng = random.Random(seed)
    latency = min(latency_us, budget.window_us // (200 * budget.burst_size))
    state = warm(budget)
    wakes = [(T0 + rng.randint(0, latency), i) for i in range(callers)]
    heapq.heapify(wakes)
    slots: list[int] = []
    while len(slots) < 4 * budget.limit + 1:
        now, caller = heapq.heappop(wakes)
        decision = reserve(state, budget, now, FOREVER, f"t{len(slots)}")
        slots.append(decision.slot)
        heapq.heappush(wakes, (decision.slot + rng.randint(0, latency), caller))
    assert slots == sorted(slots)  # served in the order of reservation
    for i in range(len(slots) - budget.limit):
        span = slots[i + budget.limit] - slots[i]
        assert budget.window_us <= span <= budget.window_us / 0.995


def test_a_guarded_budget_never_puts_more_than_the_limit_in_window_plus_guard() -> None:
    budget = Budget("create", 600, window_seconds=1.0, burst=1, guard_seconds=0.2)
    state = ModelState()
    slots: list[int] = []
    now = T0
    for i in range(200):  # saturated: always ask again at the granted slot
        decision = reserve(state, budget, now, FOREVER, f"t{i}")
        assert decision.granted
        slots.append(decision.slot)
        now = decision.slot
    span = budget.log_window_us
    assert max_in_any_window(slots, span) <= budget.limit
    # ...and the steady rate is the limit per (window + guard): about 10 / 1.2 s here.
    assert slots[-1] - slots[-1 - budget.limit] >= span
