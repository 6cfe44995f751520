"""Builds the pipeline's collaborators from :class:`pipeline.config.Settings` (entry points only).

Each process kind (scheduler, worker, api, CLI) calls these once and passes the objects down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.creation import CreationPolicy, CreationService
from pipeline.db import create_pool
from pipeline.fetch import SourceFetcher
from pipeline.models import ModelSpec, build_allowlist
from pipeline.pollhints import RuntimeHints
from pipeline.polling import PollingPolicy, PollingService
from pipeline.provider import MAX_SYNC_WAIT_SECONDS, Prediction, ProviderClient
from pipeline.ratelimit import Budget, RateLimiter
from pipeline.ratelimit.arrivals import ArrivalGuard
from pipeline.repository import Repository
from pipeline.ssrf import AddressPolicy
from pipeline.storage import ObjectStorage
from pipeline.taskqueue import TaskQueue, build_broker


def allowlist(settings: Settings) -> dict[str, ModelSpec]:
    return build_allowlist(settings.replicate_default_aspect_ratio)


def redis_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, socket_timeout=10, health_check_interval=30)


def limiters(
    settings: Settings, client: redis.Redis, arrivals: ArrivalGuard | None = None
) -> tuple[RateLimiter, RateLimiter]:
    """The account's ``create`` and ``read`` budgets; ``arrivals`` (when given) sets the create
    budget's guard."""
    return (
        RateLimiter(
            client,
            create_budget(settings),
            namespace=settings.redis_namespace,
            guard=arrivals.current if arrivals is not None else None,
        ),
        RateLimiter(
            client,
            Budget(
                "read",
                settings.read_rpm,
                settings.rate_window_seconds,
                guard_seconds=_scaled_guard(settings),
            ),
            namespace=settings.redis_namespace,
        ),
    )


def _scaled_guard(settings: Settings) -> float:
    # time-scaled windows get a scaled guard: at most 1 % of the window
    return min(settings.rate_guard_seconds, settings.rate_window_seconds / 100)


def create_budget(settings: Settings) -> Budget:
    return Budget(
        "create",
        settings.create_rpm,
        settings.rate_window_seconds,
        guard_seconds=_scaled_guard(settings),
    )


def arrival_guard(settings: Settings, client: redis.Redis) -> ArrivalGuard | None:
    """The create budget's arrival correction, or None when ``IMAGEOPT_RATE_GUARD_ADAPTIVE`` is
    off.

    Its ceiling is 1 % of the window (0.6 s at 60 s), like the configured guard's cap."""
    if not settings.rate_guard_adaptive:
        return None
    budget = create_budget(settings)
    return ArrivalGuard(
        client,
        budget,
        namespace=settings.redis_namespace,
        fallback=budget.guard_seconds,
        ceiling=budget.window_seconds / 100,
    )


def provider_client(settings: Settings) -> ProviderClient:
    return ProviderClient(
        settings.replicate_base_url,
        settings.replicate_api_token.get_secret_value(),
        timeout=settings.provider_timeout_seconds,
        default_retry_after=settings.default_retry_after_seconds,
        output_hosts=tuple(settings.provider_output_hosts.split(",")),
    )


def storage(settings: Settings) -> ObjectStorage:
    return ObjectStorage.from_settings(settings)


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
        if delay is not None:
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
        ),
    )

    return WorkerServices(repo, queue, creation, polling, [fetcher, provider, pool, client])


def sync_wait_seconds(settings: Settings) -> int:
    """``REPLICATE_MAX_WAIT_MS`` as the ``Prefer: wait=N`` of creates: whole seconds, rounded
    up, at most Replicate's 60; 0 keeps async mode."""
    if settings.replicate_max_wait_ms <= 0:
        return 0
    return min(MAX_SYNC_WAIT_SECONDS, math.ceil(settings.replicate_max_wait_ms / 1000))


def build_queue(settings: Settings) -> TaskQueue:
    return TaskQueue(build_broker(settings.redis_url, settings.redis_namespace))
