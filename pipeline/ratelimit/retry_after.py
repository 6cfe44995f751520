"""Parse an HTTP ``Retry-After`` header into seconds (RFC 9110, section 10.2.3).

The header is either a number of seconds (``120``) or an HTTP-date
(``Wed, 21 Oct 2015 07:28:00 GMT``). Pure: the current time is a parameter.
"""

from __future__ import annotations

import math
import time
from datetime import UTC
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, default: float, *, now: float | None = None) -> float:
    """Seconds to wait according to a ``Retry-After`` header value.

    Args:
        value: the header value, or None when the response had none.
        default: seconds to use when the value is missing or cannot be parsed.
        now: the current unix time in seconds, for HTTP-dates (default: ``time.time()``).

    Returns:
        Seconds to wait, never negative: a negative number or a date in the past gives 0;
        a missing or malformed value (or NaN/infinity) gives ``default``.
    """
    if value is None or not value.strip():
        return default
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until_date(text, default, time.time() if now is None else now)
    if not math.isfinite(seconds):
        return default
    return max(0.0, seconds)


def _seconds_until_date(text: str, default: float, now: float) -> float:
    """Seconds from ``now`` until an HTTP-date, 0 if it has passed, ``default`` if invalid."""
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return default
    if when.tzinfo is None:  # the asctime() form carries no zone; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
