"""Pure reference model of the limiter's Lua scripts: reservation GCRA plus a sliding log.

The Lua files next to this module (``reserve.lua``, ``confirm.lua``, ``release.lua``,
``pause.lua``) are the
implementation; this module states the same decisions in plain Python, line for line, on
integer microseconds, so that property tests can drive millions of arrivals without Redis and
a differential test can replay the real script's clock readings through it and compare slots.

Algorithm (sources: the Generic Cell Rate Algorithm of ITU-T I.371, virtual-scheduling form,
as explained in Brandur Leach's "Rate limiting, cells, and GCRA"; a sliding log as in
Redis' ZSET rate-limiter patterns):

* GCRA keeps one number, the theoretical arrival time ``TAT``. With emission interval
  ``T = window / limit`` and burst tolerance ``tau = (burst - 1) * T``, the next *slot* is
  ``max(now, TAT - tau)``: the steady rate with a small burst. Reserving it advances
  ``TAT = max(slot, TAT) + T``. The caller sleeps until its slot, so waiters queue in the
  order of their reservations and nobody spins on Redis.
* GCRA alone lets ``limit + burst - 1`` through in one window. The sliding log (a ZSET of
  reserved slots) makes the limit hard: a slot is taken only if fewer than ``limit`` entries
  lie after ``slot - window``; otherwise the slot moves to the moment the blocking entry leaves
  the window. Slots are also clamped to the newest entry, so they never go backwards: callers
  are served in the order they reserved, and every entry is at or before the new slot, so the
  count covers every window the new slot falls into.
* After the sleep the caller confirms its reservation; the entry moves to the later of its
  slot and the confirmation (the *dispatch stamp*), so a caller that woke late is counted
  from its real send; once the provider answered, the entry moves again, to the request's
  estimated arrival (never past now). Entries only move later, so every window counted by
  stamps holds at least as many entries as the same window counted by slots: the hard limit
  on slots stands.
* A pause (HTTP 429) moves the earliest slot to ``paused_until``, revokes reservations inside
  the pause and raises ``TAT`` so that the budget resumes at the steady rate, without a burst.
* Cold start: when ``TAT`` is missing (first use, idle for a day, or Redis lost its data) the
  log is seeded with a *virtual* history: the busiest history this algorithm could have
  produced just before now (``burst`` grants at ``now``, one every ``T`` before that, at most
  ``limit`` in the window). Any real history the limiter granted before the loss has at most
  as many grants in every interval ending now, so no rolling window can overshoot.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pipeline.ratelimit.budget import Budget

COLD_MEMBER_PREFIX = "cold:"


@dataclass
class ModelState:
    """The Redis keys of one budget, as plain data (times in microseconds).

    Attributes:
        tat: GCRA theoretical arrival time; ``None`` when the state key is missing.
        log: reserved and granted slots by member (a reservation token or a virtual entry).
        cold: the virtual entries of the last cold start (for stats only).
        paused_until: no slot before this instant; 0 when never paused.
        pause_reason: why the budget was last paused.
    """

    tat: int | None = None
    log: dict[str, int] = field(default_factory=dict)
    cold: dict[str, int] = field(default_factory=dict)
    paused_until: int = 0
    pause_reason: str = ""


@dataclass(frozen=True)
class Decision:
    """The answer of one reservation attempt.

    Attributes:
        granted: True when ``slot`` was reserved for the caller.
        slot: the reserved slot, or the earliest possible one when not granted (microseconds,
            Redis clock).
        now: the Redis clock when the decision was made (microseconds).
        cold_start: True when this call found the state missing and seeded the virtual history.
    """

    granted: bool
    slot: int
    now: int
    cold_start: bool = False

    @property
    def wait_us(self) -> int:
        """How long the caller must sleep before using the slot (microseconds)."""
        return self.slot - self.now


def cold_history(budget: Budget, now: int) -> list[int]:
    """The virtual history seeded on a cold start, newest first (microseconds).

    Args:
        budget: the budget whose worst case is modelled.
        now: the Redis clock at the cold start.

    Returns:
        ``burst`` entries at ``now``, then one every ``T`` before it, at most ``limit`` entries
        and none at or before ``now - window`` (those could not count in any later window).
    """
    slots: list[int] = []
    for i in range(1, budget.limit + 1):
        score = now - max(0, i - budget.burst_size) * budget.emission_us
        if score <= now - budget.log_window_us:
            break
        slots.append(score)
    return slots


def earliest_slot(sorted_slots: Sequence[int], start: int, budget: Budget) -> int:
    """The first slot at or after ``start`` with fewer than ``limit`` entries in its window.

    Args:
        sorted_slots: every log entry, ascending; none is later than ``start``.
        start: the earliest slot GCRA and the pause allow (microseconds).
        budget: gives the limit and window.

    Returns:
        ``start`` when the window ``(start - window, start]`` has room; otherwise the instant the
        blocking entry leaves the window: the ``(n - limit + 1)``-th of the ``n`` entries inside
        it, plus the window.
    """
    first = bisect.bisect_right(sorted_slots, start - budget.log_window_us)
    inside = len(sorted_slots) - first
    if inside < budget.limit:
        return start
    return sorted_slots[first + inside - budget.limit] + budget.log_window_us


def prune(state: ModelState, budget: Budget, now: int) -> None:
    """Drop log entries at or before ``now - window``: no future window can hold them."""
    horizon = now - budget.log_window_us
    state.log = {m: s for m, s in state.log.items() if s > horizon}
    state.cold = {m: s for m, s in state.cold.items() if s > horizon}


def reserve(state: ModelState, budget: Budget, now: int, max_wait: int, token: str) -> Decision:
    """Reserve the next slot if the caller can wait for it (mirrors ``reserve.lua``).

    Args:
        state: the budget's state; updated in place.
        budget: the budget.
        now: the Redis clock (microseconds).
        max_wait: the longest the caller accepts to wait (microseconds); 0 = only now.
        token: unique member name of this reservation.

    Returns:
        The decision; when not granted nothing is reserved (but a cold start is recorded).
    """
    prune(state, budget, now)
    cold_start = state.tat is None
    if state.tat is None:
        for i, score in enumerate(cold_history(budget, now), start=1):
            member = f"{COLD_MEMBER_PREFIX}{now}:{i}"
            state.log[member] = score
            state.cold[member] = score
        state.tat = now + budget.tolerance_us + budget.emission_us
    tat = state.tat
    slots = sorted(state.log.values())
    start = max(now, tat - budget.tolerance_us, state.paused_until, *slots[-1:])
    slot = earliest_slot(slots, start, budget)
    if slot - now > max_wait:
        return Decision(granted=False, slot=slot, now=now, cold_start=cold_start)
    state.log[token] = slot
    state.tat = max(slot, tat) + budget.emission_us
    return Decision(granted=True, slot=slot, now=now, cold_start=cold_start)


def confirm(state: ModelState, now: int, token: str, at: int = 0) -> int | None:
    """Check a reservation after the sleep and stamp its dispatch (mirrors ``confirm.lua``);
    with ``at``, move it to the request's estimated arrival instead (the arrival correction).

    Args:
        state: the budget's state; updated in place.
        now: the Redis clock (microseconds).
        token: the reservation's member name.
        at: the estimated arrival on Redis' clock (microseconds), capped at ``now``; 0: now.

    Returns:
        The entry's score afterwards, ``max(score, min(at, now) or now)`` (microseconds), or
        ``None`` when the reservation is gone (revoked by a pause, lost with Redis' data, or
        pruned).
    """
    score = state.log.get(token)
    if score is None:
        return None
    target = min(at, now) if at > 0 else now
    state.log[token] = max(score, target)
    return state.log[token]


def release(state: ModelState, budget: Budget, now: int, token: str) -> bool:
    """Give back a reservation that will not be used (mirrors ``release.lua``).

    Only a slot still in the future is removed. When it was the newest entry, ``TAT`` steps
    back by ``T`` (never below the value it had before that reservation was made).

    Returns:
        True when the reservation was removed.
    """
    slot = state.log.get(token)
    if slot is None or slot <= now:
        return False
    del state.log[token]
    if state.tat is not None and not any(s > slot for s in state.log.values()):
        state.tat -= budget.emission_us
    return True


def pause(
    state: ModelState, budget: Budget, now: int, duration: int, reason: str
) -> tuple[int, int]:
    """Pause the budget until ``now + duration`` (mirrors ``pause.lua``).

    Returns:
        ``(paused_until, revoked)``: the end of the (possibly longer, existing) pause and how
        many future reservations inside it were revoked.
    """
    until = now + duration
    if until > state.paused_until:
        state.paused_until = until
        state.pause_reason = reason
    paused_until = state.paused_until
    revoked = [m for m, s in state.log.items() if now < s < paused_until]
    for member in revoked:
        del state.log[member]
    if state.tat is not None:
        state.tat = max(state.tat, paused_until + budget.tolerance_us)
    return paused_until, len(revoked)


def max_in_any_window(times: Iterable[float], window: float) -> int:
    """The largest number of ``times`` in any rolling window ``(t - window, t]``.

    Checking the windows that end at each grant suffices: a window's count only rises when it
    reaches a new grant. Used by the tests and the benchmark to verify the hard guarantee.

    Args:
        times: grant instants (any unit, e.g. microseconds or seconds).
        window: the window length in the same unit.

    Returns:
        The maximum count, 0 for no grants.
    """
    ordered = sorted(times)
    best = 0
    for i, t in enumerate(ordered):
        first = bisect.bisect_right(ordered, t - window, hi=i + 1)
        best = max(best, bisect.bisect_right(ordered, t) - first)
    return best
