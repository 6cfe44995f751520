"""Operators: who may use the ``/ops`` console and its levers, and the one check every ops
route makes (:func:`require_operator`).

* **Operator keys** (``imageopt api-key create --operator --name NAME``) look like store keys
  (``iok_<8 hex>_<43 url-safe chars>``, 256 random bits, only the SHA-256 stored) but live in a
  table of their own, so a store key never acts as an operator and an operator key is never a
  store's caller. Scripts send one as ``Authorization: Bearer <key>``.
* **Console sessions**: ``POST /ops/login`` with an operator key sets the ``ops_session``
  cookie (a random token, ``HttpOnly``, ``SameSite=Strict``, ``Path=/ops``, ``Secure`` on
  https; the row holds its SHA-256) for :data:`SESSION_SECONDS`. Revoking the key ends its
  sessions. State-changing requests carry the console's CSRF double submit
  (:mod:`api.security`) like every other cookie-authenticated request.
* Sign-in attempts count against the client network, :data:`LOGIN_ATTEMPTS_PER_MINUTE` per
  rolling minute (the Redis throttle: check and count in one atomic step).

The session design (token, cookie, sign-in limit) is shared with the store console's sign-in:
:mod:`api.sessions`.

Answers: no credentials, an unknown or revoked key, an expired session: 401. Credentials that
are not an operator's (a store key, a console guest): 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from api.auth import (
    GUEST_COOKIE,
    KEY_PREFIX,
    TOUCH_EVERY,
    Caller,
    bearer_token,
    caller_from_guest_token,
    caller_from_key,
    hash_secret,
    new_api_key,
)
from api.context import ApiContext, blocking
from api.envelope import ApiError
from api.sessions import SessionCookie, count_sign_in_attempt, new_token
from pipeline import metrics
from pipeline.repository import Repository, Row

OPS_COOKIE = "ops_session"
OPS_PATH = "/ops"
SESSION_SECONDS = 12 * 3600
"""How long a console sign-in lasts, seconds (a working day; no sliding)."""
OPERATOR_REQUESTS_PER_MINUTE = 600
"""Requests per operator key per rolling minute: the page alone sends about 40 (two reads
every 3 s), so a few open tabs and a script fit, and a runaway loop does not."""
LOGIN_ATTEMPTS_PER_MINUTE = 10
"""Sign-in attempts per client network per rolling minute (keys carry 256 bits: this bounds
load and log noise, not guessing)."""
OPS_SESSION = SessionCookie(OPS_COOKIE, OPS_PATH)


@dataclass(frozen=True)
class Operator:
    """A signed-in operator.

    Attributes:
        key_id: the operator key's id.
        name: the key's name (a person or a team, given at creation).
    """

    key_id: int
    name: str

    @property
    def actor(self) -> str:
        """How the audit log names this operator."""
        return f"{self.name} (operator key {self.key_id})"


def create_operator_key(repo: Repository, name: str) -> tuple[str, int]:
    """Create an operator key; returns ``(key, key_id)``. The key is never stored or logged.

    Raises:
        ValueError: empty name, or longer than 200 characters.
    """
    if not name.strip() or len(name) > 200:
        raise ValueError("an operator key needs a name of 1 to 200 characters")
    key, prefix = new_api_key()
    row = repo.ops_insert_operator_key(name.strip(), prefix, hash_secret(key))
    return key, int(row["id"])


def _operator(repo: Repository, row: Row | None) -> Operator | None:
    if row is None:
        return None
    last = row["last_used_at"]
    if last is None or last < datetime.now(UTC) - TOUCH_EVERY:
        repo.ops_touch_operator_key(int(row["id"]))
    return Operator(int(row["id"]), str(row["name"]))


def operator_from_key(repo: Repository, key: str) -> Operator | None:
    """The operator of a live operator key, or None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    return _operator(repo, repo.ops_find_operator_key(hash_secret(key)))


def operator_from_session(repo: Repository, token: str) -> Operator | None:
    """The operator of an unexpired console session of a live key, or None."""
    if not token or len(token) > 200:
        return None
    return _operator(repo, repo.ops_find_session(hash_secret(token)))


async def require_operator(request: Request) -> Operator:
    """The operator making ``request``, counted against the operator's request limit.

    The one check of every ops route (and of any later route that only operators may use).

    Raises:
        ApiError: 401 without operator credentials (or with an unknown or revoked key, an
            expired session), 403 with a store key or a console guest's cookie, 429 over
            :data:`OPERATOR_REQUESTS_PER_MINUTE`.
    """
    ctx: ApiContext = request.app.state.ctx
    authorization = request.headers.get("authorization")
    found: Operator | None = None
    if authorization is not None:
        token = bearer_token(authorization) or ""
        found = await blocking(operator_from_key, ctx.repo, token)
        if found is None:
            if await blocking(caller_from_key, ctx.repo, token) is not None:
                raise ApiError(403, "forbidden", "operators only: this is a store's key")
            await ctx.throttle_anonymous(request)
            raise ApiError(401, "unauthorized", "invalid operator key",
                           headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    else:
        session = request.cookies.get(OPS_COOKIE)
        if session:
            found = await blocking(operator_from_session, ctx.repo, session)
    if found is None:
        token = request.cookies.get(GUEST_COOKIE) or ""
        guest: Caller | None = None
        if token:
            guest = await blocking(
                caller_from_guest_token,
                ctx.repo, token, ctx.settings.api_guest_store, ctx.guest_ttl_seconds,
            )  # fmt: skip
        if guest is not None:
            raise ApiError(403, "forbidden", "operators only: sign in at /ops/login")
        await ctx.throttle_anonymous(request)
        raise ApiError(401, "unauthorized", "operators only: sign in at /ops/login",
                       headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    await _hit(ctx, "api", f"operator-{found.key_id}", OPERATOR_REQUESTS_PER_MINUTE)
    return found


async def _hit(ctx: ApiContext, name: str, key: str, limit: int) -> None:
    decision = await blocking(ctx.throttler.hit, name, key, limit, None)
    if not decision.admitted:
        raise ApiError(
            429, "rate_limited", f"too many requests: {limit} per minute allowed",
            details={"limit": limit, "retryAfter": decision.retry_after_header},
            headers={"Retry-After": decision.retry_after_header},
        )  # fmt: skip


async def sign_in(request: Request, key: str) -> tuple[Operator, str]:
    """Check an operator key for the console's sign-in; returns the operator and a new
    session token (for the cookie, shown once).

    Raises:
        ApiError: 429 over :data:`LOGIN_ATTEMPTS_PER_MINUTE` from this client network, 403 for
            a store key, 401 for anything else that is not a live operator key.
    """
    ctx: ApiContext = request.app.state.ctx
    await count_sign_in_attempt(request, "ops-login", LOGIN_ATTEMPTS_PER_MINUTE, console="operator")
    found = await blocking(operator_from_key, ctx.repo, key)
    if found is None:
        metrics.record_sign_in("operator", "refused")
        if await blocking(caller_from_key, ctx.repo, key) is not None:
            raise ApiError(403, "forbidden", "operators only: this is a store's key")
        raise ApiError(401, "unauthorized", "invalid operator key")
    token, token_hash = new_token()
    await blocking(ctx.repo.ops_insert_session, token_hash, found.key_id, SESSION_SECONDS)
    metrics.record_sign_in("operator", "ok")
    return found, token


async def sign_out(request: Request) -> None:
    """Forget this browser's console session (if any)."""
    ctx: ApiContext = request.app.state.ctx
    token_hash = OPS_SESSION.token_hash(request)
    if token_hash is not None:
        await blocking(ctx.repo.ops_delete_session, token_hash)


def set_session_cookie(request: Request, response: Response, token: str | None) -> None:
    """Set (or, with None, clear) the ``ops_session`` cookie."""
    OPS_SESSION.set(request, response, token, SESSION_SECONDS)
