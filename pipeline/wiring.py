"""Builds the pipeline's collaborators from :class:`pipeline.config.Settings` (entry points only).

Each process kind (scheduler, worker, api, CLI) calls these once and passes the objects down.
"""

from __future__ import annotations

import redis

from pipeline.allowlist import ModelSpec, build_allowlist
from pipeline.config import Settings
from pipeline.provider import ProviderClient
from pipeline.ratelimit import Budget, RateLimiter
from pipeline.ratelimit.arrivals import ArrivalGuard
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


def build_queue(settings: Settings) -> TaskQueue:
    return TaskQueue(build_broker(settings.redis_url, settings.redis_namespace))
