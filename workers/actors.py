"""The dramatiq actors: thin shells around :mod:`workers.creation` and :mod:`workers.polling`.

Three actors on three queues (:mod:`pipeline.taskqueue`): creation, polling, and the finish of
an item with a verified webhook's prediction (the polling service, without the GET).

Run with ``imageopt worker`` (dramatiq's CLI on this module, via :mod:`workers.launch`).
Settings are read once, here, at import in each worker process; services are built lazily
after dramatiq forks.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dramatiq
import structlog

from pipeline.config import Settings
from pipeline.errors import DatabaseUnavailable
from pipeline.logging import setup_logging
from pipeline.presence import PRESENCE_INTERVAL_SECONDS
from pipeline.provider import Prediction
from pipeline.taskqueue import (
    CREATE_ACTOR,
    CREATE_QUEUE,
    POLL_ACTOR,
    POLL_QUEUE,
    WEBHOOK_ACTOR,
    WEBHOOK_QUEUE,
    TaskQueue,
    build_broker,
    latency_queues,
)
from pipeline.wiring import redis_client
from workers.health import BeatFile
from workers.heartbeat import HeartbeatOutput, WorkerHeartbeat
from workers.presence import PresenceKey
from workers.prometheus import WorkerPrometheus
from workers.services import WorkerServices, left_to_the_rescuer_when_redis_is_gone, worker_services

settings = Settings()
setup_logging(settings, process="worker")  # again after the fork: plain `dramatiq` set its own
broker = build_broker(
    settings.redis_url,
    settings.redis_namespace,
    fetch_wait_ms=dict.fromkeys(
        latency_queues(webhooks=bool(settings.replicate_webhook_url)),
        settings.worker_fetch_wait_ms,
    ),
)
heartbeat: list[HeartbeatOutput] = [PresenceKey(redis_client(settings), settings.redis_namespace)]
if settings.worker_metrics_port and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    broker.add_middleware(WorkerPrometheus())  # set up by `imageopt worker` (docs/OBSERVABILITY.md)
    heartbeat.append(BeatFile(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])))  # the group's /livez
broker.add_middleware(
    WorkerHeartbeat(heartbeat, min(settings.worker_liveness_seconds / 4, PRESENCE_INTERVAL_SECONDS))
)
dramatiq.set_broker(broker)
queue = TaskQueue(broker)
log = structlog.get_logger(__name__)

EARLY_WEBHOOK_TRIES = 8
"""Looks at a webhook that overtook its create's answer (1 s doubling, 30 s at most)."""
WEBHOOK_PRIORITY = -10
"""dramatiq priority of the webhook actor (lower runs first; the others have the default 0):
inside a worker that consumes both queues, a webhook's message goes before prefetched polls."""

_services: WorkerServices | None = None
_lock = threading.Lock()


def services() -> WorkerServices:
    """This process's services, built on first use (one pool per process, shared by threads)."""
    global _services  # noqa: PLW0603 - one lazily built set of services per worker process
    with _lock:
        if _services is None:
            _services = worker_services(settings, queue, pool_size=settings.worker_threads + 2)
        return _services


@contextmanager
def retried_while_database_unavailable(item_id: int) -> Iterator[None]:
    """Turn :class:`DatabaseUnavailable` into a :class:`dramatiq.Retry` (backoff, no traceback).

    A Postgres restart is expected operations, not a bug: the message is retried with the
    actor's backoff, and whatever the retries miss the rescuer recovers from Postgres.
    """
    try:
        yield
    except DatabaseUnavailable as exc:
        log.warning("database_unavailable", item_id=item_id, error=exc.message)
        raise dramatiq.Retry(exc.message) from exc


# Creation: fetch + store + token + POST. Transient failures go back to PENDING through
# Postgres (metered again); dramatiq retries only when Postgres itself is unreachable.
@dramatiq.actor(
    actor_name=CREATE_ACTOR,
    queue_name=CREATE_QUEUE,
    max_retries=5,
    min_backoff=1_000,
    max_backoff=60_000,
    time_limit=180_000,
)
def create_prediction(item_id: int) -> None:
    """Create the prediction for one QUEUED item (:class:`workers.creation.CreationService`)."""
    with retried_while_database_unavailable(item_id):
        outcome = services().creation.run(item_id)
    log.debug("creation_outcome", item_id=item_id, action=outcome.action)


@dramatiq.actor(
    actor_name=POLL_ACTOR,
    queue_name=POLL_QUEUE,
    max_retries=5,
    min_backoff=1_000,
    max_backoff=60_000,
    time_limit=180_000,
)
def poll_prediction(item_id: int, prediction: dict[str, Any] | None = None, tries: int = 0) -> None:
    """Poll one PROCESSING item; schedule the next poll when it is still running.

    ``prediction`` and ``tries``: a webhook message that an api of the previous release put on
    the polling queue during a rolling upgrade; it is finished as :func:`finish_prediction`
    would."""
    if prediction is not None:
        finish_prediction.fn(item_id, prediction, tries)
        return
    with retried_while_database_unavailable(item_id):
        outcome = services().polling.run(item_id)
    if outcome.action == "again":
        with left_to_the_rescuer_when_redis_is_gone(item_id):
            queue.send_poll(item_id, outcome.delay)


@dramatiq.actor(
    actor_name=WEBHOOK_ACTOR,
    queue_name=WEBHOOK_QUEUE,
    priority=WEBHOOK_PRIORITY,
    max_retries=5,
    min_backoff=1_000,
    max_backoff=60_000,
    time_limit=180_000,
)
def finish_prediction(item_id: int, prediction: dict[str, Any], tries: int = 0) -> None:
    """Finish one item with the final prediction a verified webhook brought (sent by the api).

    The polling service's path without the GET: conditional UPDATEs, so a webhook and a poll
    racing give one result. One whose item is still SUBMITTING (the webhook overtook the
    create's answer) is looked at again with backoff, up to :data:`EARLY_WEBHOOK_TRIES` times;
    after that the scheduler's rescuer polls the item (``Rescuer.poll_overdue_webhooks``).
    """
    known = Prediction.from_json(prediction)
    with retried_while_database_unavailable(item_id):
        outcome = services().polling.run(item_id, known=known)
    if outcome.action == "again" and tries < EARLY_WEBHOOK_TRIES:
        delay = min(outcome.delay * 2**tries, 30.0)
        with left_to_the_rescuer_when_redis_is_gone(item_id):
            queue.send_webhook(item_id, prediction, delay, tries=tries + 1)
