"""Browser safety as pure ASGI middleware (seed 001: CSRF, Origin, security headers; seed 002:
upload limits).

* :class:`SecurityHeadersMiddleware` adds HSTS, ``X-Frame-Options``, ``Referrer-Policy``,
  ``Permissions-Policy``, ``X-Content-Type-Options: nosniff`` and a strict CSP (no inline
  script or style, same-origin everything) to every response.
* :class:`CsrfMiddleware` guards every state-changing request that could ride on the browser's
  cookies: its ``Origin`` (or, without one, its ``Referer``) must be an allowed origin, and the
  ``X-CSRF-Token`` header must equal the ``csrf_token`` cookie (double submit). Requests that
  carry an ``Authorization`` header authenticate with an API key, not ambient cookies, and a
  foreign page cannot set that header without a CORS preflight this app never grants: they
  are not checked. Nor are provider webhooks (a ``webhook-signature`` header, same reason;
  the route verifies the signature itself, :mod:`api.webhooks`).
* :class:`BodyLimitMiddleware` refuses request bodies larger than a bound (``413``) or without
  a ``Content-Length`` (``411``) before anything reads them.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.envelope import ApiError, error_response

CSRF_COOKIE = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MIN_CSRF_TOKEN_LENGTH = 16

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response (keeping any the app set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def request_origin(scope: Scope, headers: Headers) -> str:
    """``scheme://host[:port]`` the request was sent to (from the ``Host`` header)."""
    return f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


class CsrfMiddleware:
    """Origin check plus double-submit token on unsafe methods (see module doc).

    A request that no route accepts (wrong path or method) is passed on unchecked: it changes
    nothing, and the router answers it with its 404 or 405 (``Allow`` header).

    Args:
        app: the wrapped app.
        allowed_origins: origins accepted; empty = the request's own ``scheme://Host``.
        routes: the app's routes, to tell requests that reach a handler from 404/405s.
    """

    def __init__(
        self, app: ASGIApp, allowed_origins: Iterable[str] = (), routes: Sequence[BaseRoute] = ()
    ) -> None:
        self.app = app
        self.allowed = frozenset(
            o.strip().rstrip("/").lower() for o in allowed_origins if o.strip()
        )
        self.routes = tuple(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        # A browser cannot send Authorization or a webhook signature cross-origin without a
        # CORS preflight, which this api never grants: such requests are no CSRF vector.
        signed = "authorization" in headers or "webhook-signature" in headers
        if signed or not self._handled(scope):
            await self.app(scope, receive, send)
            return
        problem = self.check(scope, headers)
        if problem is not None:
            response = error_response(ApiError(403, "csrf_failed", problem))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _handled(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] == Match.FULL for route in self.routes)

    def check(self, scope: Scope, headers: Headers) -> str | None:
        """The reason to refuse the request, or None when it passes."""
        origin = headers.get("origin")
        if origin is None or origin == "null":
            referer = headers.get("referer")
            origin = _origin_of(referer) if referer else None
        if origin is None:
            return "missing Origin header on a state-changing request"
        allowed = self.allowed or {request_origin(scope, headers)}
        if origin.rstrip("/").lower() not in allowed:
            return "cross-origin request refused"
        cookie = _cookie(headers, CSRF_COOKIE)
        token = headers.get(CSRF_HEADER, "")
        if len(token) < MIN_CSRF_TOKEN_LENGTH or not cookie:
            return "missing CSRF token (X-CSRF-Token header and csrf_token cookie)"
        if not hmac.compare_digest(token.encode(), cookie.encode()):
            return "CSRF token does not match its cookie"
        return None


def _cookie(headers: Headers, name: str) -> str | None:
    for header in headers.getlist("cookie"):
        for part in header.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                return value
    return None


class BodyLimitMiddleware:
    """Refuses bodies above ``max_bytes`` (413) and unsized bodies (411) on unsafe methods.

    Args:
        app: the wrapped app.
        max_bytes: the largest ``Content-Length`` accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        error: ApiError | None = None
        if length is None:
            if "transfer-encoding" in headers:
                error = ApiError(411, "length_required", "send a Content-Length with the body")
        elif not length.isdigit():
            error = ApiError(400, "bad_request", "invalid Content-Length")
        elif int(length) > self.max_bytes:
            error = ApiError(
                413,
                "payload_too_large",
                f"request body larger than {self.max_bytes} bytes",
                details={"maxBytes": self.max_bytes},
            )
        if error is not None:
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)
