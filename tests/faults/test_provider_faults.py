"""Fault scenario 5: the provider misbehaves (emulator fault knobs, changed at runtime).

One pipeline runs every fault in turn, each on a fresh pair of items; the scheduler is restarted
with a short maximum age for the last one (predictions that never finish end ``timeout``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.faults.conftest import REPEATS, FaultStack, Outcome, assert_sound

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]
CMD = "IMAGEOPT_FAULT_REPEATS=N .venv/bin/pytest tests/faults -k provider_faults"

# (name, emulator knobs, seconds the knobs stay before the normal config returns (None: until
# the items are final), expected (status, error_code) of every item; None: DONE, or FAILED
# with one of the transient codes after the last attempt).
FAULTS: list[tuple[str, dict[str, Any], float | None, tuple[str, str | None] | None]] = [
    ("5xx on every request", {"http_5xx_rate": 1.0}, None, ("FAILED", "provider_unavailable")),
    ("5xx on 30 % of requests", {"http_5xx_rate": 0.3}, None, None),
    ("answers slower than the client timeout", {"slow_response_seconds": 3.0}, 2.5, ("DONE", None)),
    ("429 storm", {"create_rpm": 1, "read_rpm": 5, "window_seconds": 1.0}, 3.0, ("DONE", None)),
    ("malformed JSON on half the answers", {"malformed_json_rate": 0.5}, 3.0, ("DONE", None)),
    ("predictions that fail", {"failure_rate": 1.0}, None, ("FAILED", "prediction_failed")),
    ("output not an image", {"output_mode": "not_image"}, None, ("FAILED", "output_invalid")),
    ("truncated output image", {"output_mode": "truncated"}, None, ("FAILED", "output_invalid")),
    ("decompression bomb output", {"output_mode": "bomb"}, None, ("FAILED", "output_invalid")),
    ("huge output", {"output_mode": "huge"}, None, ("FAILED", "output_invalid")),
]
NORMAL = {
    "http_5xx_rate": 0.0,
    "slow_response_seconds": 0.0,
    "create_rpm": 600,
    "read_rpm": 3000,
    "window_seconds": 60.0,
    "malformed_json_rate": 0.0,
    "failure_rate": 0.0,
    "never_finish_rate": 0.0,
    "output_mode": "normal",
}


@pytest.mark.parametrize("run", range(REPEATS))
def test_provider_faults_end_every_item_done_or_failed_with_its_code_and_one_prediction(
    make_stack: Any, run: int
) -> None:
    stack: FaultStack = make_stack(
        extra_env={
            "IMAGEOPT_MAX_OUTPUT_BYTES": "8000000",
            "IMAGEOPT_RESCUE_SUBMITTING_SECONDS": "5",
        }
    )
    stack.start_scheduler()
    stack.start_workers("workers", threads=4)
    expected: dict[int, tuple[str, str | None]] = {}
    failures: list[str] = []
    for name, knobs, hold, want in FAULTS:
        stack.emulator(**knobs)
        ids = stack.insert(stack.good(2), store=f"store-{len(expected)}")
        if hold is not None:
            time.sleep(hold)
            stack.emulator(**NORMAL)
        if not stack.wait_final(40, ids):
            failures.append(f"{name}: not final {stack.statuses()}")
        stack.emulator(**NORMAL)
        if want is not None:
            expected.update(dict.fromkeys(ids, want))
    # Never finishing: only the maximum age ends it (canceled at the provider, FAILED timeout).
    stack.group.stop("scheduler")
    stack.start_scheduler(IMAGEOPT_ITEM_MAX_AGE_SECONDS="6")
    stack.emulator(never_finish_rate=1.0)
    ids = stack.insert(stack.good(2), store="store-never")
    expected.update(dict.fromkeys(ids, ("FAILED", "timeout")))
    out: Outcome = stack.outcome(timeout=40)
    assert_sound(
        stack,
        out,
        scenario="5. provider faults (10 kinds + never finishing)",
        expected=expected,
        allowed_codes=("provider_unavailable",),
        command=CMD,
    )
    assert not failures, failures
    assert out.predictions.get(ids[0]) == 1
