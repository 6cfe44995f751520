"""``TaskQueue`` on the real Redis: which creation messages the broker still holds.

This pins the part of dramatiq's Redis layout that ``pending_create_items`` reads (a message
stays in its queue's ``.msgs`` hash, or the ``.DQ`` one while delayed, until acknowledged), so
a dramatiq upgrade that changes it fails here rather than in a leader takeover."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker

from pipeline.taskqueue import CREATE_ACTOR, CREATE_QUEUE, TaskQueue, build_broker
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(redis_namespace: str) -> Iterator[RedisBroker]:
    built = build_broker(REDIS_URL, redis_namespace)
    yield built
    built.close()


def test_pending_create_items_are_the_unacknowledged_messages(broker: RedisBroker) -> None:
    queue = TaskQueue(broker)
    assert queue.pending_create_items() == Counter()
    queue.send_create([11, 12, 13, 13])  # a duplicate counts twice
    delayed: dramatiq.Message[object] = dramatiq.Message(
        queue_name=CREATE_QUEUE, actor_name=CREATE_ACTOR, args=(14,), kwargs={}, options={}
    )
    broker.enqueue(delayed, delay=60_000)  # as dramatiq's retries do
    assert queue.pending_create_items() == Counter([11, 12, 13, 13, 14])

    consumer = broker.consume(CREATE_QUEUE, prefetch=1, timeout=1000)
    try:
        message = next(m for m in consumer if m is not None)
        got = int(message.args[0])
        pending = Counter([11, 12, 13, 13, 14])
        assert queue.pending_create_items() == pending  # delivered, not yet acked
        consumer.ack(message)
        assert queue.pending_create_items() == pending - Counter([got])
    finally:
        consumer.close()
