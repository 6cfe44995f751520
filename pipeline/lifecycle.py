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
from pipeline.statuses import FINAL_ITEM_STATUSES, ItemStatus

_S = ItemStatus
TRANSITIONS: dict[ItemStatus, frozenset[ItemStatus]] = {
    _S.PENDING: frozenset({_S.QUEUED, _S.FAILED, _S.CANCELED}),
    _S.QUEUED: frozenset({_S.SUBMITTING, _S.FAILED, _S.PENDING, _S.CANCELED}),
    _S.SUBMITTING: frozenset({_S.PROCESSING, _S.PENDING, _S.QUEUED, _S.FAILED, _S.CANCELED}),
    _S.PROCESSING: frozenset({_S.DONE, _S.FAILED, _S.PENDING, _S.CANCELED}),
    _S.DONE: frozenset(),
    _S.FAILED: frozenset({_S.PENDING}),  # ops' retry of a dead letter
    _S.CANCELED: frozenset(),
}
"""Every allowed ``from → to`` move of an item; the status-changing UPDATEs of
``sql/queries.sql`` are checked against it (tests/unit/test_sql_transitions.py)."""
FINAL = FINAL_ITEM_STATUSES


def can_transition(current: str, target: str) -> bool:
    """Whether ``current → target`` is a transition of the lifecycle (strings or members)."""
    try:
        return ItemStatus(target) in TRANSITIONS.get(ItemStatus(current), frozenset())
    except ValueError:  # not a status at all
        return False


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
