"""The dramatiq queues, seen from the side that sends: creation, polling and webhook messages.

Messages carry an item id (a webhook message also the final prediction it brought): Postgres
holds the truth, a message is a hint to look at that item. Senders build ``dramatiq.Message``
objects directly, so the scheduler and the api do not import the worker's actors (and their
heavy dependencies).

Webhook finishes have a queue of their own, so a verified webhook never waits behind the
polls of a busy polling queue: the polling workers consume both (``imageopt worker --queues
poll``), and the webhook actor's higher dramatiq priority puts its messages before prefetched
polls inside a worker too (docs/LIFECYCLE.md, "Webhooks").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name

from pipeline.broker import ResilientRedisBroker

CREATE_QUEUE = "imageopt-create"
POLL_QUEUE = "imageopt-poll"
WEBHOOK_QUEUE = "imageopt-webhook"
QUEUES = (CREATE_QUEUE, POLL_QUEUE, WEBHOOK_QUEUE)
"""Every queue, in the order the broker declares and the stats list them."""
CREATE_ACTOR = "create_prediction"
POLL_ACTOR = "poll_prediction"
WEBHOOK_ACTOR = "finish_prediction"


def latency_queues(*, webhooks: bool) -> tuple[str, ...]:
    """The queues (and delay queues) whose messages someone waits for, in a worker's eyes:
    creations and webhook finishes always; polls and their delay queue (every poll is a
    delayed message, released by its consumer) only when no webhooks come, since with webhooks
    on a poll is the late fallback. The rest (retries' and early webhooks' delay queues) wait
    seconds by design."""
    polls = () if webhooks else (POLL_QUEUE, dq_name(POLL_QUEUE))
    return (CREATE_QUEUE, WEBHOOK_QUEUE, *polls)


BROKER_SOCKET_TIMEOUT_SECONDS = 10.0
"""Longest wait for one answer of the broker's Redis, seconds (as the pipeline's own Redis
client, :func:`pipeline.wiring.redis_client`). dramatiq's broker, built from a URL, has none:
a connection whose packets a partition drops without a reset then waits for ever. Found by the
hour-long faulted scheduler run (docs/RELIABILITY.md, "Scheduler memory"): both schedulers hung
in an enqueue's read and nothing was dispatched again. dramatiq sends no blocking command (it
polls), so no answer takes this long."""


def build_broker(
    redis_url: str,
    namespace: str,
    *,
    fetch_wait_ms: Mapping[str, int] | None = None,
    socket_timeout: float = BROKER_SOCKET_TIMEOUT_SECONDS,
) -> RedisBroker:
    """A Redis broker whose keys live under ``{namespace}-dramatiq``, every queue declared.

    Args:
        redis_url: the broker's Redis.
        namespace: the deployment's Redis namespace.
        fetch_wait_ms: longest idle pause per consumed queue, milliseconds
            (:class:`pipeline.broker.ResilientRedisBroker`); only workers consume.
        socket_timeout: longest wait for a connection or an answer, seconds; past it a call
            raises ``redis.TimeoutError`` (the scheduler stands down and leads again, a worker's
            consumer reconnects).
    """
    client = redis.Redis.from_url(
        redis_url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=30,
    )
    broker = ResilientRedisBroker(
        client=client, namespace=f"{namespace}-dramatiq", fetch_wait_ms=fetch_wait_ms
    )
    for name in QUEUES:
        broker.declare_queue(name)
    return broker


WEBHOOK_FIELDS = ("id", "status", "output", "error", "created_at", "completed_at", "metrics")
"""The prediction fields a webhook message carries (what finishing an item reads)."""


def webhook_payload(prediction: dict[str, Any]) -> dict[str, Any]:
    """``prediction`` without what finishing an item does not read (input, logs, urls)."""
    return {name: prediction[name] for name in WEBHOOK_FIELDS if name in prediction}


class TaskQueue:
    """Sends creation and polling messages.

    Args:
        broker: the dramatiq broker (shared with the actors in worker processes).
    """

    def __init__(self, broker: dramatiq.Broker) -> None:
        self._broker = broker

    def send_create(self, item_ids: Iterable[int]) -> int:
        """Enqueue one creation message per item; returns how many were sent."""
        sent = 0
        for item_id in item_ids:
            self._broker.enqueue(
                dramatiq.Message(
                    queue_name=CREATE_QUEUE,
                    actor_name=CREATE_ACTOR,
                    args=(int(item_id),),
                    kwargs={},
                    options={},
                )
            )
            sent += 1
        return sent

    def send_poll(self, item_id: int, delay_seconds: float = 0.0) -> None:
        """Enqueue a poll of ``item_id`` after ``delay_seconds`` (seconds)."""
        self._send(POLL_QUEUE, POLL_ACTOR, item_id, {}, delay_seconds)

    def send_webhook(
        self, item_id: int, prediction: dict[str, Any], delay_seconds: float = 0.0, tries: int = 0
    ) -> None:
        """Enqueue the finish of ``item_id`` with the final prediction a verified webhook brought.

        Args:
            item_id: the item.
            prediction: the prediction's JSON, trimmed by :func:`webhook_payload`; the polling
                worker finishes the item with it instead of a GET.
            delay_seconds: wait before it is handled, seconds (a webhook that overtook its
                create's answer is looked at again later).
            tries: how often this webhook message was looked at already (its item was still
                SUBMITTING).
        """
        kwargs = {"prediction": prediction, "tries": tries}
        self._send(WEBHOOK_QUEUE, WEBHOOK_ACTOR, item_id, kwargs, delay_seconds)

    def _send(
        self, queue: str, actor: str, item_id: int, kwargs: dict[str, Any], delay_seconds: float
    ) -> None:
        delay_ms = int(delay_seconds * 1000)
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue, actor_name=actor, args=(int(item_id),), kwargs=kwargs, options={}
        )
        self._broker.enqueue(message, delay=delay_ms if delay_ms > 0 else None)

    def pending_create_items(self) -> Counter[int]:
        """Creation messages the broker holds per item id: waiting, delayed (dramatiq's
        retries) or delivered to a worker and not yet acknowledged.

        Reads dramatiq's Redis layout (``dramatiq/brokers/redis/dispatch.lua``): each queue
        keeps message id -> encoded message in the hash ``{namespace}:{queue}.msgs`` (and its
        ``.DQ`` twin for delayed messages) until the message is acknowledged;
        ``tests/integration/test_taskqueue.py`` pins that. The delayed hash is read first, so
        a message moving from it to the queue meanwhile is still seen.

        Returns:
            ``{item_id: messages}``; empty for a broker that is not Redis-backed.

        Raises:
            redis.RedisError: Redis could not be reached.
        """
        client, namespace = self._redis()
        items: Counter[int] = Counter()
        if client is None:
            return items
        for key in (f"{namespace}:{CREATE_QUEUE}.DQ.msgs", f"{namespace}:{CREATE_QUEUE}.msgs"):
            for _, raw in client.hscan_iter(key, count=500):
                args = dramatiq.Message.decode(raw).args
                if args:
                    items[int(args[0])] += 1
        return items

    def queue_lengths(self) -> dict[str, int]:
        """Messages waiting per queue (ready + delayed), as the broker counts them."""
        client, namespace = self._redis()
        if client is None:
            return {}
        lengths: dict[str, int] = {}
        for queue in QUEUES:
            ready = client.llen(f"{namespace}:{queue}")
            delayed = client.llen(f"{namespace}:{queue}.DQ")
            lengths[queue] = int(ready) + int(delayed)
        return lengths

    def _redis(self) -> tuple[Any, str]:
        """The broker's Redis client (``None`` for a broker without one) and key namespace."""
        return getattr(self._broker, "client", None), getattr(self._broker, "namespace", "dramatiq")
