"""The api's access log and request ids, as pure ASGI middleware.

One ``http_request`` event per HTTP request, when its handling ends::

    {"event": "http_request", "request_id": "3f9c...", "method": "GET",
     "route": "/api/jobs/{job_id}", "status": 200, "duration_seconds": 0.0042,
     "client": "10.0.0.7", ...}

* ``request_id``: the request's ``X-Request-ID`` when it is a sane token
  (:data:`REQUEST_ID_PATTERN`: what a proxy or a client generates, a UUID, a ULID, a trace id),
  else a new UUID4 (32 hex digits). It is echoed as the response's ``X-Request-ID`` and bound
  to structlog's context, so every other line logged while the request is handled carries it.
* ``route``: the template of the route that took the request (``/api/jobs/{job_id}``, never
  the raw path, so ids and probes do not spread into the log's values); a path no route
  matches is :data:`UNMATCHED_ROUTE`.
* ``status``: the status sent, or 500 when the app raised before answering.
* ``duration_seconds``: from the request's arrival here to the end of its response
  (monotonic clock).
* ``client``: the client address as the app sees it (``scope["client"]``: the peer, or what
  uvicorn took from ``X-Forwarded-For`` of a proxy it trusts, ``FORWARDED_ALLOW_IPS``).

Errors of 5xx are logged at ``warning``, everything else at ``info``.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence

import structlog
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
"""An incoming ``X-Request-ID`` kept as is: 1-128 characters of letters, digits and ``._:-``,
starting with a letter or digit. Anything else (spaces, quotes, control or non-ASCII
characters, an overlong value, the header sent twice) is replaced, so a caller cannot forge
log content or blow up its size."""
ROUTE_STATE_KEY = "route_template"
"""Where the request's route template is left in ``scope["state"]`` for inner middleware."""
UNMATCHED_ROUTE = "<unmatched>"
"""``route`` of a request that no route matches (a 404, or a redirect to the slash variant)."""


def request_id_from(scope: Scope) -> str:
    """The request's id: its one ``X-Request-ID`` if sane (:data:`REQUEST_ID_PATTERN`), else a
    new random 32 hex digits."""
    values = [value for name, value in scope.get("headers", ()) if name == REQUEST_ID_HEADER]
    if len(values) == 1:
        candidate: str = values[0].decode("latin-1")
        if REQUEST_ID_PATTERN.fullmatch(candidate):
            return candidate
    # A correlation id, not a secret: 128 bits of the process's PRNG (reseeded in each forked
    # child) as 32 hex digits; uuid4's os.urandom call was 4 % of the api's CPU per webhook.
    return f"{random.getrandbits(128):032x}"


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The path template of the route that takes ``scope`` (as the router picks it: the first
    full match, else the first that matches the path but not the method, a 405), without
    parameter converters (``/api/jobs/{job_id}``); :data:`UNMATCHED_ROUTE` when none does."""
    partial: str | None = None
    for route in routes:
        try:
            match, _ = route.matches(scope)
        except ValueError:  # a parameter its convertor cannot read (an int of > 4,300 digits)
            continue
        template = getattr(route, "path_format", None)
        if match is Match.FULL:
            return template or UNMATCHED_ROUTE
        if match is Match.PARTIAL and partial is None:
            partial = template
    return partial or UNMATCHED_ROUTE


class AccessLogMiddleware:
    """Logs one ``http_request`` event per HTTP request and gives each a request id (see the
    module doc). Register it first (outermost of the app's middleware), so that the requests
    other middleware answers themselves (403, 411, 413) are logged too.

    Args:
        app: the wrapped app.
        routes: the app's routes, to name the route template of each request.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.routes = tuple(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope)
        route = route_template(self.routes, scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id  # request.state.request_id
        state[ROUTE_STATE_KEY] = route  # the request metrics (api/http_metrics.py) reuse it
        # Bound for the rest of this request's task, not reset on the way out: the ASGI server
        # runs each request in a task of its own, and an error that escapes every middleware is
        # logged by Starlette's outermost ServerErrorMiddleware after this one has returned.
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status: int | None = None
        header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [
                    *(h for h in message.get("headers", []) if h[0].lower() != REQUEST_ID_HEADER),
                    header,
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            if status is None:
                status = 500  # what Starlette's ServerErrorMiddleware answers next
            raise
        finally:
            client = scope.get("client")
            (log.warning if status is not None and status >= 500 else log.info)(
                "http_request",
                method=scope["method"],
                route=route,
                status=status,
                duration_seconds=round(time.perf_counter() - started, 6),
                client=client[0] if client else None,
            )
