"""The two dramatiq queues, seen from the side that sends: creation and polling messages.

Messages carry only an item id: Postgres holds the truth, a message is a hint to look at that
item. Senders build ``dramatiq.Message`` objects directly, so the scheduler does not import the
worker's actors (and their heavy dependencies).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from pipeline.broker import ResilientRedisBroker

CREATE_QUEUE = "imageopt-create"
POLL_QUEUE = "imageopt-poll"
CREATE_ACTOR = "create_prediction"
POLL_ACTOR = "poll_prediction"


def build_broker(redis_url: str, namespace: str) -> RedisBroker:
    """A Redis broker whose keys live under ``{namespace}-dramatiq``, both queues declared."""
    # dramatiq's RedisBroker.__init__ carries no annotations.
    broker = ResilientRedisBroker(url=redis_url, namespace=f"{namespace}-dramatiq")  # type: ignore[no-untyped-call]
    broker.declare_queue(CREATE_QUEUE)
    broker.declare_queue(POLL_QUEUE)
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

    def send_poll(
        self,
        item_id: int,
        delay_seconds: float = 0.0,
        *,
        prediction: dict[str, Any] | None = None,
        tries: int = 0,
    ) -> None:
        """Enqueue a poll of ``item_id`` after ``delay_seconds``.

        Args:
            item_id: the item.
            delay_seconds: wait before the poll, seconds.
            prediction: a final prediction a verified webhook brought (its JSON, trimmed by
                :func:`webhook_payload`); the polling worker finishes the item with it
                instead of a GET.
            tries: how often this webhook message was looked at already (its item was
                still SUBMITTING).
        """
        delay_ms = int(delay_seconds * 1000)
        kwargs: dict[str, Any] = {}
        if prediction is not None:
            kwargs = {"prediction": prediction, "tries": tries}
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=POLL_QUEUE,
            actor_name=POLL_ACTOR,
            args=(int(item_id),),
            kwargs=kwargs,
            options={},
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
        for queue in (CREATE_QUEUE, POLL_QUEUE):
            ready = client.llen(f"{namespace}:{queue}")
            delayed = client.llen(f"{namespace}:{queue}.DQ")
            lengths[queue] = int(ready) + int(delayed)
        return lengths

    def _redis(self) -> tuple[Any, str]:
        """The broker's Redis client (``None`` for a broker without one) and key namespace."""
        return getattr(self._broker, "client", None), getattr(self._broker, "namespace", "dramatiq")
