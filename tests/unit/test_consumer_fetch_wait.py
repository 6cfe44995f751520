"""Each consumed queue's longest idle pause: short on the latency path, dramatiq's worker
timeout elsewhere (pure logic: building a broker and a consumer opens no connection)."""

from __future__ import annotations

from dramatiq.common import dq_name

from pipeline.taskqueue import (
    CREATE_QUEUE,
    POLL_QUEUE,
    QUEUES,
    WEBHOOK_QUEUE,
    build_broker,
    latency_queues,
)

UNREACHABLE = "redis://127.0.0.1:1/0"


def test_with_webhooks_polls_and_every_delay_queue_are_off_the_latency_path() -> None:
    assert set(latency_queues(webhooks=True)) == {CREATE_QUEUE, WEBHOOK_QUEUE}


def test_without_webhooks_polls_and_their_delay_queue_are_on_it() -> None:
    assert set(latency_queues(webhooks=False)) == {
        CREATE_QUEUE, WEBHOOK_QUEUE, POLL_QUEUE, dq_name(POLL_QUEUE),
    }  # fmt: skip


def test_a_consumer_pauses_as_long_as_its_queue_says_else_the_worker_timeout() -> None:
    broker = build_broker(
        UNREACHABLE, "t", fetch_wait_ms=dict.fromkeys(latency_queues(webhooks=True), 100)
    )
    timeouts = {
        name: broker.consume(name, prefetch=1, timeout=1000).timeout  # type: ignore[attr-defined]
        for queue in QUEUES
        for name in (queue, dq_name(queue))
    }
    assert timeouts == {
        CREATE_QUEUE: 100, dq_name(CREATE_QUEUE): 1000,
        WEBHOOK_QUEUE: 100, dq_name(WEBHOOK_QUEUE): 1000,
        POLL_QUEUE: 1000, dq_name(POLL_QUEUE): 1000,
    }  # fmt: skip


def test_a_broker_without_a_map_keeps_dramatiqs_timeout_everywhere() -> None:
    broker = build_broker(UNREACHABLE, "t")
    assert broker.consume(WEBHOOK_QUEUE, timeout=1000).timeout == 1000  # type: ignore[attr-defined]
