"""A worker's adaptive behaviour end to end (real Postgres, Redis, S3 server and the emulator
over sockets): the creation and polling services learn the model's runtime and poll new
predictions first at its median instead of after the fixed initial delay; and the creation
service learns the create budget's guard from the arrival jitter of its creates."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker

import pipeline.pollhints
import pipeline.ratelimit.arrivals
import pipeline.ratelimit.jitter
from emulator.config import EmulatorConfig
from pipeline.taskqueue import POLL_QUEUE
from tests.support.worker import put_source, queued_items, services_with_emulator
from workers.services import WorkerServices

pytestmark = pytest.mark.integration

TOKEN = "r8_adaptive-polling-test"
INITIAL = 0.05
LATENCY = (0.4, 0.6)


@pytest.fixture
def services(
    pipeline_env: dict[str, str], poll_broker: StubBroker, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerServices]:
    monkeypatch.setattr(pipeline.pollhints, "CACHE_SECONDS", 0.0)  # read the hint every time
    env = {**pipeline_env, "IMAGEOPT_POLL_INITIAL_DELAY_SECONDS": str(INITIAL)}
    emulator = EmulatorConfig(latency_min=LATENCY[0], latency_max=LATENCY[1], token=TOKEN)
    with services_with_emulator(env, poll_broker, emulator) as (built, _):
        yield built


def _first_poll_delays(broker: StubBroker, since: float) -> list[float]:
    """Seconds between ``since`` and each queued poll's ETA (dramatiq's ``eta`` option, ms)."""
    delayed: Any = broker.queues[f"{POLL_QUEUE}.DQ"]
    delays = []
    while not delayed.empty():
        message = Message.decode(delayed.get_nowait())
        delays.append(message.options["eta"] / 1000 - since)
    return delays


def _source(services: WorkerServices, s3_settings: dict[str, str]) -> str:
    return put_source(services, s3_settings["S3_BUCKET"], "adaptive.jpg")


def test_new_predictions_are_first_polled_at_the_learned_median(
    services: WorkerServices, poll_broker: StubBroker, db_schema: str, s3_settings: dict[str, str]
) -> None:
    source = _source(services, s3_settings)

    # 1. Nothing known: every first poll comes after the fixed initial delay.
    first = queued_items(db_schema, source, 22)
    started = time.time()
    for item_id in first:
        assert services.creation.run(item_id).action == "submitted"
    delays = _first_poll_delays(poll_broker, started)
    assert len(delays) == 22
    assert max(delays) < INITIAL + (time.time() - started) + 0.05

    # 2. The polling service sees them finish and learns the runtime.
    time.sleep(LATENCY[1] + 0.3)
    for item_id in first:
        assert services.polling.run(item_id).action == "done"

    # 3. New predictions are first polled at about the median runtime.
    later = queued_items(db_schema, source, 3)
    started = time.time()
    for item_id in later:
        assert services.creation.run(item_id).action == "submitted"
    delays = _first_poll_delays(poll_broker, started)
    assert len(delays) == 3
    assert all(LATENCY[0] - 0.05 <= d <= LATENCY[1] + (time.time() - started) + 0.5 for d in delays)


def test_creates_are_counted_from_their_arrival_at_the_provider(
    services: WorkerServices,
    db_schema: str,
    s3_settings: dict[str, str],
    redis_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipeline.ratelimit.arrivals, "PUBLISH_SECONDS", 0.0)
    monkeypatch.setattr(pipeline.ratelimit.arrivals, "REFRESH_SECONDS", 0.0)
    limiter = services.creation._limiter
    client = limiter._client
    for item_id in queued_items(db_schema, _source(services, s3_settings), 6):
        assert services.creation.run(item_id).action == "submitted"

    # Every create's offset (emulator created_at - dispatch stamp) reached Redis...
    key = f"{redis_namespace}:ratelimit:{{default:create}}:jitter"
    summaries = [
        pipeline.ratelimit.jitter.JitterSummary.decode(m.decode().split(":", 2)[-1])
        for m in client.zrange(key, 0, -1)
    ]
    assert sum(s.count for s in summaries if s is not None) == 6
    assert all(s is not None and -1.0 < s.low <= s.high < 1.0 for s in summaries)  # one host
    # ...and each log entry was moved to its estimated arrival, never ahead of Redis' clock
    # (test_arrival_guard.py checks the move itself)...
    rows = client.zrange(limiter.log_key, 0, -1, withscores=True)
    entries = [score for member, score in rows if not member.startswith(b"cold:")]
    seconds, micros = client.time()
    assert len(entries) == 6
    assert max(entries) <= seconds * 1e6 + micros
    # ...and the configured guard stays until 200 creates over one window were seen.
    assert limiter._log_window_us() == limiter.budget.window_us + 300_000
