"""Lifecycle rules: retry or fail, backoff and poll delays (pure logic)."""

from __future__ import annotations

import pytest

from pipeline.errors import ImageTruncated, ProviderUnavailable, SourceHttpError
from pipeline.lifecycle import (
    FINAL,
    TRANSITIONS,
    Fail,
    RetryLater,
    backoff_delay,
    can_transition,
    decide,
    poll_delay,
)


def test_transient_errors_retry_until_the_last_attempt_then_fail_with_their_code() -> None:
    error = ProviderUnavailable("503 from provider")
    first = decide(error, 1, max_attempts=3, base=2, cap=60, rand=lambda: 0.0)
    assert first == RetryLater(1.0, "provider_unavailable", "503 from provider")
    last = decide(error, 3, max_attempts=3, base=2, cap=60)
    assert isinstance(last, Fail)
    assert last.code == "provider_unavailable"


def test_permanent_errors_fail_at_once() -> None:
    assert decide(ImageTruncated("cut"), 1, max_attempts=5, base=1, cap=10) == Fail(
        "image_truncated", "cut"
    )


def test_http_5xx_from_a_source_is_transient_and_4xx_permanent() -> None:
    assert SourceHttpError("x", status_code=503).transient
    assert not SourceHttpError("x", status_code=404).transient


@pytest.mark.parametrize("attempt", [1, 2, 5, 30])
def test_backoff_is_between_half_and_all_of_the_capped_exponential(attempt: int) -> None:
    ceiling = min(300.0, 2.0 * 2 ** (attempt - 1))
    assert backoff_delay(attempt, base=2, cap=300, rand=lambda: 0.0) == ceiling / 2
    assert backoff_delay(attempt, base=2, cap=300, rand=lambda: 0.999999) == pytest.approx(
        ceiling, rel=1e-5
    )


def test_poll_delay_grows_and_is_capped() -> None:
    delays = [poll_delay(n, initial=1.0, maximum=30.0) for n in range(12)]
    assert delays[0] == 1.0
    assert delays == sorted(delays)
    assert delays[-1] == 30.0


def test_final_statuses_have_no_way_out_except_the_retry_of_a_dead_letter() -> None:
    assert TRANSITIONS["DONE"] == frozenset()
    assert TRANSITIONS["CANCELED"] == frozenset()
    assert can_transition("FAILED", "PENDING")
    assert not can_transition("DONE", "PENDING")
    assert "DONE" in FINAL
