"""A network cut between the provider and our object storage while it downloads inputs.

The provider fails such a prediction (Replicate: status ``failed`` with a download error; the
emulator: "input image could not be fetched"). The model never ran, so the pipeline gives
the item a new prediction instead of ending it FAILED for good (docs/LIFECYCLE.md). Found by
the soak, where a 4 s cut had failed 8 items permanently.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from devstack.tcpproxy import TcpProxy
from emulator.config import EmulatorConfig
from tests.faults.conftest import SEED, FaultStack

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]
ITEMS = 4


def test_a_cut_while_the_provider_fetches_inputs_costs_one_new_prediction_not_the_items(
    make_stack: Any, s3_settings: dict[str, str]
) -> None:
    upstream = urlsplit(f"//{s3_settings['S3_ENDPOINT'].split('://')[-1]}")
    proxy = TcpProxy(upstream.hostname or "127.0.0.1", upstream.port or 80).start()
    try:
        stack: FaultStack = make_stack(
            # every process, and so every presigned input URL, reaches S3 through the proxy
            extra_env={"S3_ENDPOINT": proxy.address, "IMAGEOPT_MAX_ATTEMPTS": "4"},
            # the provider starts the image work (and its input download) 3-3.5 s after the
            # create: time to cut the link while every item waits there
            emulator=EmulatorConfig(
                latency_min=3.0, latency_max=3.5, fetch_timeout_seconds=1.0, rng_seed=SEED
            ),
        )
        stack.start_scheduler()
        stack.start_workers("workers", threads=4)
        ids = stack.insert(stack.good(ITEMS))
        stack.wait_status("PROCESSING", ITEMS, timeout=30)
        with proxy.cut_for():
            time.sleep(4.5)  # past every item's download and its 1 s timeout
        out = stack.outcome(timeout=60)
    finally:
        proxy.close()
    assert not out.stuck, out.codes()
    assert not out.lost, out.lost
    assert not out.deaths, out.deaths
    assert not out.token_leaks, out.token_leaks
    assert not out.tracebacks, "\n\n".join(out.tracebacks[:3])
    assert {i: out.rows[i]["status"] for i in ids} == dict.fromkeys(ids, "DONE"), out.codes()
    # one failed prediction (the cut) and one that succeeded, per item; no more
    assert {i: out.predictions.get(i) for i in ids} == dict.fromkeys(ids, 2), out.predictions
    logs = "".join(p.read_text(errors="replace") for p in stack.log_dir.glob("*.log"))
    assert logs.count('"prediction_retry"') >= ITEMS
