"""A thread-safe sliding-window rate limiter, as the emulator's own provider-side limit.

A sliding log (one timestamp per accepted request; Kong and Cloudflare describe the same
"sliding window log" algorithm): a request is accepted when fewer than ``limit`` requests were
accepted in the last ``window`` seconds. Refused requests are not recorded, so a client that
keeps retrying does not extend its own ban. This is exact, not an approximation, which is what
a test of "never more than N per rolling window" needs.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """Accept at most ``limit`` requests in any rolling ``window`` seconds.

    Args:
        limit: requests accepted per window.
        window: window length, seconds.
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._accepted: deque[float] = deque()
        self._limit = limit
        self._window = window

    def configure(self, limit: int, window: float) -> None:
        """Change the limit and window; the recorded history is kept."""
        with self._lock:
            self._limit = limit
            self._window = window

    def reset(self) -> None:
        """Forget every accepted request."""
        with self._lock:
            self._accepted.clear()

    def try_acquire(self) -> float:
        """Take one slot if the window has room.

        Returns:
            ``0.0`` when accepted, else the seconds until a slot frees up (> 0).
        """
        with self._lock:
            now = self._clock()
            horizon = now - self._window
            while self._accepted and self._accepted[0] <= horizon:
                self._accepted.popleft()
            if len(self._accepted) < self._limit:
                self._accepted.append(now)
                return 0.0
            index = len(self._accepted) - self._limit
            return max(self._accepted[index] + self._window - now, 1e-3)

    def in_window(self) -> int:
        """Requests accepted in the current window."""
        with self._lock:
            horizon = self._clock() - self._window
            return sum(1 for stamp in self._accepted if stamp > horizon)


def retry_after_header(wait_seconds: float) -> str:
    """Format a wait as ``Retry-After`` delta-seconds (RFC 9110 §10.2.3: a whole number >= 1)."""
    return str(max(1, math.ceil(wait_seconds)))
