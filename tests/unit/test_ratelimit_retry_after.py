"""Parsing ``Retry-After`` values (RFC 9110 section 10.2.3): seconds or an HTTP-date."""

from __future__ import annotations

import pytest

from pipeline.ratelimit.retry_after import parse_retry_after

NOW = 1_445_412_470.0  # Wed, 21 Oct 2015 07:27:50 GMT


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), (" 7 ", 7.0), ("0", 0.0), ("1.5", 1.5), ("-3", 0.0), ("-0.5", 0.0)],
)
def test_delay_seconds_are_taken_as_given_and_negatives_become_zero(
    value: str, expected: float
) -> None:
    assert parse_retry_after(value, 10.0, now=NOW) == expected


def test_an_http_date_gives_the_seconds_until_it() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 10.0, now=NOW) == 10.0


def test_the_obsolete_asctime_date_form_is_read_as_gmt() -> None:
    assert parse_retry_after("Wed Oct 21 07:28:00 2015", 10.0, now=NOW) == 10.0


def test_a_date_in_the_past_gives_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", 10.0, now=NOW) == 0.0


@pytest.mark.parametrize(
    "value", [None, "", "   ", "soon", "nan", "inf", "1e400", "Wed, 99 Foo 2015 07:28:00 GMT"]
)
def test_missing_or_garbage_values_give_the_default(value: str | None) -> None:
    assert parse_retry_after(value, 10.0, now=NOW) == 10.0
