"""The one capped read: a declared or streamed body over the cap is the caller's error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.capped_read import declared_length, read_capped


class TooLarge(Exception):
    def __init__(self, declared: int | None) -> None:
        super().__init__(declared)
        self.declared = declared


def _never_read() -> Iterator[bytes]:
    raise AssertionError("the body was read although its declared length is over the cap")
    yield b""  # pragma: no cover


def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    with pytest.raises(TooLarge) as caught:
        read_capped(_never_read(), max_bytes=10, content_length="11", too_large=TooLarge)
    assert caught.value.declared == 11


def test_a_body_that_grows_over_the_cap_is_refused_whatever_it_declared() -> None:
    chunks = iter([b"12345", b"67890", b"1"])
    with pytest.raises(TooLarge) as caught:
        read_capped(chunks, max_bytes=10, content_length="3", too_large=TooLarge)
    assert caught.value.declared is None
    assert next(chunks, None) is None  # stopped at the chunk that crossed the cap


@given(st.lists(st.binary(max_size=8), max_size=8), st.integers(min_value=0, max_value=70))
def test_a_body_within_the_cap_is_returned_whole(chunks: list[bytes], max_bytes: int) -> None:
    body = b"".join(chunks)
    if len(body) <= max_bytes:
        assert read_capped(chunks, max_bytes=max_bytes, content_length=None,
                           too_large=TooLarge) == body  # fmt: skip
    else:
        with pytest.raises(TooLarge):
            read_capped(chunks, max_bytes=max_bytes, content_length=None, too_large=TooLarge)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("0", 0), ("1024", 1024), (None, None), ("", None), ("-1", None), ("1e3", None),
     ("\u00b2", None), ("\u0661\u0662", None)],
)  # fmt: skip
def test_only_ascii_digits_are_a_declared_length(header: str | None, expected: int | None) -> None:
    assert declared_length(header) == expected


def test_a_non_ascii_digit_length_is_ignored_not_a_crash() -> None:
    # str.isdigit() accepts "²", which int() refuses: the header is ignored, the body counted.
    assert read_capped([b"ab"], max_bytes=5, content_length="\u00b2", too_large=TooLarge) == b"ab"
