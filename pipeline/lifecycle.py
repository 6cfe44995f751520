"""Pure rules of the item lifecycle: what happens after an error, and when to try again.

Statuses (DESIGN §3): ``PENDING → QUEUED → SUBMITTING → PROCESSING → DONE | FAILED``, plus
``CANCELED``. ``SUBMITTING`` is the short-lived "submission in flight" marker: it is taken by
exactly one worker right before the rate-limit token and the provider call, and left in the
same statement that records the ``prediction_id``. Transient errors send an item back to
``PENDING`` with ``next_attempt_at`` (so retries are metered and fair like new work);
permanent ones, and the last attempt, end in ``FAILED`` (the dead letter).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.errors import PipelineError

TRANSITIONS: dict[str, frozenset[str]] = {
    "PENDING": frozenset({"QUEUED", "FAILED", "CANCELED"}),
    "QUEUED": frozenset({"SUBMITTING", "FAILED", "PENDING", "CANCELED"}),
    "SUBMITTING": frozenset({"PROCESSING", "PENDING", "QUEUED", "FAILED", "CANCELED"}),
    "PROCESSING": frozenset({"DONE", "FAILED", "PENDING", "CANCELED"}),
    "DONE": frozenset(),
    "FAILED": frozenset({"PENDING"}),  # ops' retry of a dead letter
    "CANCELED": frozenset(),
}
FINAL = frozenset({"DONE", "FAILED", "CANCELED"})


def can_transition(current: str, target: str) -> bool:
    """Whether ``current → target`` is a transition of the lifecycle."""
    return target in TRANSITIONS.get(current, frozenset())


def backoff_delay(
    attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with "equal jitter", in seconds.

    ``d = min(cap, base * 2**(attempt-1))``; the result is uniform in ``[d/2, d]`` (AWS
    Architecture Blog, "Exponential Backoff And Jitter", 2015): spread out, never near zero.

    Args:
        attempt: 1 for the first retry.
        base: delay of the first retry, seconds.
        cap: upper bound, seconds.
        rand: source of uniform [0, 1) numbers (injectable for tests).
    """
    ceiling = float(min(cap, base * 2 ** max(0, attempt - 1)))
    return ceiling / 2 + rand() * ceiling / 2


def poll_delay(poll_count: int, *, initial: float, maximum: float) -> float:
    """Seconds until the next poll of a prediction: ``initial * 1.5**poll_count``, capped.

    Replicate's image models finish in seconds to a minute; polling soon and then backing off
    keeps read traffic low for the slow ones.
    """
    return float(min(maximum, initial * 1.5 ** max(0, poll_count)))


@dataclass(frozen=True)
class RetryLater:
    """Try again after ``delay`` seconds (our decision, not :class:`dramatiq.Retry`)."""

    delay: float
    code: str
    message: str


@dataclass(frozen=True)
class Fail:
    """Give up: the item ends FAILED with ``code``."""

    code: str
    message: str


def decide(
    error: PipelineError,
    attempts: int,
    *,
    max_attempts: int,
    base: float,
    cap: float,
    rand: Callable[[], float] = random.random,
) -> RetryLater | Fail:
    """What to do with an item whose attempt number ``attempts`` raised ``error``.

    Transient errors retry with backoff until ``max_attempts`` attempts were made; permanent
    errors fail at once. The last transient error's code stays on the FAILED row.
    """
    if error.transient and attempts < max_attempts:
        return RetryLater(
            backoff_delay(attempts, base=base, cap=cap, rand=rand), error.code, error.message
        )
    if error.transient:
        return Fail(error.code, f"{error.message} (gave up after {attempts} attempts)")
    return Fail(error.code, error.message)
