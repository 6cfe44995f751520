"""The worker process's services, built once per process (after dramatiq's fork).

:func:`worker_services` wires the creation and polling services from
:class:`pipeline.config.Settings`, using the core builders in :mod:`pipeline.wiring`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from pipeline.config import Settings
from pipeline.db import create_pool
from pipeline.fetch import SourceFetcher
from pipeline.pollhints import RuntimeHints
from pipeline.prediction_errors import FailureClassifier
from pipeline.provider import MAX_SYNC_WAIT_SECONDS, Prediction
from pipeline.repository import Repository
from pipeline.ssrf import AddressPolicy
from pipeline.taskqueue import TaskQueue
from pipeline.wiring import (
    allowlist,
    arrival_guard,
    limiters,
    provider_client,
    redis_client,
    storage,
)
from workers.creation import CreationPolicy, CreationService
from workers.polling import PollingPolicy, PollingService

log = structlog.get_logger(__name__)


@contextmanager
def left_to_the_rescuer_when_redis_is_gone(item_id: int) -> Iterator[None]:
    """Sending the item's next message failed because Redis is unreachable: log it and end.

    The row stays PROCESSING, so the scheduler's rescuer polls it again once it has not been
    polled for ``IMAGEOPT_RESCUE_PROCESSING_SECONDS`` (or its webhook is overdue); raising
    instead would make dramatiq retry a create or poll that was done (and the retry needs
    Redis too).
    """
    try:
        yield
    except redis.RedisError as exc:
        log.warning("poll_message_not_sent", item_id=item_id, error=type(exc).__name__)


@dataclass
class WorkerServices:
    """Everything a worker process needs, built once per process (after the fork)."""

    repo: Repository
    queue: TaskQueue
    creation: CreationService
    polling: PollingService
    closers: list[Any]

    def close(self) -> None:
        for closer in self.closers:
            closer.close()


def worker_services(settings: Settings, queue: TaskQueue, pool_size: int) -> WorkerServices:
    """Build the creation and polling services for one worker process.

    Args:
        settings: process settings.
        queue: sender for follow-up messages (the poll after a submission).
        pool_size: Postgres connections (one per worker thread, plus a spare).
    """
    pool = create_pool(settings.database_url, settings.db_schema, max_size=pool_size, name="worker")
    repo = Repository(pool)
    client = redis_client(settings)
    arrivals = arrival_guard(settings, client)
    create_limiter, read_limiter = limiters(settings, client, arrivals)
    store = storage(settings)
    provider = provider_client(settings)
    fetcher = SourceFetcher(
        max_bytes=settings.max_input_bytes,
        timeout=settings.fetch_timeout_seconds,
        max_redirects=settings.fetch_max_redirects,
        policy=AddressPolicy.from_setting(settings.source_allowlist),
    )
    hints = RuntimeHints(
        client,
        settings.redis_namespace,
        initial=settings.poll_initial_delay_seconds,
        maximum=settings.poll_max_delay_seconds,
    )

    def after_create(item_id: int, model: str, prediction: Prediction) -> None:
        delay = polling.after_create(item_id, model, prediction)
        if delay is None:
            return
        with left_to_the_rescuer_when_redis_is_gone(item_id):
            queue.send_poll(item_id, delay)

    creation = CreationService(
        repo=repo,
        storage=store,
        fetcher=fetcher,
        provider=provider,
        create_limiter=create_limiter,
        allowlist=allowlist(settings),
        policy=CreationPolicy(
            max_attempts=settings.max_attempts,
            backoff_base=settings.backoff_base_seconds,
            backoff_cap=settings.backoff_max_seconds,
            acquire_timeout=settings.rate_limit_acquire_timeout_seconds,
            default_retry_after=settings.default_retry_after_seconds,
            max_input_bytes=settings.max_input_bytes,
            max_input_pixels=settings.max_input_pixels,
            sync_wait_seconds=sync_wait_seconds(settings),
            webhook_url=settings.replicate_webhook_url,
        ),
        on_submitted=after_create,
        on_created=(
            (lambda grant, created: arrivals.record(create_limiter, grant, created))
            if arrivals is not None
            else None
        ),
    )
    polling = PollingService(
        repo=repo,
        storage=store,
        provider=provider,
        read_limiter=read_limiter,
        on_runtime=hints.observe if settings.adaptive_polling else None,
        first_delay=hints.first_delay if settings.adaptive_polling else None,
        policy=PollingPolicy(
            initial_delay=settings.poll_initial_delay_seconds,
            max_delay=settings.poll_max_delay_seconds,
            acquire_timeout=settings.rate_limit_acquire_timeout_seconds,
            max_output_bytes=settings.max_output_bytes,
            max_output_pixels=settings.max_output_pixels,
            webhooks=bool(settings.replicate_webhook_url),
            max_attempts=settings.max_attempts,
            backoff_base=settings.backoff_base_seconds,
            backoff_max=settings.backoff_max_seconds,
            failures=FailureClassifier(settings.input_fetch_error_pattern),
        ),
    )

    return WorkerServices(repo, queue, creation, polling, [fetcher, provider, pool, client])


def sync_wait_seconds(settings: Settings) -> int:
    """``REPLICATE_MAX_WAIT_MS`` as the ``Prefer: wait=N`` of creates: whole seconds, rounded
    up, at most Replicate's 60; 0 keeps async mode."""
    if settings.replicate_max_wait_ms <= 0:
        return 0
    return min(MAX_SYNC_WAIT_SECONDS, math.ceil(settings.replicate_max_wait_ms / 1000))
