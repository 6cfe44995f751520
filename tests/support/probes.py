"""What the liveness tests do with every process kind: wait for ``/livez`` to answer 200, freeze
the work loop (each test its own way), wait for ``/livez`` to fail within the threshold while
``/metrics`` (another thread or process) still answers, let the loop go, wait for recovery."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

MARGIN_SECONDS = 15.0
"""How long past a threshold a test waits for a state before it fails (slow shared CI)."""


def status(url: str) -> int | None:
    """The status of ``GET url``, or None when nothing answered within 1 s."""
    try:
        return httpx.get(url, timeout=1.0).status_code
    except httpx.HTTPError:
        return None


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` every 0.2 s; the test fails with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.2)


def wait_live(base: str, timeout: float, what: str) -> None:
    """Wait until ``base/livez`` answers 200."""
    wait_for(lambda: status(f"{base}/livez") == 200, timeout, what)


def wait_failing(base: str, threshold: float, what: str) -> dict[str, Any]:
    """Wait (``threshold`` + :data:`MARGIN_SECONDS`) until ``base/livez`` answers 503, check
    that ``base/metrics`` still answers 200 (it cannot tell), and return the 503's JSON body."""
    wait_for(lambda: status(f"{base}/livez") == 503, threshold + MARGIN_SECONDS, what)
    assert status(f"{base}/metrics") == 200
    body: dict[str, Any] = httpx.get(f"{base}/livez", timeout=2).json()
    return body
