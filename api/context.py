"""The api process's collaborators, built once from Settings, and per-request guards.

Routes reach :meth:`ApiContext.caller` (who is asking) and :meth:`ApiContext.throttle`
(per-caller limits) through :mod:`api.admission` (one prelude for every guarded route), and call
:func:`blocking` (run a synchronous repository or storage call in the thread pool).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread
import redis
from psycopg_pool import ConnectionPool
from starlette.requests import Request
from starlette.responses import Response

from api.addresses import client_network
from api.auth import (
    GUEST_COOKIE,
    STORE_COOKIE,
    Caller,
    bearer_token,
    caller_from_guest_token,
    caller_from_key,
    caller_from_store_session,
    new_guest,
)
from api.envelope import ApiError
from api.throttle import Throttle
from pipeline.allowlist import ModelSpec
from pipeline.config import Settings
from pipeline.db import create_pool
from pipeline.provider import ProviderClient
from pipeline.ratelimit import RateLimiter
from pipeline.repository import ApiQuotas, Repository
from pipeline.storage import ObjectStorage
from pipeline.wiring import allowlist, limiters, provider_client, redis_client, storage

T = TypeVar("T")
SECONDS_PER_DAY = 86_400.0
SECONDS_PER_HOUR = 3_600.0


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking call (psycopg, redis, minio) in the worker thread pool."""
    return await anyio.to_thread.run_sync(fn, *args)


@dataclass
class ApiContext:
    """Everything the routes use; one per api process."""

    settings: Settings
    repo: Repository
    redis: redis.Redis
    create_limiter: RateLimiter
    read_limiter: RateLimiter
    storage: ObjectStorage
    provider: ProviderClient
    throttler: Throttle
    models: dict[str, ModelSpec]
    closers: list[Any] = field(default_factory=list)

    @property
    def guest_ttl_seconds(self) -> float:
        return self.settings.api_guest_session_days * SECONDS_PER_DAY

    def close(self) -> None:
        for closer in self.closers:
            closer.close()

    # --- who is calling ----------------------------------------------------------------------
    async def caller(self, request: Request, *, required: bool = True) -> Caller | None:
        """The caller of ``request``: an API key, else a store session (the console's sign-in,
        standing for its key), else a guest session. An expired store session, or one whose key
        was revoked, is no caller: the request goes on as the browser's guest, if any.

        Raises:
            ApiError: 401 for a bad or revoked API key, or (``required``) no credentials.
        """
        authorization = request.headers.get("authorization")
        if authorization is not None:
            token = bearer_token(authorization)
            found = await blocking(caller_from_key, self.repo, token) if token else None
            if found is None:
                await self.throttle_anonymous(request)
                raise ApiError(
                    401, "unauthorized", "invalid API key", headers={"WWW-Authenticate": "Bearer"}
                )
            return found
        session = request.cookies.get(STORE_COOKIE)
        if session:
            store = await blocking(caller_from_store_session, self.repo, session)
            if store is not None:
                return store
        token = request.cookies.get(GUEST_COOKIE)
        if token:
            guest = await blocking(
                caller_from_guest_token,
                self.repo, token, self.settings.api_guest_store, self.guest_ttl_seconds,
            )  # fmt: skip
            if guest is not None:
                return guest
        if required:
            await self.throttle_anonymous(request)
            raise ApiError(
                401, "unauthorized", "sign in with an API key or open the console first",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        return None

    async def caller_or_new_guest(self, request: Request) -> tuple[Caller, str | None]:
        """The caller, or a new guest session (its cookie token second) for a cookie-less
        browser. New guests count against their client address: its request limit, and
        ``IMAGEOPT_API_GUEST_SESSIONS_PER_HOUR`` new sessions per rolling hour.

        Raises:
            ApiError: 429 with ``Retry-After`` when the address is over either limit.
        """
        found = await self.caller(request, required=False)
        if found is not None:
            return found, None
        await self.throttle_anonymous(request)
        await self._hit(
            "guest-session", f"ip-{client_network(request)}",
            self.settings.api_guest_sessions_per_hour, SECONDS_PER_HOUR,
        )  # fmt: skip
        guest, token = await blocking(
            new_guest, self.repo, self.settings.api_guest_store, self.guest_ttl_seconds
        )
        return guest, token

    def set_guest_cookie(self, request: Request, response: Response, token: str) -> None:
        """Set the ``guest_id`` cookie (HttpOnly, SameSite=Lax, Secure on https)."""
        response.set_cookie(
            GUEST_COOKIE, token, max_age=int(self.guest_ttl_seconds), path="/",
            httponly=True, samesite="lax", secure=request.url.scheme == "https",
        )  # fmt: skip

    # --- per-caller limits -------------------------------------------------------------------
    async def throttle(self, caller: Caller, *, read: bool = False, create: bool = False) -> None:
        """Count a request against the caller's limits: a read (:func:`api.throttle.is_read`)
        against ``IMAGEOPT_API_READ_RATE_PER_MINUTE``, anything else against
        ``IMAGEOPT_API_RATE_PER_MINUTE`` (seed 002's 30/min), and a job creation also against
        ``IMAGEOPT_API_CREATE_RATE_PER_MINUTE``. Each is checked and counted in one Redis script.

        Raises:
            ApiError: 429 with ``Retry-After`` when over a limit.
        """
        if read:
            await self._hit("read", caller.throttle_key, self.settings.api_read_rate_per_minute)
            return
        await self._hit("api", caller.throttle_key, self.settings.api_rate_per_minute)
        if create:
            await self._hit("create", caller.throttle_key, self.settings.api_create_rate_per_minute)

    async def throttle_preset_writes(self, caller: Caller) -> None:
        """Count a custom preset write (create, update, delete) against the caller's own limit,
        ``IMAGEOPT_API_PRESET_WRITES_PER_MINUTE``: checked and counted in one Redis script.

        Raises:
            ApiError: 429 with ``Retry-After`` when over the limit.
        """
        await self._hit(
            "preset-write", caller.throttle_key, self.settings.api_preset_writes_per_minute
        )

    async def throttle_anonymous(self, request: Request, *, read: bool = False) -> None:
        """Count a request without a caller against its client network (the peer, or what a
        trusted proxy forwarded; :mod:`api.addresses`): a public read (``read``) against the
        read budget, anything else, every refused credential included, against
        ``IMAGEOPT_API_RATE_PER_MINUTE``, so guessing keys stays at seed 002's 30/min.

        Raises:
            ApiError: 429 with ``Retry-After`` when over the limit.
        """
        network = f"ip-{client_network(request)}"
        if read:
            await self._hit("read", network, self.settings.api_read_rate_per_minute)
        else:
            await self._hit("api", network, self.settings.api_rate_per_minute)

    def quotas(self, caller: Caller, request: Request) -> ApiQuotas:
        """The item quotas a caller's new items count against over the rolling 24 h: the
        guest's own and its client network's (``IMAGEOPT_API_GUEST_DAILY_ITEMS``,
        ``IMAGEOPT_API_GUEST_ADDRESS_DAILY_ITEMS``), or the store's
        (``IMAGEOPT_API_STORE_DAILY_ITEMS``; stores are not counted per address)."""
        settings = self.settings
        guest = caller.owner_type == "guest"
        return ApiQuotas(
            owner_type=caller.owner_type,
            owner_id=caller.owner_id,
            store_id=caller.store_id,
            owner_limit=settings.api_guest_daily_items if guest else settings.api_store_daily_items,
            client_network=client_network(request) if guest else None,
            network_limit=settings.api_guest_address_daily_items if guest else 0,
            window_seconds=SECONDS_PER_DAY,
        )

    async def _hit(self, name: str, key: str, limit: int, window: float | None = None) -> None:
        decision = await blocking(self.throttler.hit, name, key, limit, window)
        if not decision.admitted:
            raise ApiError(
                429, "rate_limited", _LIMIT_MESSAGES[name].format(limit=limit),
                details={"limit": limit, "retryAfter": decision.retry_after_header},
                headers={"Retry-After": decision.retry_after_header},
            )  # fmt: skip


_LIMIT_MESSAGES = {
    "api": "too many requests: {limit} per minute allowed",
    "read": "too many reads: {limit} per minute allowed",
    "create": "too many requests: {limit} per minute allowed for job creation",
    "guest-session": "too many new guest sessions from this address: {limit} per hour allowed",
    "preset-write": "too many preset changes: {limit} per minute allowed",
}


def build_context(settings: Settings) -> ApiContext:
    """Connect to Postgres, Redis, the bucket and the provider (lazily where the client allows)."""
    pool: ConnectionPool[Any] = create_pool(
        settings.database_url, settings.db_schema, max_size=settings.db_pool_max_size, name="api"
    )
    client = redis_client(settings)
    create_limiter, read_limiter = limiters(settings, client)
    provider = provider_client(settings)
    return ApiContext(
        settings=settings,
        repo=Repository(pool),
        redis=client,
        create_limiter=create_limiter,
        read_limiter=read_limiter,
        storage=storage(settings),
        provider=provider,
        throttler=Throttle(client, settings.redis_namespace),
        models=allowlist(settings),
        closers=[provider, pool, client],
    )
