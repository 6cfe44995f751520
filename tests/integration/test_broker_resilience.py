"""The queue survives a Redis restart: no worker stops consuming delayed messages for good.

With dramatiq's own ``RedisBroker`` (2.2.1), a Redis restart while a consumer holds delayed
messages ends that consumer thread (``handle_delayed_messages`` raises, then ``close()``'s
``requeue`` raises again outside any handler): the process then never takes another delayed
message, i.e. never another poll. :class:`pipeline.broker.ResilientRedisBroker` keeps it
alive. Real ``redis-server`` of the test's own (restarted, so never the shared one), a real
dramatiq ``Worker`` in this process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest

from devstack.processes import free_port
from pipeline.taskqueue import build_broker
from tests.faults.conftest import PrivateRedis

pytestmark = pytest.mark.integration
DELAYED = 400
"""Delayed messages in flight when Redis dies (their due times spread over 0.2-2.7 s)."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    srv = PrivateRedis(free_port(), tmp_path / "redis")
    srv.start()
    yield srv
    srv.stop()


def test_a_redis_restart_with_delayed_messages_in_hand_stops_no_consumer(
    server: PrivateRedis,
) -> None:
    broker = build_broker(f"redis://127.0.0.1:{server.port}/0", "resilience")
    done: list[int] = []

    @dramatiq.actor(broker=broker, queue_name="imageopt-poll", max_retries=0)
    def record(value: int) -> None:
        done.append(value)

    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        for i in range(DELAYED):
            record.send_with_options(args=(i,), delay=200 + (i * 7) % 2500)
        time.sleep(1.2)  # some due and moved, most still held by the delay consumer
        server.stop()
        time.sleep(2.5)  # every held message falls due while Redis is gone
        server.start()  # empty, as a Redis without persistence comes back
        time.sleep(1.0)
        record.send_with_options(args=(-1,), delay=300)  # a poll message, as sent after a create
        record.send(-2)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not {-1, -2} <= set(done):
            time.sleep(0.1)
        alive = {name: thread.is_alive() for name, thread in worker.consumers.items()}
    finally:
        worker.stop(timeout=2000)
        broker.client.connection_pool.disconnect()
    assert alive["imageopt-poll.DQ"], "the delayed-message consumer ended"
    assert all(alive.values()), alive
    assert {-1, -2} <= set(done), "a message sent after the restart was never processed"
