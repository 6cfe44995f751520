"""The emulator's reading of Replicate's ``Prefer: wait`` header (sync-mode creates)."""

from __future__ import annotations

import pytest

from emulator.server import MAX_PREFER_WAIT_SECONDS, _prefer_wait


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("", 0.0),
        ("respond-async", 0.0),
        ("wait", float(MAX_PREFER_WAIT_SECONDS)),  # bare: the longest Replicate allows
        ("wait=5", 5.0),
        ("wait=0", 0.0),
        ("wait=600", float(MAX_PREFER_WAIT_SECONDS)),
        ("wait=-3", 0.0),
        ("wait=soon", 0.0),
        ("respond-async, Wait = 7", 7.0),
    ],
)
def test_prefer_wait_seconds(header: str, seconds: float) -> None:
    assert _prefer_wait(header) == seconds
