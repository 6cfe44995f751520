"""Request count and latency of the api by route, method and status class (seed 004's KPIs:
P95 < 3 s, error rate < 1 %), served on the api's ``/metrics``.

* ``imageopt_api_requests_total{route, method, status_class}``: requests answered.
* ``imageopt_api_request_duration_seconds{route, method, status_class}``: a histogram of the
  time from the request's arrival here to its response's first byte (status line and
  headers). The first byte, not the last: a download's or an event stream's length depends on
  the client and the stream, not on how fast the api answered.
* ``imageopt_api_database_up``: 1 when this process reached Postgres at the last scrape
  (:func:`probe_database`), else 0.

Labels stay bounded whatever callers send: ``route`` is the route template the access log
computed (:func:`api.accesslog.route_template`, left in the scope's state):
``/api/jobs/{job_id}``, or ``<unmatched>`` for any path no route takes; ``method`` is one of
:data:`METHODS` or ``OTHER``; ``status_class`` ``1xx`` .. ``5xx``. A request the app fails
before answering counts as ``5xx`` (what Starlette's
outermost error handler then sends).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.to_thread
from prometheus_client import Counter, Gauge, Histogram
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.accesslog import ROUTE_STATE_KEY, route_template

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted under their own name; anything else is ``OTHER``."""
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0, 5.0, 10.0, 15.0,
                   30.0, 60.0)  # fmt: skip
"""Seconds. 3, 10 and 15 are bucket bounds so that the alerts' P95 thresholds (seed 004: 3 s
warning, 10 s critical, 15 s rollback) are read off a bound, not interpolated across one."""
LABELS = ("route", "method", "status_class")

REQUESTS = Counter(
    "imageopt_api_requests_total", "HTTP requests the api answered.", LABELS
)  # fmt: skip
REQUEST_SECONDS = Histogram(
    "imageopt_api_request_duration_seconds",
    "Time from a request's arrival to its response's first byte, seconds.",
    LABELS,
    buckets=LATENCY_BUCKETS,
)


DATABASE_UP = Gauge(
    "imageopt_api_database_up",
    "1 when this api process reached Postgres at the last scrape of /metrics, else 0.",
)
DATABASE_PROBE_SECONDS = 2.0
"""A ping that has not answered after this long (seconds) counts as unreachable."""


def probe_budget(scrape_timeout: str | None) -> float:
    """Seconds the database probe may take within one scrape.

    Prometheus sends its scrape timeout in ``X-Prometheus-Scrape-Timeout-Seconds``: a probe
    that outlasts it loses the whole scrape, so "Postgres unreachable" would never be seen
    (a hung connect is exactly that case). The probe takes at most 80 % of it, and never more
    than :data:`DATABASE_PROBE_SECONDS`.

    Args:
        scrape_timeout: the header's value, or None without one (any other scraper).
    """
    try:
        budget = 0.8 * float(scrape_timeout) if scrape_timeout else DATABASE_PROBE_SECONDS
    except ValueError:
        budget = DATABASE_PROBE_SECONDS
    if not budget > 0:  # also NaN
        return DATABASE_PROBE_SECONDS
    return min(DATABASE_PROBE_SECONDS, budget)


async def probe_database(ping: Callable[[], Any], budget: float = DATABASE_PROBE_SECONDS) -> bool:
    """Run ``ping`` (a ``SELECT 1``) in the thread pool and set :data:`DATABASE_UP` from it:
    0 when it raised or did not answer within ``budget`` seconds (:func:`probe_budget`).
    Called at each scrape, so the gauge is as fresh as the scrape interval (the alert on it
    waits 2 min)."""
    up = False
    with anyio.move_on_after(budget):
        try:
            await anyio.to_thread.run_sync(ping, abandon_on_cancel=True)
            up = True
        except Exception:  # noqa: BLE001 - any failure to answer is "unreachable"
            up = False
    DATABASE_UP.set(1 if up else 0)
    return up


def status_class(status: int) -> str:
    """``"2xx"`` for 200..299 and so on; anything outside 100..599 is ``"5xx"``."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "5xx"


def method_label(method: str) -> str:
    """The method, or ``OTHER`` for one outside :data:`METHODS` (a caller picks it)."""
    return method if method in METHODS else "OTHER"


class HttpMetricsMiddleware:
    """Counts and times every HTTP request (see the module doc). Register it outside the
    middleware that may answer by itself (CSRF 403, 411/413), so those are counted too.

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
        state = scope.get("state") or {}
        route = state.get(ROUTE_STATE_KEY) or route_template(self.routes, scope)
        method = method_label(scope["method"])
        answered = False

        def observe(status: int) -> None:
            labels = (route, method, status_class(status))
            REQUESTS.labels(*labels).inc()
            REQUEST_SECONDS.labels(*labels).observe(time.perf_counter() - started)

        async def send_observed(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                observe(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception:
            if not answered:
                answered = True
                observe(500)
            raise
