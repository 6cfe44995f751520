"""Arrival offsets, the arrival estimate and the guard that is left (pure logic; Redis I/O in
:mod:`.arrivals`).

The provider counts a create when it *arrives*; the limiter stamps it when it is dispatched (the
later of its slot and the caller's confirmation, on Redis' clock). For each accepted create the
provider's ``created_at`` gives ``offset = created_at - dispatched_at``: the clock offset
``theta`` between the provider and Redis plus the request's delay on the way. The smallest
offset seen, ``low = theta + fastest delay``, turns a provider stamp into Redis' clock:

    estimated arrival = created_at - low = dispatched_at + (offset - low)

that is, the dispatch plus how much slower this request was than the fastest. The limiter moves
the request's log entry there (the *arrival correction*), so the next window counts from the
arrival; the guard then only has to cover what the estimate cannot see:

* the provider stamping ``created_at`` after its rate-limit check (0 in the emulator, which
  counts and stamps at one instant; a few milliseconds at a real front end);
* drift between the provider's and Redis' clocks over the horizon in which ``low`` is taken
  (NTP keeps it under ~20 ppm: 12 ms in 10 minutes);
* requests whose answer never came (timeouts): they stay at their dispatch stamp.

:data:`RESIDUAL_GUARD_SECONDS` covers the first two; the third is rare and a 429 pauses the
budget as before. Until the correction has seen :data:`MIN_SAMPLES` creates spanning one window
(so that ``low`` is settled and every entry of the last window was corrected with it), the
configured guard stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

RESIDUAL_GUARD_SECONDS = 0.025
"""The guard once the arrival correction is settled, seconds: clock drift over 10 minutes at
20 ppm (12 ms) plus a provider's check-to-stamp lag of a few milliseconds, with room."""
MIN_SAMPLES = 200
"""Creates needed before the residual guard replaces the configured one (≈ 27 s at 450/min);
they must also span one window."""


@dataclass(frozen=True)
class JitterSummary:
    """Offsets ``created_at - dispatched_at`` of some requests, in seconds.

    Attributes:
        low: the smallest offset.
        high: the largest offset.
        count: how many requests.
    """

    low: float
    high: float
    count: int

    @classmethod
    def of(cls, offset: float) -> JitterSummary:
        """One request's offset (seconds)."""
        return cls(offset, offset, 1)

    def merge(self, other: JitterSummary | None) -> JitterSummary:
        """Both summaries as one (``None`` adds nothing)."""
        if other is None:
            return self
        return JitterSummary(
            min(self.low, other.low), max(self.high, other.high), self.count + other.count
        )

    @property
    def spread(self) -> float:
        """``high - low``: how much later the slowest request was than the fastest, seconds."""
        return self.high - self.low

    def encode(self) -> str:
        """``low:high:count`` with microsecond resolution (a Redis sorted-set member part)."""
        return f"{self.low:.6f}:{self.high:.6f}:{self.count}"

    @classmethod
    def decode(cls, text: str) -> JitterSummary | None:
        """The inverse of :meth:`encode`; ``None`` for anything malformed."""
        parts = text.split(":")
        if len(parts) != 3:
            return None
        try:
            low, high, count = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            return None
        if count < 1 or not low <= high:
            return None
        return cls(low, high, count)


def merge_all(summaries: Iterable[JitterSummary]) -> JitterSummary | None:
    """All summaries as one; ``None`` when there are none."""
    merged: JitterSummary | None = None
    for summary in summaries:
        merged = summary.merge(merged)
    return merged


def estimated_arrival(dispatched_at: float, offset: float, low: float) -> float:
    """A request's arrival at the provider on Redis' clock, unix seconds.

    Args:
        dispatched_at: its dispatch stamp (Redis' clock).
        offset: its ``created_at - dispatched_at``, seconds.
        low: the smallest offset known (this one included), seconds.
    """
    return dispatched_at + max(0.0, offset - low)


def residual_guard(
    merged: JitterSummary | None,
    span_seconds: float,
    *,
    window_seconds: float,
    fallback: float,
    ceiling: float,
) -> float:
    """The guard, seconds, once arrivals correct the log.

    Args:
        merged: the offsets of recent creates (all processes), or ``None``.
        span_seconds: time between the oldest and the newest of them (dispatch stamps).
        window_seconds: the budget's window.
        fallback: the configured guard.
        ceiling: the largest guard allowed.

    Returns:
        :data:`RESIDUAL_GUARD_SECONDS` once :data:`MIN_SAMPLES` creates spanning one window were
        seen, else the configured guard; never above ``ceiling``.
    """
    settled = merged is not None and merged.count >= MIN_SAMPLES and span_seconds >= window_seconds
    return min(RESIDUAL_GUARD_SECONDS if settled else fallback, ceiling)
