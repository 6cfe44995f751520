"""Fault scenario: provider webhooks lost, duplicated, delayed, corrupted, arriving before the
create's answer, forged and replayed.

One pipeline with webhooks on (an ``imageopt api`` process receives them; no poll message is
sent per item: the scheduler's rescuer polls an item whose webhook has not come 3 s after the
expected runtime, and its older scan of items not polled for a while is pushed out to 60 s, so
that only the webhook scan can end a lost webhook's item in time) runs each webhook fault of
the emulator in turn on fresh items; then every finished item gets a forged webhook (another
secret) and a replayed one (the right secret, a timestamp 10 minutes old), both saying the
prediction failed. Every item must end DONE with one prediction, whatever happened to its
webhook, and no forgery is accepted.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from devstack.processes import free_port
from emulator.config import EmulatorConfig
from pipeline.webhooks import new_secret, signed_headers
from tests.faults.conftest import REPEATS, SEED, FaultStack, Outcome, assert_sound, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]
CMD = "IMAGEOPT_FAULT_REPEATS=N .venv/bin/pytest tests/faults -k webhook_faults"
SECRET = new_secret()

# (name, emulator knobs while the scenario's items run, seconds they hold (None: until final))
FAULTS: list[tuple[str, dict[str, Any], float | None]] = [
    ("delivered", {}, None),
    ("lost", {"webhook_fault": "drop", "webhook_fault_rate": 1.0}, None),
    ("duplicated", {"webhook_fault": "duplicate", "webhook_fault_rate": 1.0}, None),
    ("delayed", {"webhook_fault": "delay", "webhook_fault_rate": 1.0}, None),
    ("corrupted", {"webhook_fault": "corrupt", "webhook_fault_rate": 1.0}, None),
    # the create's answer comes 1 s after the prediction was made: its webhook overtakes it
    ("before the create's answer", {"slow_response_seconds": 1.0}, 1.5),
]
NORMAL = {"webhook_fault": "drop", "webhook_fault_rate": 0.0, "slow_response_seconds": 0.0}


def _forge(api: str, item_id: int, prediction_id: str, *, secret: str, age: float) -> int:
    body = json.dumps(
        {"id": prediction_id, "status": "failed", "error": "forged", "output": None}
    ).encode()
    when = datetime.now(UTC) - timedelta(seconds=age)
    headers = signed_headers(secret, f"msg_forged_{item_id}_{age}", body, now=when)
    headers["content-type"] = "application/json"
    url = f"{api}/api/webhooks/replicate?item={item_id}"
    return httpx.post(url, content=body, headers=headers, timeout=5).status_code


@pytest.mark.parametrize("run", range(REPEATS))
def test_webhook_faults_end_every_item_done_once_and_no_forgery_is_accepted(
    make_stack: Any, run: int
) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    stack: FaultStack = make_stack(
        extra_env={
            "IMAGEOPT_WEBHOOK_URL": f"{api}/api/webhooks/replicate",
            "IMAGEOPT_WEBHOOK_POLL_GRACE_SECONDS": "3",
            "IMAGEOPT_RESCUE_PROCESSING_SECONDS": "60",
            "IMAGEOPT_API_RATE_PER_MINUTE": "100000",
            "IMAGEOPT_API_READ_RATE_PER_MINUTE": "100000",
        },
        emulator=EmulatorConfig(
            latency_min=0.05,
            latency_max=0.3,
            rng_seed=SEED,
            webhook_secret=SECRET,
            webhook_retry_seconds=0.2,
            webhook_delay_seconds=1.0,
        ),
    )
    stack.group.start("api", "api", "--host", "127.0.0.1", "--port", str(port))
    wait_until(lambda: _answers(f"{api}/healthz"), 20, "the api did not start", interval=0.2)
    stack.start_scheduler()
    stack.start_workers("workers", threads=4)
    failures: list[str] = []
    for name, knobs, hold in FAULTS:
        stack.emulator(**knobs)
        ids = stack.insert(stack.good(3), store=f"store-{name.split()[0]}")
        if hold is not None:
            time.sleep(hold)
            stack.emulator(**NORMAL)
        if not stack.wait_final(40, ids):
            failures.append(f"{name}: not final {stack.statuses()}")
        stack.emulator(**NORMAL)
    with stack.connect() as conn:
        rows = conn.execute(
            "SELECT id, prediction_id FROM image_optimization_items WHERE prediction_id IS NOT NULL"
        ).fetchall()
    forged = [_forge(api, int(i), str(p), secret=new_secret(), age=0) for i, p in rows]
    replayed = [_forge(api, int(i), str(p), secret=SECRET, age=600) for i, p in rows]
    time.sleep(1.0)  # anything wrongly queued would have been handled by now
    api_log = (stack.log_dir / "api.log").read_text(errors="replace")
    scheduler_log = (stack.log_dir / "scheduler.log").read_text(errors="replace")
    out: Outcome = stack.outcome(timeout=40)
    assert_sound(
        stack,
        out,
        scenario="webhooks lost, duplicated, delayed, corrupted, early, forged, replayed",
        expected=dict.fromkeys(out.rows, ("DONE", None)),
        command=CMD,
    )
    assert not failures, failures
    assert forged == [401] * len(rows)
    assert replayed == [401] * len(rows)
    assert api_log.count('"webhook_accepted"') >= 3  # the webhook path itself was used
    with psycopg.connect(stack.database_url, options=f"-c search_path={stack.schema}") as conn:
        never_polled = conn.execute(
            "SELECT count(*) FROM image_optimization_items WHERE poll_count = 0"
        ).fetchone()
    assert never_polled is not None
    assert never_polled[0] >= 3  # finished by webhook, without a GET
    # the lost and the corrupted (given up) webhooks' items were polled by the rescuer's scan
    assert _rescued_webhooks(scheduler_log) >= 6


def _rescued_webhooks(log: str) -> int:
    """Items the scheduler's rescuer polled because their webhook was overdue (its log)."""
    total = 0
    for line in log.splitlines():
        if '"rescuer_recovered"' in line:
            total += int(json.loads(line).get("webhook_overdue", 0))
    return total


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
