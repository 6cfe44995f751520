"""Job routes: create (multipart upload or JSON source URLs), list, get, live events, cancel,
retry (seed 002 §4: ``POST /api/ai-image/jobs``, ``GET .../jobs/[id]``, ``.../cancel``)."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from api.admission import JOB, admit
from api.auth import Caller
from api.context import SECONDS_PER_DAY, ApiContext, blocking
from api.envelope import ApiError, ok, validation_error
from api.golive import check_model, golive_state, require_flag
from api.views import job_view
from pipeline.allowlist import ModelSpec
from pipeline.cancellation import SOURCE_DELETED, SOURCE_DELETED_MESSAGE
from pipeline.cancellation import cancel_job as cancel_job_items
from pipeline.errors import InvalidParams, InvalidSourceUrl, MissingPrompt, NotJson, PipelineError
from pipeline.golive import CUSTOM_PRESETS
from pipeline.images import ALLOWED_CONTENT_TYPES
from pipeline.presets import Preset, resolve_preset
from pipeline.repository import ApiQuotas, ApiUsage, FailedFilter, NewJob
from pipeline.uploads import new_batch, sniff_content_type, store_upload
from pipeline.uploads import upload_key_of as _upload_key_of
from pipeline.validation import check_source_url, check_text, parse_json

log = structlog.get_logger(__name__)

MAX_PROMPT_CHARS = 2000
MAX_FORM_FIELDS = 20
LIST_LIMIT = 50
"""Most jobs on one page of ``GET /api/jobs``."""
LIST_PAGE = 20
"""Jobs on a page of ``GET /api/jobs`` without ``limit``."""
EVENTS_POLL_SECONDS = 1.0
"""How often the event stream re-reads a job (seconds): one indexed query per tick."""
EVENTS_HEARTBEAT_SECONDS = 15.0
EVENTS_MAX_SECONDS = 600.0
"""An event stream ends after this long; ``EventSource`` reconnects on its own."""
_JSON_TYPES = ("application/json",)


@dataclass(frozen=True)
class JobRequest:
    """A validated creation request, before uploads."""

    model: str
    prompt: str | None
    preset: str | None
    params: dict[str, Any]


@dataclass(frozen=True)
class Submission:
    """A validated request with its items; ``uploads`` are the source URLs this request
    stored in the bucket (deleted again when no job is created)."""

    job: JobRequest
    items: list[dict[str, Any]]
    uploads: list[str]


# --- validation ----------------------------------------------------------------------------------
def text_field(value: Any, field: str, max_chars: int) -> str | None:
    """A request's text field: None when absent; a 400 naming ``field`` when it is not a
    string, longer than ``max_chars`` characters, or holds a NUL or a lone surrogate."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise validation_error(field, f"{field} must be a string")
    value = value.strip()
    check_text(value, field, max_chars=max_chars)  # too long, NUL, lone surrogate: a 400
    return value or None


def params_field(value: Any, field: str = "params") -> dict[str, Any]:
    """Model parameters as an object (or a JSON text of one, as multipart sends it); a 400
    naming ``field`` otherwise."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = parse_json(value, field)  # a hostile value is a MalformedInput (400)
        except NotJson as exc:
            raise validation_error(field, f"{field} must be a JSON object") from exc
    if not isinstance(value, dict):
        raise validation_error(field, f"{field} must be a JSON object")
    return value


def allowlisted(ctx: ApiContext, model: str) -> ModelSpec:
    """The allowlisted model; a 400 naming ``model`` (with the allowed names) otherwise."""
    spec = ctx.models.get(model)
    if spec is None:
        raise ApiError(
            400, "validation_error", f"model {model!r} is not allowed",
            details={"field": "model", "allowed": sorted(ctx.models)},
        )  # fmt: skip
    return spec


def check_allowlisted(
    ctx: ApiContext, model: str, prompt: str | None, params: dict[str, Any]
) -> None:
    """A 400 unless ``model`` is on the allowlist and takes ``prompt`` and ``params``."""
    spec = allowlisted(ctx, model)
    try:
        spec.validate(prompt, params)
    except MissingPrompt as exc:
        raise validation_error("prompt", exc.message) from exc
    except InvalidParams as exc:
        raise validation_error("params", exc.message) from exc


def _check_preset(ctx: ApiContext, store_id: str, name: str) -> None:
    """Raise a 400 naming ``preset`` unless it resolves for the store (built in or custom)."""
    try:
        resolve_preset(ctx.repo, store_id, name)
    except PipelineError as exc:
        raise validation_error("preset", exc.message) from exc


def job_request(ctx: ApiContext, fields: Mapping[str, Any]) -> JobRequest:
    """The job-wide fields of a create request (model, prompt, preset, params), checked."""
    model = text_field(fields.get("model"), "model", 200) or ctx.settings.replicate_image_model
    prompt = text_field(fields.get("prompt"), "prompt", MAX_PROMPT_CHARS)
    preset = text_field(fields.get("preset"), "preset", 63)
    params = params_field(fields.get("params"))
    check_allowlisted(ctx, model, prompt, params)
    return JobRequest(model, prompt, preset, params)


def quota_error(usage: Sequence[ApiUsage], requested: int) -> ApiError | None:
    """The 429 ``quota_exceeded`` for the first quota without room for ``requested`` items,
    with ``Retry-After`` = seconds until its oldest counted item leaves the window; None when
    every quota has room."""
    full = next((u for u in usage if not u.room_for(requested)), None)
    if full is None:
        return None
    wait = (full.frees_at - datetime.now(UTC)).total_seconds() if full.frees_at else SECONDS_PER_DAY
    whose = " for guests of this address" if full.scope == "address" else ""
    return ApiError(
        429, "quota_exceeded",
        f"quota of {full.limit} images per 24 h{whose} reached "
        f"({full.used} used, {requested} requested)",
        details={"limit": full.limit, "used": full.used, "requested": requested,
                 "scope": full.scope},
        headers={"Retry-After": str(max(1, int(wait) + 1))},
    )  # fmt: skip


async def _check_quota(ctx: ApiContext, quotas: ApiQuotas, new_items: int) -> None:
    """Refuse early, before any upload is stored, a request the quotas have no room for. Only
    a first look: the check that holds under concurrency is the insert's
    (:meth:`Repository.api_insert_job_within_quota`).

    Raises:
        ApiError: 429 ``quota_exceeded``.
    """
    error = quota_error(await blocking(ctx.repo.api_quota_usage, quotas), new_items)
    if error is not None:
        raise error


# --- reading uploads -----------------------------------------------------------------------------
async def read_image(ctx: ApiContext, upload: UploadFile, index: int) -> tuple[str, bytes, str]:
    """Read and check one uploaded file: ``(name, data, content_type)``."""
    name = upload.filename or f"image-{index}"
    limit = ctx.settings.api_max_upload_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(
            413, "payload_too_large", f"{name}: larger than {limit // (1024 * 1024)} MB",
            details={"field": "image", "file": name, "maxBytes": limit},
        )  # fmt: skip
    content_type = sniff_content_type(data)
    if content_type not in ALLOWED_CONTENT_TYPES:
        raise ApiError(
            415, "unsupported_media_type", f"{name}: not a JPEG, PNG or WebP image",
            details={"field": "image", "file": name, "allowed": sorted(ALLOWED_CONTENT_TYPES)},
        )  # fmt: skip
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.size  # noqa: B018 - parsing the header is the check
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ApiError(
            415, "unsupported_media_type", f"{name}: the image cannot be read",
            details={"field": "image", "file": name},
        ) from exc  # fmt: skip
    return name, data, content_type


FieldsReader = Callable[[ApiContext, Mapping[str, Any]], JobRequest]
"""Turns a request's text fields into a :class:`JobRequest` (raises :class:`ApiError`)."""


async def _multipart_items(
    ctx: ApiContext,
    request: Request,
    caller: Caller,
    quotas: ApiQuotas,
    *,
    read_fields: FieldsReader,
    max_files: int,
) -> Submission:
    try:
        form = await request.form(max_files=max_files, max_fields=MAX_FORM_FIELDS)
    except (HTTPException, MultiPartException) as exc:
        raise ApiError(
            400, "validation_error", f"unreadable multipart body (at most {max_files} files)",
            details={"field": "image"},
        ) from exc  # fmt: skip
    try:
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        job = read_fields(ctx, fields)
        files = [v for k, v in form.multi_items() if k == "image" and isinstance(v, UploadFile)]
        if not files:
            raise validation_error("image", "add at least one image file (field image)")
        await _check_quota(ctx, quotas, len(files))
        images = [await read_image(ctx, f, i) for i, f in enumerate(files)]
    finally:
        await form.close()
    batch = new_batch()
    urls: list[str] = []
    try:
        for index, (name, data, content_type) in enumerate(images):
            upload = functools.partial(
                store_upload, ctx.storage, store_id=caller.store_id, batch=batch, index=index,
                name=name, data=data, content_type=content_type,
            )  # fmt: skip
            urls.append(await blocking(upload))
    except BaseException:
        await _discard_uploads(ctx, urls)
        raise
    return Submission(job, [{"source_url": url} for url in urls], urls)


async def _discard_uploads(ctx: ApiContext, urls: Sequence[str]) -> None:
    """Delete the uploads of a request that created no job (best effort: a failure is logged).

    Only this request's own objects (``uploads/{store}/{random batch}/...``) are touched.
    """
    keys = [key for url in urls if (key := _upload_key_of(url, ctx.storage.bucket)) is not None]
    try:
        for key in keys:
            await blocking(ctx.storage.delete, key)
    except PipelineError as exc:
        log.warning("api_upload_cleanup_failed", uploads=len(keys), error_code=exc.code)


async def _json_items(ctx: ApiContext, request: Request, quotas: ApiQuotas) -> Submission:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "validation_error", "body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "validation_error", "body must be a JSON object")
    job = job_request(ctx, body)
    raw_items = body.get("items")
    limit = ctx.settings.api_max_items_per_job
    if not isinstance(raw_items, list) or not raw_items:
        raise validation_error("items", "items must be a non-empty list")
    if len(raw_items) > limit:
        raise validation_error("items", f"at most {limit} items per job")
    items = [_json_item(ctx, job, i, raw) for i, raw in enumerate(raw_items)]
    await _check_quota(ctx, quotas, len(items))
    return Submission(job, items, [])


def _json_item(ctx: ApiContext, job: JobRequest, index: int, raw: Any) -> dict[str, Any]:
    field = f"items[{index}]"
    if not isinstance(raw, dict):
        raise validation_error(field, f"{field} must be an object with sourceUrl")
    url = raw.get("sourceUrl")
    if not isinstance(url, str):
        raise validation_error(f"{field}.sourceUrl", f"{field}.sourceUrl must be a string")
    try:
        check_source_url(url)
    except InvalidSourceUrl as exc:
        raise validation_error(f"{field}.sourceUrl", exc.message) from exc
    if not url.lower().startswith(("http://", "https://")):
        raise validation_error(f"{field}.sourceUrl", "sourceUrl must be an http(s) URL")
    item: dict[str, Any] = {"source_url": url}
    prompt = text_field(raw.get("prompt"), f"{field}.prompt", MAX_PROMPT_CHARS)
    params = params_field(raw.get("params"), f"{field}.params")
    if prompt is not None or params:
        try:
            ctx.models[job.model].validate(prompt or job.prompt, {**job.params, **params})
        except InvalidParams as exc:
            raise validation_error(f"{field}.params", exc.message) from exc
        if prompt is not None:
            item["prompt"] = prompt
        if params:
            item["params"] = params
    return item


# --- routes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Accepted:
    """A job a request created: who asked (``token``: a new guest's cookie, to set) and its id."""

    ctx: ApiContext
    caller: Caller
    token: str | None
    job_id: int


async def accept_job(
    request: Request,
    *,
    read_fields: FieldsReader = job_request,
    multipart_only: bool = False,
    max_files: int | None = None,
) -> Accepted:
    """Authenticate (or start a guest), throttle, check quotas, store uploads and insert the
    job: the one path every creating route takes (``POST /api/jobs``, the seed's
    ``/api/ai-image/jobs`` and ``/api/ai-image/generate``).

    Args:
        request: a multipart (``image`` files) or, unless ``multipart_only``, JSON request.
        read_fields: reads the text fields of a multipart body.
        multipart_only: refuse JSON bodies (415).
        max_files: most ``image`` files (default ``IMAGEOPT_API_MAX_FILES_PER_JOB``).

    Raises:
        ApiError: 400/413/415 for the input, 401, 429 for throttles and quotas.
    """
    admission = await admit(request, guest="new", create=True)
    ctx, caller, token = admission.ctx, admission.caller, admission.guest_token
    quotas = ctx.quotas(caller, request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    files = max_files or ctx.settings.api_max_files_per_job
    if media_type == "multipart/form-data":
        submission = await _multipart_items(
            ctx, request, caller, quotas, read_fields=read_fields, max_files=files
        )
    elif media_type in _JSON_TYPES and not multipart_only:
        submission = await _json_items(ctx, request, quotas)
    else:
        wanted = "multipart/form-data" if multipart_only else "multipart/form-data or JSON"
        raise ApiError(415, "unsupported_media_type", f"send {wanted}")
    try:
        await _golive_gates(request, ctx, caller, submission.job)
        job_id = await _insert(ctx, caller, quotas, submission)
    except ApiError:  # refused before anything was written; never after a commit
        await _discard_uploads(ctx, submission.uploads)
        raise
    log.info("api_job_created", job_id=job_id, store_id=caller.store_id,
             owner_type=caller.owner_type, items=len(submission.items))  # fmt: skip
    return Accepted(ctx, caller, token, job_id)


async def _golive_gates(request: Request, ctx: ApiContext, caller: Caller, job: JobRequest) -> None:
    """The go-live levers on a new job: its model switched off (400 ``model_disabled``), a
    custom preset while ``CUSTOM_PRESETS_ENABLED`` is off (404 ``feature_disabled``)."""
    await check_model(request, job.model)
    if job.preset is not None and not (await golive_state(request)).flag(CUSTOM_PRESETS):
        chosen = await blocking(_resolved_preset, ctx, caller.store_id, job.preset)
        if chosen is not None and not chosen.builtin:
            await require_flag(request, CUSTOM_PRESETS)


def _resolved_preset(ctx: ApiContext, store_id: str, name: str) -> Preset | None:
    try:
        return resolve_preset(ctx.repo, store_id, name)
    except PipelineError:
        return None  # unknown: _insert answers its 400


async def create_job(request: Request) -> Response:
    """``POST /api/jobs``: multipart (``image`` files) or JSON (``items[].sourceUrl``)."""
    accepted = await accept_job(request)
    ctx, job_id = accepted.ctx, accepted.job_id
    view = await blocking(_job_view, ctx, job_id)
    response = ok(view, status=201, headers={"Location": f"/api/jobs/{job_id}"})
    if accepted.token is not None:
        ctx.set_guest_cookie(request, response, accepted.token)
    return response


async def _insert(
    ctx: ApiContext, caller: Caller, quotas: ApiQuotas, submission: Submission
) -> int:
    """Insert the job, its check against the quotas and the insert being one atomic step.

    Raises:
        ApiError: 400 for an unknown preset, 429 ``quota_exceeded`` when a quota has no room
            (e.g. concurrent requests of one guest used it up after the early check); in both
            cases nothing was written.
        DatabaseUnavailable: Postgres did not answer (the job may or may not exist).
    """
    job = submission.job
    if job.preset is not None:
        await blocking(_check_preset, ctx, caller.store_id, job.preset)
    new = NewJob(
        store_id=caller.store_id, model=job.model, prompt=job.prompt, params=job.params,
        preset=job.preset, items=submission.items,
    )  # fmt: skip
    owner = (caller.owner_type, caller.owner_id)
    job_id, usage = await blocking(ctx.repo.api_insert_job_within_quota, new, owner, quotas)
    if job_id is None:
        error = quota_error(usage, len(submission.items))
        assert error is not None  # the repository refuses only when a quota has no room
        raise error
    return job_id


def _job_view(ctx: ApiContext, job_id: int) -> dict[str, Any]:
    job = ctx.repo.api_get_job(job_id)
    assert job is not None
    items = ctx.repo.api_job_items(job_id)
    bucket = ctx.storage.bucket
    return job_view(job, items, lambda url: _upload_key_of(url, bucket))


async def get_job(request: Request) -> Response:
    """``GET /api/jobs/{id}``: the job, its counters and items with links (polling)."""
    admission = await admit(request, owned=JOB)
    ctx, job_id = admission.ctx, admission.resource_id
    return ok(await blocking(_job_view, ctx, job_id))


def _page_param(request: Request, name: str, low: int, high: int) -> int | None:
    """A query parameter that must be a whole number in ``[low, high]`` (None when absent).

    Raises:
        ApiError: 400 ``validation_error`` naming ``name``.
    """
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if (
        len(value) > 20
        or not value.isascii()
        or not value.isdigit()
        or not low <= int(value) <= high
    ):
        raise validation_error(name, f"{name} must be a whole number from {low} to {high}")
    return int(value)


def _history(ctx: ApiContext, caller: Caller, before: int | None, limit: int) -> dict[str, Any]:
    rows = ctx.repo.api_list_jobs(
        caller.owner_type, caller.owner_id, caller.store_id, limit, before
    )
    items: dict[int, list[Any]] = {}
    for item in ctx.repo.api_items_of_jobs([int(row["id"]) for row in rows]):
        items.setdefault(int(item["job_id"]), []).append(item)
    bucket = ctx.storage.bucket
    jobs = [
        job_view(row, items.get(int(row["id"]), []), lambda url: _upload_key_of(url, bucket))
        for row in rows
    ]
    more = len(rows) == limit
    return {"jobs": jobs, "nextBefore": jobs[-1]["id"] if jobs and more else None}


async def list_jobs(request: Request) -> Response:
    """``GET /api/jobs?before=ID&limit=N``: the caller's jobs (a guest's own, or a store's),
    newest first, with their items (status, links, expired flags); ``limit`` 1..50 (default
    :data:`LIST_PAGE`); ``nextBefore`` is the ``before`` of the next page (null: no more).

    Raises:
        ApiError: 400 for a ``before`` or ``limit`` that is not a whole number in range.
    """
    admission = await admit(request)
    ctx, caller = admission.ctx, admission.caller
    before = _page_param(request, "before", 1, 2**63 - 1)
    limit = _page_param(request, "limit", 1, LIST_LIMIT) or LIST_PAGE
    return ok(await blocking(_history, ctx, caller, before, limit))


async def jobs_collection(request: Request) -> Response:
    """``/api/jobs``: GET lists, POST creates (one route, so a 405 names both methods)."""
    if request.method == "POST":
        return await create_job(request)
    return await list_jobs(request)


async def job_events(request: Request) -> Response:
    """``GET /api/jobs/{id}/events``: server-sent events, one ``job`` event per change, then
    ``end`` when every item is final (one request for a whole job's progress)."""
    admission = await admit(request, owned=JOB)
    ctx, job_id = admission.ctx, admission.resource_id
    return StreamingResponse(
        _events(ctx, request, job_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(ctx: ApiContext, request: Request, job_id: int) -> AsyncIterator[str]:
    started = last_beat = time.monotonic()
    previous = None
    yield "retry: 2000\n\n"
    while time.monotonic() - started < EVENTS_MAX_SECONDS:
        if await request.is_disconnected():
            return
        try:
            view = await blocking(_job_view, ctx, job_id)
        except PipelineError:
            yield ": database unavailable, retrying\n\n"
            await asyncio.sleep(EVENTS_POLL_SECONDS)
            continue
        text = json.dumps(view, separators=(",", ":"))
        if text != previous:
            previous = text
            yield f"event: job\ndata: {text}\n\n"
            last_beat = time.monotonic()
        if view["final"]:
            yield "event: end\ndata: {}\n\n"
            return
        if time.monotonic() - last_beat > EVENTS_HEARTBEAT_SECONDS:
            yield ": keep-alive\n\n"
            last_beat = time.monotonic()
        await asyncio.sleep(EVENTS_POLL_SECONDS)


async def cancel_job(request: Request) -> Response:
    """``POST /api/jobs/{id}/cancel``: unfinished items become CANCELED (running predictions
    are canceled at the provider, best effort)."""
    admission = await admit(request, owned=JOB)
    ctx, job_id = admission.ctx, admission.resource_id
    results = await blocking(cancel_job_items, ctx.repo, ctx.provider, job_id)
    failures = sum(1 for r in results if r.provider_canceled is False)
    if failures:
        log.warning("api_provider_cancel_failed", job_id=job_id, failures=failures)
    view = await blocking(_job_view, ctx, job_id)
    return ok({"canceled": len(results), "providerCancelFailures": failures, "job": view})


async def retry_job(request: Request) -> Response:
    """``POST /api/jobs/{id}/retry``: FAILED items back to PENDING (attempts start over).

    Items whose uploaded source retention deleted stay FAILED (:mod:`pipeline.cancellation`);
    the answer counts them (``sourceDeleted``).

    Raises:
        ApiError: 409 ``source_deleted`` when every FAILED item was skipped for that reason.
    """
    admission = await admit(request, owned=JOB)
    ctx, job_id = admission.ctx, admission.resource_id
    ids = await blocking(ctx.repo.retry_failed, job_id, None)
    skipped = await blocking(ctx.repo.ops_count_source_deleted, FailedFilter(job_id=job_id))
    log.info("api_job_retried", job_id=job_id, items=len(ids), source_deleted=skipped)
    if skipped and not ids:
        raise ApiError(
            409, SOURCE_DELETED, f"{skipped} failed item(s) cannot be retried: "
            f"{SOURCE_DELETED_MESSAGE}", details={"sourceDeleted": skipped},
        )  # fmt: skip
    view = await blocking(_job_view, ctx, job_id)
    return ok({"retried": len(ids), "sourceDeleted": skipped, "job": view})


ROUTES = [
    Route("/api/jobs", jobs_collection, methods=["GET", "POST"]),
    Route("/api/jobs/{job_id:int}", get_job, methods=["GET"]),
    Route("/api/jobs/{job_id:int}/events", job_events, methods=["GET"]),
    Route("/api/jobs/{job_id:int}/cancel", cancel_job, methods=["POST"]),
    Route("/api/jobs/{job_id:int}/retry", retry_job, methods=["POST"]),
]
