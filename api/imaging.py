"""The size preview and image analysis over HTTP (``POST /api/preview``, ``/analyze``).

Both take one uploaded ``image`` (multipart, the same byte and content-type checks as job
creation) and answer at once; nothing is stored. They need a caller (an API key or the
console's guest cookie; 401 otherwise), count against the per-caller request limit, and, as
state-changing-looking ``POST`` requests, pass the CSRF/Origin check when sent with cookies.

Decoding and encoding are CPU-bound: they run in the thread pool, at most
:data:`MAX_CONCURRENT_IMAGE_WORK` at a time per process, so a burst of previews cannot take
every thread (nor hold more than that many decoded images in memory) while the rest of the
api waits.

The JSON is the dataclasses' ``as_dict()`` with keys in camelCase like the rest of the API,
except model parameter names inside ``params``, which are sent back to ``POST /api/jobs`` as
they are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import structlog
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.admission import admit
from api.context import ApiContext, blocking
from api.envelope import ApiError, ok, validation_error
from api.golive import require_flag
from api.jobs import allowlisted, params_field, read_image, text_field
from pipeline.allowlist import ModelSpec
from pipeline.analysis import analyze as run_analysis
from pipeline.errors import ImageTooLarge, InvalidParams, PipelineError, SourceError
from pipeline.golive import CUSTOM_PRESETS, IMAGE_ANALYSIS, SIZE_PREVIEW
from pipeline.presets import Preset, check_name, resolve_preset
from pipeline.preview import SizePreview, preview_pipeline, preview_size

log = structlog.get_logger(__name__)

T = TypeVar("T")
MAX_CONCURRENT_IMAGE_WORK = 2
"""Previews and analyses running at once in one api process (each holds a decoded image)."""
MAX_FORM_FIELDS = 5
KEEP_KEYS = frozenset({"params"})
"""Keys whose values are passed through as they are (model parameter names)."""


def new_image_limiter() -> anyio.CapacityLimiter:
    """The app's limiter for image work (built at startup, in the app's event loop)."""
    return anyio.CapacityLimiter(MAX_CONCURRENT_IMAGE_WORK)


async def image_work(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """Run CPU-bound image work in the thread pool, within :data:`MAX_CONCURRENT_IMAGE_WORK`."""
    limiter: anyio.CapacityLimiter = request.app.state.image_limiter
    return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)


def camel(key: str) -> str:
    """``estimated_bytes`` -> ``estimatedBytes``."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_keys(value: Any) -> Any:
    """``value`` with every dict key camelCased, recursively (not below :data:`KEEP_KEYS`)."""
    if isinstance(value, dict):
        return {camel(k): v if k in KEEP_KEYS else camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


# --- request ---------------------------------------------------------------------------------
async def _form(request: Request) -> FormData:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "multipart/form-data":
        raise ApiError(
            415, "unsupported_media_type", "send multipart/form-data with one image file",
            details={"field": "image"},
        )  # fmt: skip
    try:
        return await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
    except (HTTPException, MultiPartException) as exc:
        raise ApiError(
            400, "validation_error", "unreadable multipart body (exactly one image file)",
            details={"field": "image"},
        ) from exc  # fmt: skip


async def _upload(ctx: ApiContext, form: FormData) -> tuple[str, bytes]:
    """The one ``image`` file of the form, checked like a job's uploads: ``(name, data)``."""
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        raise validation_error("image", "add one image file (field image)")
    name, data, _ = await read_image(ctx, upload, 0)
    return name, data


def _model(ctx: ApiContext, form: FormData) -> tuple[ModelSpec, dict[str, Any]] | None:
    """The form's ``model`` and ``params`` (JSON object), checked against the allowlist (400
    naming ``model`` or ``params``); None when no model is given."""
    name = text_field(form.get("model"), "model", 200)
    if name is None:
        if form.get("params") not in (None, ""):
            raise validation_error("model", "params need a model (field model)")
        return None
    spec = allowlisted(ctx, name)
    try:
        return spec, spec.clean_params(params_field(form.get("params")))
    except InvalidParams as exc:
        raise validation_error("params", exc.message) from exc


def _preset(ctx: ApiContext, store_id: str, form: FormData, *, required: bool) -> Preset | None:
    """The form's ``preset``, resolved for the caller's store (400 naming ``preset``); None
    when it is empty and not ``required`` (a model's own file is stored then)."""
    raw = form.get("preset")
    if raw is not None and not isinstance(raw, str):
        raise validation_error("preset", "preset must be text")
    if not raw or not raw.strip():
        if not required:
            return None
        raise validation_error("preset", "choose a preset (field preset; see GET /api/presets)")
    try:
        return resolve_preset(ctx.repo, store_id, check_name(raw.strip()))
    except PipelineError as exc:
        raise validation_error("preset", exc.message) from exc


def _image_error(name: str, exc: SourceError) -> ApiError:
    """An image the checks let through but the decoder refused: 413 over the pixel cap, 415
    otherwise; ``details.field`` is ``image``."""
    details = {"field": "image", "file": name, "code": exc.code}
    if isinstance(exc, ImageTooLarge):
        return ApiError(413, "payload_too_large", f"{name}: {exc.message}", details=details)
    return ApiError(
        415, "unsupported_media_type", f"{name}: the image cannot be decoded", details=details
    )


# --- routes ----------------------------------------------------------------------------------
async def preview(request: Request) -> Response:
    """``POST /api/preview``: multipart ``image`` + ``preset`` and/or ``model`` (+ ``params``)
    -> the estimated stored result: the model's output (the real model's size and format),
    then the preset if any; without a model, the preset applied to the upload itself."""
    admission = await admit(request)
    await require_flag(request, SIZE_PREVIEW)
    ctx, caller = admission.ctx, admission.caller
    form = await _form(request)
    try:
        model = _model(ctx, form)
        pick = functools.partial(_preset, required=model is None)
        chosen = await blocking(pick, ctx, caller.store_id, form)
        if chosen is not None and not chosen.builtin:
            await require_flag(request, CUSTOM_PRESETS)
        name, data = await _upload(ctx, form)
    finally:
        await form.close()
    limit = ctx.settings.max_input_pixels
    budget = ctx.settings.preview_max_render_pixels  # a huge custom preset is laid out smaller
    run: Callable[[], SizePreview]
    if model is None:
        assert chosen is not None  # required without a model
        run = functools.partial(
            preview_size, data, chosen, max_pixels=limit, max_render_pixels=budget
        )
    else:
        run = functools.partial(
            preview_pipeline, data, *model, chosen, max_pixels=limit, max_render_pixels=budget
        )
    try:
        result = await image_work(request, run)
    except SourceError as exc:
        raise _image_error(name, exc) from exc
    log.info("api_preview", owner_type=caller.owner_type, preset=result.preset,
             model=model[0].name if model else None, input_bytes=len(data),
             estimated_bytes=result.estimated_bytes)  # fmt: skip
    return ok(camel_keys(result.as_dict()))


async def analyze(request: Request) -> Response:
    """``POST /api/analyze``: multipart ``image`` -> dimensions, format, transparency, photo or
    graphic, faces, and a recommended model and preset with the reasons."""
    admission = await admit(request)
    await require_flag(request, IMAGE_ANALYSIS)
    ctx, caller = admission.ctx, admission.caller
    form = await _form(request)
    try:
        name, data = await _upload(ctx, form)
    finally:
        await form.close()
    run = functools.partial(run_analysis, data, max_pixels=ctx.settings.max_input_pixels)
    try:
        result = await image_work(request, run)
    except SourceError as exc:
        raise _image_error(name, exc) from exc
    log.info("api_analyze", owner_type=caller.owner_type, input_bytes=len(data),
             kind=result.kind, faces=result.faces)  # fmt: skip
    return ok(camel_keys(result.as_dict()))


ROUTES = [
    Route("/api/preview", preview, methods=["POST"]),
    Route("/api/analyze", analyze, methods=["POST"]),
]
