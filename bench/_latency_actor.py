"""A dramatiq actor that records how long each message waited between its send and its start.

Run by :mod:`bench.bench_consumer_wait` as ``python -m dramatiq bench._latency_actor --queues
bench-latency`` with ``REDIS_URL`` and ``IMAGEOPT_REDIS_NAMESPACE`` set; each message's wait,
seconds, is pushed to the Redis list ``{namespace}:bench:waits``.
"""

from __future__ import annotations

import os
import time

import dramatiq
import redis

from pipeline.taskqueue import build_broker

LATENCY_QUEUE = "bench-latency"
LATENCY_ACTOR = "bench_latency"

namespace = os.environ["IMAGEOPT_REDIS_NAMESPACE"]
broker = build_broker(os.environ["REDIS_URL"], namespace)
broker.declare_queue(LATENCY_QUEUE)
dramatiq.set_broker(broker)
client = redis.Redis.from_url(os.environ["REDIS_URL"])


@dramatiq.actor(actor_name=LATENCY_ACTOR, queue_name=LATENCY_QUEUE, max_retries=0)
def bench_latency(sent_at: float) -> None:
    """Record ``now - sent_at`` (one host clock), seconds."""
    client.rpush(f"{namespace}:bench:waits", f"{time.time() - sent_at:.6f}")
