"""A named rate budget (``create``, ``read``) and the integer GCRA parameters derived from it.

A budget is configured in requests per minute, like the provider documents its limits, and
enforced over a rolling window of ``window_seconds`` (60 in production; tests use 2-3 s). The
limit per window is scaled from the rate: ``floor(rpm * window_seconds / 60)``. A shorter
window with the scaled limit is never looser than the per-minute limit: any minute is covered
by whole shorter windows.

All times inside Redis are integer microseconds (``TIME`` gives seconds and microseconds).
Integers below 2**53 are exact in Lua's doubles, so the Lua script and the pure model in
:mod:`pipeline.ratelimit.gcra` compute exactly the same slots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.errors import ConfigurationError

MICROS_PER_SECOND = 1_000_000
MAX_LIMIT = 50_000
"""Most grants per window a budget may allow. The cold start (after Redis lost the limiter's
keys) writes one virtual log entry per grant of the window in a single Lua call, and Redis
serves nothing else meanwhile: measured here (2 loaded cores) 1.1 s for 200,000 entries, so
50,000 keeps that pause near a quarter of a second. 50,000 per 60 s window is far above any
provider account's limit (Replicate: 600 creates per minute); time-scaled benchmarks use a
shorter window instead."""


@dataclass(frozen=True)
class Budget:
    """One named budget of one provider account.

    Attributes:
        name: budget name used in keys and metric labels (``create``, ``read``).
        rpm: requests per minute the provider allows.
        window_seconds: the rolling window (seconds) over which the hard limit holds.
        burst: grants that may go out back to back after an idle period; ``None`` picks one
            second's worth of the rate, ``max(1, rpm // 60)`` (7 for 450 RPM, 40 for 2400 RPM).
            It is clamped to the limit per window.
        guard_seconds: the sliding log holds the limit over ``window + guard`` instead of the
            window: a margin for requests that reach the provider later than their grant
            (network and client jitter). Measured here: with 0 s a saturated run drew a few
            429s from a provider counting arrivals over the same 60 s; 0.3 s drew none, at a
            utilization ceiling of ``window / (window + guard)`` (99.5 %). See
            docs/BENCHMARKS.md, "Global rate limiter".

    Raises:
        ConfigurationError: when the rate, window or burst cannot give at least one grant, or
            the window would hold more than :data:`MAX_LIMIT` grants.
    """

    name: str
    rpm: int
    window_seconds: float = 60.0
    burst: int | None = None
    guard_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name or "{" in self.name or "}" in self.name:
            raise ConfigurationError(f"invalid budget name {self.name!r}")
        if self.rpm < 1:
            raise ConfigurationError(f"budget {self.name!r}: rpm must be >= 1")
        if not math.isfinite(self.window_seconds) or self.window_seconds <= 0:
            raise ConfigurationError(f"budget {self.name!r}: window_seconds must be > 0")
        if self.limit < 1:
            raise ConfigurationError(
                f"budget {self.name!r}: {self.rpm} rpm gives no request in a "
                f"{self.window_seconds} s window"
            )
        if self.limit > MAX_LIMIT:
            raise ConfigurationError(
                f"budget {self.name!r}: {self.limit} grants per window is over {MAX_LIMIT}; "
                "use a shorter window or a smaller rate"
            )
        guard = self.guard_seconds
        if not math.isfinite(guard) or not 0 <= guard < self.window_seconds:
            raise ConfigurationError(f"budget {self.name!r}: guard_seconds must be in [0, window)")
        if self.burst is not None and self.burst < 1:
            raise ConfigurationError(f"budget {self.name!r}: burst must be >= 1")

    @property
    def limit(self) -> int:
        """Most grants in any rolling window of ``window_seconds`` (the hard guarantee)."""
        # The small epsilon keeps 450 * 60 / 60 from flooring to 449 through float error.
        return math.floor(self.rpm * self.window_seconds / 60.0 + 1e-9)

    @property
    def burst_size(self) -> int:
        """The GCRA burst: grants allowed back to back, between 1 and :attr:`limit`."""
        wanted = self.burst if self.burst is not None else max(1, self.rpm // 60)
        return min(wanted, self.limit)

    @property
    def window_us(self) -> int:
        """The window in integer microseconds."""
        return round(self.window_seconds * MICROS_PER_SECOND)

    @property
    def log_window_us(self) -> int:
        """The span, in integer microseconds, over which the sliding log allows :attr:`limit`
        grants: the window plus the guard."""
        return self.window_us + round(self.guard_seconds * MICROS_PER_SECOND)

    @property
    def emission_us(self) -> int:
        """GCRA emission interval ``T = window / limit`` in microseconds, rounded up.

        Rounding up keeps every quantity an exact integer; it slows the steady rate by less
        than one microsecond per grant (under 0.001 % at 450 RPM), and the sliding log, not
        ``T``, decides how many grants fit in a window.
        """
        return -(-self.window_us // self.limit)

    @property
    def tolerance_us(self) -> int:
        """GCRA burst tolerance ``tau = (burst - 1) * T`` in microseconds."""
        return (self.burst_size - 1) * self.emission_us
