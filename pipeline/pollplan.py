"""When to poll a new prediction first: at the median runtime of the model's recent predictions.

A prediction polled before it can be done costs a read request, a Postgres statement and a
delayed broker message for nothing. With a fixed first delay (1 s) and x1.5 backoff, a model
that takes 2-8 s was polled 3.3 times per item (docs/BENCHMARKS.md). Polled first at
the median of the last runtimes seen, and then with the same backoff, about half of the
predictions are done at the first look (measured figures: docs/BENCHMARKS.md).

Pure logic; :mod:`pipeline.pollhints` shares the figures between processes through Redis.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

RUNTIME_SAMPLES = 200
"""Runtimes kept per model: enough for a stable median, recent enough to follow a change."""
MIN_SAMPLES = 20
"""Below this many runtimes of a model there is no estimate (the fixed first delay applies)."""


def runtime_seconds(created_at: datetime | None, completed_at: datetime | None) -> float | None:
    """A prediction's runtime on the provider's clock (``completed_at - created_at``), seconds;
    None when a stamp is missing or the difference is negative.

    This is the one runtime rule: the poll plan's median and the ``provider_run`` stage metric
    both read it. A negative difference is None, not 0: both stamps come from the provider's
    one clock, so ``completed_at`` before ``created_at`` means the stamps are wrong, not that
    the run took no time; a 0 would pull the median first-poll delay down and put a false
    instant run in the latency histogram, while None leaves the median alone and lets the
    metric fall back to our own measurement (the time since submission).
    """
    if created_at is None or completed_at is None:
        return None
    seconds = (completed_at - created_at).total_seconds()
    return seconds if seconds >= 0 else None


def first_poll_delay(median_seconds: float | None, *, initial: float, maximum: float) -> float:
    """Seconds from submission to the first poll: the median runtime, within
    ``[initial, maximum]``; ``initial`` when there is no estimate yet."""
    if median_seconds is None:
        return initial
    return min(maximum, max(initial, median_seconds))


@dataclass(frozen=True)
class WebhookWaits:
    """How long a PROCESSING item waits for its webhook before the rescuer polls it, seconds.

    ``by_model`` for the models with a runtime estimate, ``default`` for any other.
    """

    by_model: Mapping[str, float]
    default: float

    @property
    def shortest(self) -> float:
        """The shortest wait of any model: no item submitted since ``now - shortest`` is due."""
        return min([self.default, *self.by_model.values()])

    def of(self, model: str | None) -> float:
        """The wait of ``model``'s predictions, seconds."""
        return self.by_model.get(model or "", self.default)


def webhook_waits(
    medians: Mapping[str, float], *, initial: float, maximum: float, grace: float
) -> WebhookWaits:
    """With webhooks on, when a prediction's webhook is overdue: its expected runtime (the same
    first-poll delay :func:`first_poll_delay` gives without webhooks) plus ``grace``.

    Args:
        medians: median runtime by model, seconds (:meth:`pipeline.pollhints.RuntimeHints.medians`).
        initial: ``IMAGEOPT_POLL_INITIAL_DELAY_SECONDS``.
        maximum: ``IMAGEOPT_POLL_MAX_DELAY_SECONDS``.
        grace: ``IMAGEOPT_WEBHOOK_POLL_GRACE_SECONDS``.

    Returns:
        The waits, seconds.
    """
    by_model = {
        model: first_poll_delay(median, initial=initial, maximum=maximum) + grace
        for model, median in medians.items()
    }
    return WebhookWaits(by_model, first_poll_delay(None, initial=initial, maximum=maximum) + grace)


class RuntimeWindow:
    """The last ``size`` runtimes of each model's predictions, and their median (thread-safe).

    Args:
        size: runtimes kept per model.
        min_samples: runtimes needed before :meth:`median` answers.
    """

    def __init__(self, size: int = RUNTIME_SAMPLES, min_samples: int = MIN_SAMPLES) -> None:
        self._size = size
        self._min = min_samples
        self._runtimes: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def observe(self, model: str, seconds: float) -> None:
        """Record one finished prediction's runtime, seconds."""
        with self._lock:
            window = self._runtimes.get(model)
            if window is None:
                window = self._runtimes[model] = deque(maxlen=self._size)
            window.append(seconds)

    def median(self, model: str) -> float | None:
        """Median runtime of ``model``, seconds; None below ``min_samples`` runtimes."""
        with self._lock:
            window = self._runtimes.get(model)
            if window is None or len(window) < self._min:
                return None
            return float(statistics.median(window))
