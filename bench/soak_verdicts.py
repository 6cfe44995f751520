"""The soak run's verdicts, computed from what the run recorded (pure functions).

Inputs are plain numbers: epoch seconds of the provider's creations (its own clock), the
run's samples (one a second: backlog per store, the emulator's 429 counter, RSS per process
kind) and the fault windows. Each function returns the figure the table prints; the limits
each verdict is held to are in :data:`LIMITS`.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

LIMITS = {
    "utilization": 0.80,
    "jain_mean": 0.85,
    "rss_growth_ratio": 1.5,
    "rss_growth_slack_mib": 48.0,
}
"""Utilization of the budget between faults (share of ``rpm / 60`` per backlogged second, at
least), Jain's index while backlogged (mean, at least), RSS at the end against the early
run (at most ``ratio x early + slack``)."""
SETTLE_SECONDS = 10.0
"""Seconds after a fault ends before its effect is over (a restart, a rescue, a re-send)."""
MIN_UTILIZATION_SPAN = 30.0
"""Fewest seconds between faults that make a utilization figure: over less, one starved 5 s
stretch of a shared host decides it (the 2-minute run of ``make test`` has 10-20 s; the
30-minute runs 360-430 s)."""


@dataclass(frozen=True)
class Fault:
    """One injected fault: what, from ``start`` to ``end`` (epoch seconds)."""

    kind: str
    start: float
    end: float
    detail: str = ""


@dataclass
class Sample:
    """One look at the run (epoch seconds ``at``)."""

    at: float
    backlog: dict[str, int] = field(default_factory=dict)
    """PENDING + QUEUED items per store (None of the sample when Postgres was down)."""
    done: int = 0
    failed: int = 0
    responses_429: int = 0
    rss_kib: dict[str, int] = field(default_factory=dict)
    """RSS per process kind (KiB, its processes summed)."""
    rss_by_process_kib: dict[str, int] = field(default_factory=dict)
    """RSS per process of the run (KiB, by its name, one per incarnation: ``scheduler-b.2`` is
    the second start of ``scheduler-b``, after a kill)."""
    db_ok: bool = True


def max_in_window(stamps: Sequence[float], window: float) -> int:
    """Most ``stamps`` (sorted) in any half-open window of ``window`` seconds."""
    best = lo = 0
    for hi, at in enumerate(stamps):
        while at - stamps[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def in_any(at: float, faults: Sequence[Fault], before: float = 0.0, after: float = 0.0) -> bool:
    """Whether ``at`` falls in a fault's window widened by ``before`` / ``after`` seconds."""
    return any(f.start - before <= at <= f.end + after for f in faults)


def responses_429_outside(samples: Sequence[Sample], storms: Sequence[Fault]) -> int:
    """429s the provider answered outside the injected storms: each rise of its counter
    between two samples counts unless that interval overlaps a storm (plus 2 s for the
    answers in flight when it ended)."""
    outside = 0
    for prev, cur in itertools.pairwise(samples):
        rise = cur.responses_429 - prev.responses_429
        if rise <= 0:
            continue
        if not any(s.start <= cur.at and prev.at <= s.end + 2.0 for s in storms):
            outside += rise
    return outside


def utilization(
    stamps: Sequence[float], samples: Sequence[Sample], faults: Sequence[Fault], rate: float
) -> tuple[float, float]:
    """Creations per second over the budget's ``rate`` (per second), in the seconds that were
    backlogged (some item PENDING at the sample) and at least :data:`SETTLE_SECONDS` away
    from every fault. Returns ``(utilization, seconds counted)``."""
    span = 0.0
    created = 0
    for prev, cur in itertools.pairwise(samples):
        if not (prev.db_ok and cur.db_ok) or not sum(prev.backlog.values()):
            continue
        if in_any(prev.at, faults, after=SETTLE_SECONDS) or in_any(cur.at, faults):
            continue
        span += cur.at - prev.at
        created += bisect.bisect_left(stamps, cur.at) - bisect.bisect_left(stamps, prev.at)
    if span <= 0:
        return float("nan"), 0.0
    return created / (rate * span), span


def utilization_verdict(util: float, span: float) -> tuple[str, bool]:
    """The utilization verdict's value and whether it is met (:data:`LIMITS`): not judged
    (met) when fewer than :data:`MIN_UTILIZATION_SPAN` seconds were counted."""
    if math.isnan(util) or span < MIN_UTILIZATION_SPAN:
        shown = "none" if math.isnan(util) else f"{util:.1%}"
        return f"n/a: {shown} over {span:.0f} s (< {MIN_UTILIZATION_SPAN:.0f} s)", True
    return f"{util:.1%} over {span:.0f} s", util >= LIMITS["utilization"]


def jain(counts: Sequence[int]) -> float:
    """Jain's fairness index of ``counts``: 1 when equal, ``1/n`` when one takes all."""
    total, squares = sum(counts), sum(c * c for c in counts)
    return total * total / (len(counts) * squares) if squares else 1.0


def fairness(
    submissions: Mapping[str, Sequence[float]], samples: Sequence[Sample], window: float
) -> list[float]:
    """Jain's index of submissions per store in consecutive ``window`` s windows, over the
    stores that had items PENDING or QUEUED at every sample of the window (at least two)."""
    usable = [s for s in samples if s.db_ok]
    if not usable:
        return []
    stamps = {store: sorted(ats) for store, ats in submissions.items()}
    indices = []
    lo = usable[0].at
    while lo + window <= usable[-1].at:
        hi = lo + window
        inside = [s for s in usable if lo <= s.at < hi]
        stores = (
            set.intersection(*({st for st, n in s.backlog.items() if n > 0} for s in inside))
            if inside
            else set()
        )
        if len(stores) >= 2:
            counts = [
                bisect.bisect_left(stamps.get(st, []), hi)
                - bisect.bisect_left(stamps.get(st, []), lo)
                for st in sorted(stores)
            ]
            indices.append(jain(counts))
        lo = hi
    return indices


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_steps(samples: Sequence[Sample], kind: str, steps: int = 10) -> list[float]:
    """RSS of ``kind`` (MiB, summed over its processes) at each 10 % of the run."""
    return _at_steps([s.rss_kib.get(kind, 0) for s in samples], steps)


def rss_steps_by_process(samples: Sequence[Sample], steps: int = 10) -> dict[str, list[float]]:
    """RSS of each process incarnation (MiB, by name) at each 10 % of the run; 0 where it was
    not running (not yet started, or killed). Tells a restart's warm-up from growth, which the
    per-kind sum cannot (docs/RELIABILITY.md, "Scheduler memory")."""
    names = sorted({name for s in samples for name in s.rss_by_process_kib})
    return {
        name: _at_steps([s.rss_by_process_kib.get(name, 0) for s in samples], steps)
        for name in names
    }


def _at_steps(series: Sequence[int], steps: int) -> list[float]:
    """``series`` (KiB, one value a sample) in MiB at each ``1 / steps`` of its length."""
    if not series:
        return []
    return [series[min(len(series) - 1, round(i * (len(series) - 1) / steps))] / 1024
            for i in range(1, steps + 1)]  # fmt: skip


def rss_flat(steps: Sequence[float]) -> bool:
    """Flat: the largest of the last three steps within ``ratio x`` the largest of the first
    three, plus a slack (a restarted process starts small, a warm one settles)."""
    if len(steps) < 6:
        return True
    early, late = max(steps[:3]), max(steps[-3:])
    return late <= LIMITS["rss_growth_ratio"] * early + LIMITS["rss_growth_slack_mib"]
