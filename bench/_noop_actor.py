"""A no-op dramatiq actor on the pipeline's broker set-up: the ceiling the broker allows.

Run by :mod:`bench.bench_e2e` as ``python -m dramatiq bench._noop_actor --queues bench-noop``
with ``REDIS_URL`` and ``IMAGEOPT_REDIS_NAMESPACE`` set; the actor does nothing at all.
"""

from __future__ import annotations

import os

import dramatiq

from pipeline.taskqueue import build_broker

NOOP_QUEUE = "bench-noop"
NOOP_ACTOR = "bench_noop"

broker = build_broker(os.environ["REDIS_URL"], os.environ["IMAGEOPT_REDIS_NAMESPACE"])
broker.declare_queue(NOOP_QUEUE)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name=NOOP_ACTOR, queue_name=NOOP_QUEUE, max_retries=0)
def bench_noop(item_id: int) -> None:
    """Do nothing with one message (same argument shape as the pipeline's actors)."""
    del item_id
