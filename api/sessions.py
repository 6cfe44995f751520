"""Key sign-in sessions, the one design both consoles use: a person pastes a key once, the api
checks it and hands the browser a random session token in an ``HttpOnly``, ``SameSite=Strict``
cookie (``Secure`` on https); a row holds the token's SHA-256, the key's id and an expiry, so
revoking the key or reaching the expiry ends the session, and signing out deletes the row.

* The operator console (:mod:`api.operator_auth`): ``ops_session`` on ``Path=/ops``.
* The store console (:mod:`api.store_session`): ``store_session`` on ``Path=/``, read by
  :meth:`api.context.ApiContext.caller` as the store the key belongs to.

Sign-in attempts count against the client network (:func:`api.addresses.client_network`) in
the Redis throttle, which checks and counts in one atomic step, so concurrent attempts cannot
slip past the limit. Each attempt with a well-formed body is counted in
``imageopt_api_sign_ins_total{console, outcome}``
(``ok``, ``refused``, ``limited``). A cookie-authenticated write passes the CSRF check of
:mod:`api.security` like every other.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from api.addresses import client_network
from api.auth import MAX_TOKEN_CHARS, hash_secret
from api.context import ApiContext, blocking
from api.envelope import ApiError
from pipeline import metrics


class KeyBody(BaseModel):
    """A sign-in's JSON body: ``{"key": "iok_..."}`` (1 to 200 characters, nothing else)."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS)


@dataclass(frozen=True)
class SessionCookie:
    """Where a console keeps its session token.

    Attributes:
        name: the cookie's name.
        path: the cookie's ``Path`` (the part of the site that receives it).
    """

    name: str
    path: str

    def token_hash(self, request: Request) -> bytes | None:
        """SHA-256 of the request's session token, or None without a plausible one."""
        token = request.cookies.get(self.name)
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        return hash_secret(token)

    def set(
        self, request: Request, response: Response, token: str | None, max_age_seconds: int = 0
    ) -> None:
        """Set the cookie to ``token`` for ``max_age_seconds`` (the session row's lifetime;
        ``HttpOnly``, ``SameSite=Strict``, ``Secure`` on https), or clear it with None."""
        if token is None:
            response.delete_cookie(self.name, path=self.path)
            return
        response.set_cookie(
            self.name, token, max_age=max_age_seconds, path=self.path, httponly=True,
            samesite="strict", secure=request.url.scheme == "https",
        )  # fmt: skip


def new_token() -> tuple[str, bytes]:
    """A fresh session token (256 random bits, URL-safe) and its SHA-256: ``(token, hash)``."""
    token = secrets.token_urlsafe(32)
    return token, hash_secret(token)


async def count_sign_in_attempt(
    request: Request, limit_name: str, limit: int, *, console: str
) -> None:
    """Count one sign-in attempt against the client network (``limit`` per rolling minute,
    ``0`` = unlimited), checked and counted in one Redis script.

    Args:
        request: the sign-in request.
        limit_name: the throttle's name of this console's sign-in limit.
        limit: attempts per rolling minute.
        console: ``store`` or ``operator``: the ``console`` label of
            ``imageopt_api_sign_ins_total``, counted ``limited`` when refused here.

    Raises:
        ApiError: 429 with ``Retry-After`` when the network is over the limit.
    """
    ctx: ApiContext = request.app.state.ctx
    decision = await blocking(
        ctx.throttler.hit, limit_name, f"ip-{client_network(request)}", limit, None
    )
    if not decision.admitted:
        metrics.record_sign_in(console, "limited")
        raise ApiError(
            429, "rate_limited", f"too many sign-in attempts: {limit} per minute allowed",
            details={"limit": limit, "retryAfter": decision.retry_after_header},
            headers={"Retry-After": decision.retry_after_header},
        )  # fmt: skip
