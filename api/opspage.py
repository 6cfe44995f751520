"""The operator console (``/ops``): what is stuck, what failed, and the levers, without SQL.

One server-rendered page (Jinja2, like the console) and a small script that refreshes its
views every :data:`REFRESH_SECONDS` from the JSON routes below; no front-end build. Every route
but the sign-in page and the sign-in itself calls :func:`api.operator_auth.require_operator`
(401 without operator credentials, 403 for a store key or a console guest). The levers are in
:mod:`api.operator_actions`; docs/OPERATIONS.md shows the page and maps each alert's runbook
step to it.

Reads (all JSON in the API's envelope):

* ``GET /ops/api/overview``: items by status, both budgets, the submissions switch, the
  processes seen recently (:mod:`pipeline.presence`), the broker's queues, per store its
  backlog, last hour's throughput, failure rate and p50/p95 latency, weight, quota and pause,
  and the newest audit entries.
* ``GET /ops/api/failed?store=&job=&model=&error_code=&since=&until=&limit=``: FAILED items
  with the detailed ``error_message`` (operators may see it), attempts and timestamps.
* ``GET /ops/api/items/{id}/input`` and ``/result``: any item's files.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from api.context import ApiContext, blocking
from api.envelope import ApiError, ok, read_body, validation_error
from api.files import relay
from api.operator_auth import (
    require_operator,
    set_session_cookie,
    sign_in,
    sign_out,
)
from api.ops import limiter_view
from api.security import CSRF_COOKIE
from api.sessions import KeyBody
from api.views import display_name, input_state, result_state
from pipeline.controls import SUBMISSIONS_PAUSED, pause_state
from pipeline.presence import seen
from pipeline.repository import FailedFilter, Row
from pipeline.storage import ObjectNotFound
from pipeline.taskqueue import TaskQueue
from pipeline.uploads import upload_key_of
from pipeline.wiring import build_queue

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))

REFRESH_SECONDS = 3
"""How often the page refreshes its views, seconds."""
STATS_WINDOW = timedelta(hours=1)
"""Per-store throughput, failure rate and latency are over this window."""
MAX_STORES = 500
"""Stores listed on the overview (ordered by id)."""
AUDIT_SHOWN = 50
FAILED_PAGE_DEFAULT = 50
FAILED_PAGE_MAX = 500
NO_STORE = {"Cache-Control": "no-store"}


def iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


# --- pages -----------------------------------------------------------------------------------
def _with_csrf_cookie(request: Request, response: Response) -> Response:
    if not request.cookies.get(CSRF_COOKIE):
        response.set_cookie(
            CSRF_COOKIE, secrets.token_urlsafe(24), path="/", httponly=False,
            samesite="strict", secure=request.url.scheme == "https",
        )  # fmt: skip
    return response


def _browser_navigation(request: Request) -> bool:
    """Whether a browser is opening the page (it asks for HTML and sends no ``Authorization``:
    an API client with a key is told 403 in JSON instead)."""
    accept = request.headers.get("accept", "")
    return "text/html" in accept.lower() and "authorization" not in request.headers


async def ops_page(request: Request) -> Response:
    """``GET /ops``: the console; to the sign-in page (303) without operator credentials, or
    when a browser holding a guest's or a store's session opens it (it can sign in there with
    an operator key); a 403 in JSON for a store's key or a non-browser client with such a
    cookie.

    Raises:
        ApiError: 403 as above; 429 over the operator's request limit.
    """
    try:
        operator = await require_operator(request)
    except ApiError as exc:
        if exc.status == 401 or (exc.status == 403 and _browser_navigation(request)):
            return RedirectResponse("/ops/login", status_code=303, headers=NO_STORE)
        raise
    response = templates.TemplateResponse(
        request, "ops.html", {"operator": operator.name, "refresh_seconds": REFRESH_SECONDS},
        headers=NO_STORE,
    )  # fmt: skip
    return _with_csrf_cookie(request, response)


async def login_page(request: Request) -> Response:
    """``GET /ops/login``: the sign-in form (an operator key)."""
    response = templates.TemplateResponse(request, "ops_login.html", {}, headers=NO_STORE)
    return _with_csrf_cookie(request, response)


async def login(request: Request) -> Response:
    """``POST /ops/login`` ``{"key": "iok_..."}``: sign in; sets the ``ops_session`` cookie."""
    body = await read_body(request, KeyBody)
    operator, token = await sign_in(request, body.key)
    ctx: ApiContext = request.app.state.ctx
    await blocking(ctx.repo.ops_audit, operator.actor, "sign_in", "console", None, {})
    response = ok({"operator": operator.name})
    set_session_cookie(request, response, token)
    return response


async def logout(request: Request) -> Response:
    """``POST /ops/logout``: forget this browser's session."""
    await sign_out(request)
    response = ok({"signedOut": True})
    set_session_cookie(request, response, None)
    return response


# --- overview --------------------------------------------------------------------------------
def store_view(row: Row, window_hours: float) -> dict[str, Any]:
    """One store's line of the overview (pure).

    ``failureRate`` is failed / (done + failed) over the window (None when nothing finished);
    ``throughputPerHour`` counts items finished DONE; latencies are seconds from insert to DONE.
    """
    done, failed = int(row["done"]), int(row["failed"])
    finished = done + failed
    return {
        "storeId": row["store_id"],
        "pending": int(row["pending"]),
        "inFlight": int(row["in_flight"]),
        "throughputPerHour": round(done / window_hours, 1),
        "failedLastHour": failed,
        "failureRate": round(failed / finished, 3) if finished else None,
        "p50Seconds": None if row["p50"] is None else round(float(row["p50"]), 2),
        "p95Seconds": None if row["p95"] is None else round(float(row["p95"]), 2),
        "weight": int(row["weight"]),
        "quota": None if row["quota"] is None else int(row["quota"]),
        "paused": bool(row["paused"]),
        "pausedReason": row["paused_reason"],
    }


def process_view(doc: Mapping[str, Any], now: float) -> dict[str, Any]:
    """One process of :func:`pipeline.presence.seen` (pure): kind, host, pid, seconds since
    its last beat, and its own fields."""
    beat_at = float(doc.get("beat_at") or 0.0)
    last_cycle = doc.get("last_cycle_at")
    return {
        "kind": doc.get("kind"),
        "host": doc.get("host"),
        "pid": doc.get("pid"),
        "seenSecondsAgo": round(max(0.0, now - beat_at), 1),
        "queues": doc.get("queues"),
        "threads": doc.get("threads"),
        "leader": doc.get("leader"),
        "cycle": doc.get("cycle"),
        "lastCycleSecondsAgo": (
            None if last_cycle is None else round(max(0.0, now - float(last_cycle)), 1)
        ),
    }


def audit_view(row: Row) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "at": iso(row["at"]),
        "actor": row["actor"],
        "action": row["action"],
        "target": row["target"],
        "reason": row["reason"],
        "details": row["details"],
    }


def _queue(request: Request) -> TaskQueue:
    queue: TaskQueue | None = getattr(request.app.state, "ops_queue", None)
    if queue is None:
        queue = build_queue(request.app.state.ctx.settings)
        request.app.state.ops_queue = queue
    return queue


def _overview(ctx: ApiContext, queue: TaskQueue) -> dict[str, Any]:
    now = datetime.now(UTC)
    pause = pause_state(ctx.settings.submissions_paused, ctx.repo.get_control(SUBMISSIONS_PAUSED))
    stores = ctx.repo.ops_store_stats(now - STATS_WINDOW, MAX_STORES)
    hours = STATS_WINDOW.total_seconds() / 3600
    processes = [
        process_view(d, time.time()) for d in seen(ctx.redis, ctx.settings.redis_namespace)
    ]
    return {
        "statuses": ctx.repo.ops_status_counts(),
        "budgets": {
            "create": limiter_view(ctx.create_limiter.stats()),
            "read": limiter_view(ctx.read_limiter.stats()),
        },
        "submissions": {
            "paused": pause.paused,
            "source": pause.source,
            "reason": pause.reason,
            "changedBy": pause.changed_by,
            "changedAt": iso(pause.changed_at),
        },
        "leader": next((p for p in processes if p["kind"] == "scheduler" and p["leader"]), None),
        "processes": processes,
        "brokerQueues": queue.queue_lengths(),
        "stores": [store_view(row, hours) for row in stores],
        "audit": [audit_view(row) for row in ctx.repo.ops_audit_recent(AUDIT_SHOWN)],
    }


async def overview(request: Request) -> Response:
    """``GET /ops/api/overview``: the page's overview, stores and audit views."""
    await require_operator(request)
    ctx: ApiContext = request.app.state.ctx
    return ok(await blocking(_overview, ctx, _queue(request)))


# --- failed items ----------------------------------------------------------------------------
def _text_param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None or not value.strip():
        return None
    if len(value) > 200:
        raise validation_error(name, f"{name} must be at most 200 characters")
    return value.strip()


def _time_param(request: Request, name: str) -> datetime | None:
    value = _text_param(request, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise validation_error(name, f"{name} must be an ISO 8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int_param(request: Request, name: str, low: int, high: int) -> int | None:
    value = _text_param(request, name)
    if value is None:
        return None
    if not value.isdigit() or not low <= int(value) <= high:
        raise validation_error(name, f"{name} must be a whole number from {low} to {high}")
    return int(value)


def failed_filter(request: Request) -> FailedFilter:
    """The failed-items filter of the query string.

    Raises:
        ApiError: 400 naming a malformed parameter.
    """
    return FailedFilter(
        store_id=_text_param(request, "store"),
        job_id=_int_param(request, "job", 1, 2**63 - 1),
        model=_text_param(request, "model"),
        error_code=_text_param(request, "error_code"),
        since=_time_param(request, "since"),
        until=_time_param(request, "until"),
    )


def failed_view(row: Row, bucket: str) -> dict[str, Any]:
    """One FAILED item as operators see it: the detailed ``errorMessage`` included."""
    item_id = int(row["id"])
    has_input, _ = input_state(
        row, has_upload=upload_key_of(str(row["source_url"]), bucket) is not None
    )
    return {
        "id": item_id,
        "jobId": int(row["job_id"]),
        "storeId": row["store_id"],
        "model": row["model"],
        "name": display_name(str(row["source_url"])),
        "sourceUrl": row["source_url"],
        "errorCode": row["error_code"],
        "errorMessage": row["error_message"],
        "attempts": int(row["attempts"]),
        "createdAt": iso(row["created_at"]),
        "submittedAt": iso(row["submitted_at"]),
        "completedAt": iso(row["completed_at"]),
        "predictionId": row["prediction_id"],
        "inputUrl": f"/ops/api/items/{item_id}/input" if has_input else None,
    }


async def failed(request: Request) -> Response:
    """``GET /ops/api/failed``: FAILED items matching the filter, newest first, and the total."""
    await require_operator(request)
    ctx: ApiContext = request.app.state.ctx
    match = failed_filter(request)
    limit = _int_param(request, "limit", 1, FAILED_PAGE_MAX) or FAILED_PAGE_DEFAULT
    total, rows = await blocking(ctx.repo.ops_failed_items, match, limit)
    bucket = ctx.storage.bucket
    return ok({"total": total, "items": [failed_view(row, bucket) for row in rows]})


# --- files -----------------------------------------------------------------------------------
async def _serve(request: Request, kind: str) -> Response:
    await require_operator(request)
    ctx: ApiContext = request.app.state.ctx
    item_id = int(request.path_params["item_id"])
    row = await blocking(ctx.repo.ops_get_item, item_id)
    if row is None:
        raise ApiError(404, "not_found", f"item {item_id} not found")
    upload = upload_key_of(str(row["source_url"]), ctx.storage.bucket)
    if kind == "result":
        available, _ = result_state(row)
        key = row["output_key"]
    else:
        available, _ = input_state(row, has_upload=upload is not None)
        key = row["input_key"] or upload
    if not available:
        raise ApiError(404, "not_found", f"item {item_id} has no {kind} to show")
    limit = max(ctx.settings.max_output_bytes, ctx.settings.max_input_bytes)
    try:
        stream = await blocking(lambda: ctx.storage.open_stream(key, max_bytes=limit))
    except ObjectNotFound as exc:
        raise ApiError(404, "not_found", f"the {kind} of item {item_id} is gone") from exc
    headers = {"Cache-Control": "private, no-store", "Content-Length": str(stream.size),
               "Content-Disposition": f'inline; filename="item-{item_id}-{kind}"'}  # fmt: skip
    return StreamingResponse(relay(stream), media_type=stream.content_type, headers=headers)


async def item_input(request: Request) -> Response:
    """``GET /ops/api/items/{id}/input``: any item's stored input (or its upload)."""
    return await _serve(request, "input")


async def item_result(request: Request) -> Response:
    """``GET /ops/api/items/{id}/result``: any DONE item's result."""
    return await _serve(request, "result")


ROUTES = [
    Route("/ops", ops_page, methods=["GET"]),
    Route("/ops/login", login_page, methods=["GET"]),
    Route("/ops/login", login, methods=["POST"]),
    Route("/ops/logout", logout, methods=["POST"]),
    Route("/ops/api/overview", overview, methods=["GET"]),
    Route("/ops/api/failed", failed, methods=["GET"]),
    Route("/ops/api/items/{item_id:int}/input", item_input, methods=["GET"]),
    Route("/ops/api/items/{item_id:int}/result", item_result, methods=["GET"]),
]
