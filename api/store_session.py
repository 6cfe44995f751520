"""A store's person signs in to the console with the store's API key (the design of the operator
console's sign-in, :mod:`api.sessions`).

* ``POST /api/session`` ``{"key": "iok_..."}``: checks the key and sets the ``store_session``
  cookie (``HttpOnly``, ``SameSite=Strict``, ``Path=/``, ``Secure`` on https) for
  ``IMAGEOPT_API_STORE_SESSION_HOURS``; the row holds the token's SHA-256 and the key's id.
  From then on the browser is the store (:meth:`api.context.ApiContext.caller`): its history,
  presets and quota, under the key's request limits. Revoking the key ends the session.
* ``DELETE /api/session``: signs out (the row is deleted, the cookie cleared); the browser is
  its guest again, if it has a guest cookie.
* ``GET /api/session``: who this browser is: ``{"signedIn", "owner", "storeId"}``.

Sign-in attempts count against the client network,
``IMAGEOPT_API_SIGN_IN_ATTEMPTS_PER_MINUTE`` per rolling minute. A wrong, revoked or operator
key is the same 401 with one generic message, so the answer tells nothing about which keys
exist. Both writes ride on cookies and pass the CSRF/Origin check (:mod:`api.security`).
"""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.admission import admit_anyone
from api.auth import STORE_COOKIE, Caller, caller_from_key
from api.context import ApiContext, blocking
from api.envelope import ApiError, ok, read_body
from api.sessions import KeyBody, SessionCookie, count_sign_in_attempt, new_token
from pipeline import metrics

log = structlog.get_logger(__name__)

STORE_SESSION = SessionCookie(STORE_COOKIE, "/")
SECONDS_PER_HOUR = 3600
SIGN_IN_LIMIT = "store-sign-in"
"""The throttle's name for sign-in attempts (counted per client network)."""
WRONG_KEY = "this key does not open a store: check it and try again"


def session_seconds(ctx: ApiContext) -> int:
    """A store session's lifetime, seconds (``IMAGEOPT_API_STORE_SESSION_HOURS``)."""
    return max(1, int(ctx.settings.api_store_session_hours * SECONDS_PER_HOUR))


def _view(caller: Caller | None, signed_in: bool) -> dict[str, object]:
    store = caller is not None and caller.owner_type == "store"
    return {
        "signedIn": signed_in,
        "owner": caller.owner_type if caller is not None else None,
        "storeId": caller.store_id if store and caller is not None else None,
    }


async def sign_in(request: Request) -> Response:
    """``POST /api/session`` ``{"key": "iok_..."}``: sign this browser in as the key's store.

    Raises:
        ApiError: 400 naming ``key`` for a malformed body, 429 over the sign-in limit of the
            client network, 401 (generic message) for a key that is not a live store key.
    """
    ctx: ApiContext = request.app.state.ctx
    body: KeyBody = await read_body(request, KeyBody)
    await count_sign_in_attempt(
        request, SIGN_IN_LIMIT, ctx.settings.api_sign_in_attempts_per_minute, console="store"
    )
    caller = await blocking(caller_from_key, ctx.repo, body.key)
    if caller is None or caller.key_id is None:
        log.info("store_sign_in_refused")
        metrics.record_sign_in("store", "refused")
        raise ApiError(401, "unauthorized", WRONG_KEY)
    key_id = caller.key_id
    token, token_hash = new_token()
    seconds = session_seconds(ctx)
    await blocking(ctx.repo.api_insert_store_session, token_hash, key_id, seconds)
    log.info("store_signed_in", store_id=caller.store_id, key_id=key_id)
    metrics.record_sign_in("store", "ok")
    response = ok(_view(caller, True))
    STORE_SESSION.set(request, response, token, seconds)
    return response


async def sign_out(request: Request) -> Response:
    """``DELETE /api/session``: forget this browser's store session (if any) and its cookie."""
    ctx: ApiContext = request.app.state.ctx
    token_hash = STORE_SESSION.token_hash(request)
    if token_hash is not None:
        await blocking(ctx.repo.api_delete_store_session, token_hash)
    response = ok({"signedIn": False})
    STORE_SESSION.set(request, response, None)
    return response


async def who(request: Request) -> Response:
    """``GET /api/session``: who this browser is. A store session cookie that no longer
    signs in (expired, key revoked) is cleared.

    Raises:
        ApiError: 401 for a bad API key in ``Authorization``, 429 over the request limit.
    """
    _ctx, caller = await admit_anyone(request)
    # A bearer header wins over cookies: only without one can a store caller be the session's.
    signed_in = (
        caller is not None
        and caller.owner_type == "store"
        and "authorization" not in request.headers
    )
    response = ok(_view(caller, signed_in))
    if not signed_in and STORE_COOKIE in request.cookies:
        STORE_SESSION.set(request, response, None)
    return response


ROUTES = [Route("/api/session", sign_in, methods=["POST"]),
          Route("/api/session", sign_out, methods=["DELETE"]),
          Route("/api/session", who, methods=["GET"])]  # fmt: skip
