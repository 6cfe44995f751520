"""``api.accesslog``: request ids (kept when sane, else made), route templates, and one
``http_request`` event per request whose id every other line of the request carries (a real
Starlette app in process, structlog's capture tools)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api import create_app
from api.accesslog import (
    UNMATCHED_ROUTE,
    AccessLogMiddleware,
    request_id_from,
    route_template,
)
from pipeline.config import Settings

GENERATED = re.compile(r"[0-9a-f]{32}")


def _scope(
    path: str = "/", method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": headers or [],
    }


@pytest.mark.parametrize(
    "value",
    ["3f2c9a1e-5b7d-4c1a-9e8f-0a1b2c3d4e5f", "01HV6Z3K8Q9R", "req-42.retry:1", "a" * 128],
)
def test_a_sane_incoming_request_id_is_kept(value: str) -> None:
    assert request_id_from(_scope(headers=[(b"x-request-id", value.encode())])) == value


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"has space",
        b'quote"injected',
        b'x", "status": 200, "y": "',
        b"-leading-dash",
        b"a" * 129,
        "caf\u00e9".encode("latin-1"),
        b"line\x00nul",
    ],
)
def test_an_insane_incoming_request_id_is_replaced_by_a_new_one(value: bytes) -> None:
    made = request_id_from(_scope(headers=[(b"x-request-id", value)]))
    assert GENERATED.fullmatch(made)


def test_a_request_id_sent_twice_or_not_at_all_is_replaced_by_a_new_one() -> None:
    twice = [(b"x-request-id", b"one"), (b"x-request-id", b"two")]
    first, second = request_id_from(_scope(headers=twice)), request_id_from(_scope())
    assert GENERATED.fullmatch(first)
    assert GENERATED.fullmatch(second)
    assert first != second


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", "/api/jobs/42", "/api/jobs/{job_id}"),
        ("POST", "/api/jobs/42/cancel", "/api/jobs/{job_id}/cancel"),
        ("GET", "/api/items/7/result", "/api/items/{item_id}/result"),
        ("DELETE", "/api/jobs/42", "/api/jobs/{job_id}"),  # a 405 still names its route
        ("GET", "/static/app.js", "/static/{path}"),
        ("GET", "/api/jobs/not-a-number", UNMATCHED_ROUTE),
        ("GET", "/api/jobs/" + "9" * 5000, UNMATCHED_ROUTE),  # int() refuses > 4,300 digits
        ("GET", "/wp-login.php", UNMATCHED_ROUTE),
    ],
)
def test_the_route_is_the_template_of_the_apps_route_never_the_raw_path(
    method: str, path: str, template: str
) -> None:
    routes = create_app(Settings()).routes  # routes only: nothing connects before startup
    assert route_template(routes, _scope(path, method)) == template


log = structlog.get_logger("test.handler")


async def job(request: Request) -> Response:
    log.info("job_read", job_id=request.path_params["job_id"])
    return JSONResponse({"request_id": request.state.request_id})


async def broken(request: Request) -> Response:
    raise RuntimeError("bug")


async def internal_error(request: Request, exc: Exception) -> Response:
    log.error("api_internal_error", error=type(exc).__name__)
    return JSONResponse({"error": "internal"}, status_code=500)


class Client:
    """Requests to a small app behind the middleware, in process (httpx's ASGI transport), from
    the client address ``203.0.113.9``."""

    def __init__(self) -> None:
        routes = [
            Route("/jobs/{job_id:int}", job, methods=["GET"]),
            Route("/broken", broken, methods=["GET"]),
        ]
        self.app = Starlette(
            routes=routes,
            middleware=[Middleware(AccessLogMiddleware, routes=routes)],
            exception_handlers={Exception: internal_error},
        )

    def get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        async def request() -> httpx.Response:
            transport = httpx.ASGITransport(
                app=self.app, raise_app_exceptions=False, client=("203.0.113.9", 4242)
            )
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return await client.get(path, headers=headers)

        return asyncio.run(request())


@pytest.fixture
def client() -> Client:
    return Client()


def test_one_access_event_per_request_and_the_request_lines_carry_its_id(
    client: Client,
) -> None:
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as events:
        response = client.get("/jobs/17", headers={"X-Request-ID": "edge-7f3a"})
    assert response.headers["x-request-id"] == "edge-7f3a"
    assert response.json() == {"request_id": "edge-7f3a"}  # request.state.request_id
    handler, access = events
    assert (handler["event"], handler["request_id"]) == ("job_read", "edge-7f3a")
    assert access["event"] == "http_request"
    assert access["log_level"] == "info"
    assert {k: access[k] for k in ("request_id", "method", "route", "status", "client")} == {
        "request_id": "edge-7f3a",
        "method": "GET",
        "route": "/jobs/{job_id}",
        "status": 200,
        "client": "203.0.113.9",
    }
    assert isinstance(access["duration_seconds"], float)
    assert access["duration_seconds"] >= 0


def test_an_unmatched_path_is_logged_with_the_fixed_label_and_a_new_request_id(
    client: Client,
) -> None:
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as events:
        response = client.get("/jobs/17/../../etc/passwd?token=x", headers={"X-Request-ID": "a b"})
    (access,) = events
    assert (access["route"], access["status"]) == (UNMATCHED_ROUTE, 404)
    assert GENERATED.fullmatch(access["request_id"])
    assert response.headers["x-request-id"] == access["request_id"]


def test_a_crash_is_logged_as_a_500_and_the_error_line_carries_the_request_id(
    client: Client,
) -> None:
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as events:
        response = client.get("/broken", headers={"X-Request-ID": "crash-1"})
    assert response.status_code == 500
    by_event = {event["event"]: event for event in events}
    assert by_event["http_request"]["status"] == 500
    assert by_event["http_request"]["log_level"] == "warning"
    assert by_event["http_request"]["route"] == "/broken"
    assert by_event["api_internal_error"]["request_id"] == "crash-1"
