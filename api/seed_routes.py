"""The seeds' API paths (seed 002 §4 and §5, as seed 001's smoke tests call them), on top of the
route logic of :mod:`api.jobs`, :mod:`api.catalog` and :mod:`api.files`: one implementation,
two paths. Auth, CSRF, throttles, quotas and owner-gating are those of the ``/api/*`` routes.

=====================================  ==========================================================
``POST /api/ai-image/generate``        the synchronous form: a job of one upload, answered when
                                       its item is final (200) or after
                                       ``IMAGEOPT_API_GENERATE_WAIT_SECONDS`` (202, job URL)
``GET /api/ai-image/usage``            ``GET /api/usage`` (seeds a ``guest_id`` cookie)
``POST /api/ai-image/jobs``            ``POST /api/jobs``
``GET /api/ai-image/jobs/{id}``        ``GET /api/jobs/{id}``
``POST /api/ai-image/jobs/{id}/cancel`` ``POST /api/jobs/{id}/cancel``
``GET /r2-ai/results/{item}``          ``GET /api/items/{item}/result``, 403 without the owner's
                                       credentials
``GET /r2-ai/uploads/{item}``          ``GET /api/items/{item}/input``, likewise
=====================================  ==========================================================

The generate route goes through the same queue, global rate limiter and fairness as every other
job: it inserts a job like the console's upload, reads the item's row once, and then sleeps until
the process's one ``LISTEN imageopt_item_final`` connection (:mod:`api.final_items`) says the
item may be final, re-reading at least every :data:`~api.final_items.SAFETY_READ_SECONDS` in
case a notification was lost. A thousand waiting callers cost sleeping coroutines: no
threads, and about two indexed reads each, not one every half second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api import catalog, files, jobs
from api.context import ApiContext, blocking
from api.envelope import ApiError, error_response, ok, validation_error
from api.final_items import SAFETY_READ_SECONDS, FinalItemWatch
from pipeline.allowlist import ModelSpec
from pipeline.errors import NotJson, PipelineError, public_message
from pipeline.statuses import FINAL_ITEM_STATUSES, ItemStatus
from pipeline.validation import check_text, parse_json

DISCONNECT_CHECK_SECONDS = 1.0
"""How often a waiting generate request checks that its client is still there (seconds; no
query: the ASGI receive channel)."""
GENERATE_READS = Counter(
    "imageopt_api_generate_item_reads_total",
    "Reads of a waiting generate request's item in Postgres, by what prompted them.",
    ["reason"],  # first | notified | safety
)
FORM_FIELDS = frozenset({"image", "model", "prompt", "preset", "params", "steps"})
"""Fields of a generate form with a meaning of their own; any other text field must be one of
the model's parameters (``scale=2``, ``face_enhance=true``)."""
STEPS_PARAMS = ("num_inference_steps", "steps")
"""The model parameter the seed's ``steps`` field sets (SDXL: ``num_inference_steps``,
at most 20, the default: seed 001 "SDXL default steps set to 20 (provider cap)")."""

Handler = Callable[[Request], Awaitable[Response]]


# --- the generate form ---------------------------------------------------------------------------
def _form_value(field: str, raw: Any) -> Any:
    """A text field's value as the model parameter it names: JSON when it parses (``2``,
    ``true``, ``0.5``), else the text.

    Raises:
        MalformedInput: a NUL, a lone surrogate, an overlong text or number (a 400 naming it).
    """
    if not isinstance(raw, str):
        raise validation_error(field, f"{field} must be text")
    check_text(raw, field)
    try:
        return parse_json(raw, field)
    except NotJson:
        return raw.strip()


def _param_name(spec: ModelSpec, field: str) -> str:
    if field != "steps":
        return field
    return next((p for p in STEPS_PARAMS if p in spec.allowed_params), field)


def generate_fields(ctx: ApiContext, fields: Mapping[str, Any]) -> jobs.JobRequest:
    """Read a generate form: ``model``, optional ``prompt``, ``preset``, ``params`` (a JSON
    object), ``steps`` and any of the model's parameters as fields of their own.

    Raises:
        ApiError: 400 ``validation_error`` naming the field (an unknown model, a parameter the
            model does not take, a value out of its range: ``steps`` over 20 for SDXL).
    """
    model = jobs.text_field(fields.get("model"), "model", 200) or ctx.settings.replicate_image_model
    spec = ctx.models.get(model)
    if spec is None:
        jobs.check_allowlisted(ctx, model, None, {})  # raises the allowlist's 400
        raise AssertionError("unreachable")
    params = jobs.params_field(fields.get("params"))
    for field, raw in fields.items():
        if field in FORM_FIELDS - {"steps"}:
            continue
        value = _form_value(field, raw)
        name = _param_name(spec, field)
        check = spec.allowed_params.get(name)
        if check is None:
            raise validation_error(field, f"model {model} does not take {field!r}")
        try:
            check(value)
        except (TypeError, ValueError) as exc:
            raise validation_error(field, f"{field}: {exc}") from exc
        params[name] = value
    return jobs.job_request(
        ctx,
        {"model": model, "prompt": fields.get("prompt"), "preset": fields.get("preset"),
         "params": params},
    )  # fmt: skip


async def _wait_final(
    ctx: ApiContext, request: Request, job_id: int, wait_seconds: float
) -> tuple[dict[str, Any] | None, bool]:
    """The job's item as last read, and whether it is final: the wait ends when it is, when
    ``wait_seconds`` ran out, when the client left, or when Postgres stopped answering (the
    job goes on in every case).

    The item is read once at the start, then when the process's :class:`FinalItemWatch` says
    the job's item may be final, and at least every :data:`SAFETY_READ_SECONDS` in case a
    notification was lost; between reads the request sleeps, checking every
    :data:`DISCONNECT_CHECK_SECONDS` whether the client left."""
    watch: FinalItemWatch = request.app.state.final_items
    deadline = time.monotonic() + wait_seconds
    item: dict[str, Any] | None = None
    reason = "first"
    with watch.watching(job_id) as woken:
        while True:
            woken.clear()
            try:
                rows = await blocking(ctx.repo.api_job_items, job_id)
            except PipelineError:
                return item, False
            GENERATE_READS.labels(reason=reason).inc()
            item = dict(rows[0]) if rows else item
            if item is not None and item["status"] in FINAL_ITEM_STATUSES:
                return item, True
            told = await _sleep_until_told(request, woken, deadline)
            if told is None:
                return item, False
            reason = told


async def _sleep_until_told(request: Request, woken: asyncio.Event, deadline: float) -> str | None:
    """Sleep until ``woken`` is set (``"notified"``) or the safety interval passed
    (``"safety"``); None when the deadline passed or the client left first."""
    safety_at = time.monotonic() + SAFETY_READ_SECONDS
    while True:
        now = time.monotonic()
        if now >= deadline or await request.is_disconnected():
            return None
        if now >= safety_at:
            return "safety"
        with anyio.move_on_after(min(DISCONNECT_CHECK_SECONDS, deadline - now, safety_at - now)):
            await woken.wait()
        if woken.is_set():
            return "notified"


async def generate(request: Request) -> Response:
    """``POST /api/ai-image/generate`` (multipart: one ``image``, ``model``, optional
    ``prompt``, ``steps`` and model parameters).

    Answers 200 ``{model, originalUrl, imageUrl, usage, limits, jobId, itemId}`` when the item
    is DONE within ``IMAGEOPT_API_GENERATE_WAIT_SECONDS``; 202 ``{jobId, status, jobUrl}``
    (``Location``: the job) when the wait runs out; 502 ``generation_failed`` (the item's
    ``errorCode`` and its public sentence) or 409 ``canceled`` when it ended otherwise. The
    URLs are absolute, owner-gated ``/r2-ai/...`` links.

    Raises:
        ApiError: what ``POST /api/jobs`` raises for the input, the caller and its limits.
    """
    accepted = await jobs.accept_job(
        request, read_fields=generate_fields, multipart_only=True, max_files=1
    )
    ctx, job_id = accepted.ctx, accepted.job_id
    wait = ctx.settings.api_generate_wait_seconds
    item, final = await _wait_final(ctx, request, job_id, wait)
    try:
        response: Response = await _generate_answer(ctx, request, accepted, item, final=final)
    except ApiError as exc:  # the job exists: a new guest still gets its cookie to look at it
        response = error_response(exc)
    if accepted.token is not None:
        ctx.set_guest_cookie(request, response, accepted.token)
    return response


async def _generate_answer(
    ctx: ApiContext,
    request: Request,
    accepted: jobs.Accepted,
    item: dict[str, Any] | None,
    *,
    final: bool,
) -> Response:
    job_id = accepted.job_id
    if item is None or not final:
        url = str(request.url_for("seed_job", job_id=job_id))
        status = item["status"] if item is not None else ItemStatus.PENDING
        return ok({"jobId": job_id, "status": status, "jobUrl": url},
                  status=202, headers={"Location": url})  # fmt: skip
    item_id = int(item["id"])
    details = {"jobId": job_id, "itemId": item_id, "errorCode": item.get("error_code")}
    if item["status"] == ItemStatus.CANCELED:
        raise ApiError(409, "canceled", f"job {job_id} was canceled", details=details)
    if item["status"] != ItemStatus.DONE:
        message = public_message(item.get("error_code")) or "the image could not be generated"
        raise ApiError(502, "generation_failed", message, details=details)
    usage = await catalog.usage_view(ctx, accepted.caller, request)
    job = await blocking(ctx.repo.api_get_job, job_id)
    return ok({
        "model": job["model"] if job else None,
        "originalUrl": str(request.url_for("seed_upload", item_id=item_id)),
        "imageUrl": str(request.url_for("seed_result", item_id=item_id)),
        "usage": usage["usage"],
        "limits": usage["limits"],
        "jobId": job_id,
        "itemId": item_id,
    })  # fmt: skip


# --- owner-gated files ---------------------------------------------------------------------------
def owner_gated(handler: Handler) -> Handler:
    """``handler`` with a request that carries no credentials answered 403, not 401: under
    ``/r2-ai/`` a file is its owner's, and anyone else, signed in or not, is someone else
    (seed 001: "403 without cookie"). A bad API key stays 401."""

    async def gated(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            if exc.status == 401 and "authorization" not in request.headers:
                raise ApiError(403, "forbidden", "this file belongs to another owner") from exc
            raise

    gated.__doc__ = handler.__doc__
    return gated


ROUTES = [
    Route("/api/ai-image/generate", generate, methods=["POST"]),
    Route("/api/ai-image/usage", catalog.usage, methods=["GET"]),
    Route("/api/ai-image/jobs", jobs.create_job, methods=["POST"]),
    Route("/api/ai-image/jobs/{job_id:int}", jobs.get_job, methods=["GET"], name="seed_job"),
    Route("/api/ai-image/jobs/{job_id:int}/cancel", jobs.cancel_job, methods=["POST"]),
    Route("/r2-ai/results/{item_id:int}", owner_gated(files.item_result), methods=["GET"],
          name="seed_result"),
    Route("/r2-ai/uploads/{item_id:int}", owner_gated(files.item_input), methods=["GET"],
          name="seed_upload"),
]  # fmt: skip
