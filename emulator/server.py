"""HTTP routes of the Replicate-compatible emulator (Starlette), and its uvicorn entry point.

API routes (JSON shapes as on https://replicate.com/docs/reference/http):

- ``POST /v1/models/{owner}/{name}/predictions``   create for a model (201)
- ``POST /v1/predictions``                        create for ``version`` (id, ``owner/name``
                                                  or ``owner/name:id``) (201)
- ``GET  /v1/predictions``                        list, newest first, cursor pages
- ``GET  /v1/predictions/{id}``                   one prediction
- ``POST /v1/predictions/{id}/cancel``            cancel
- ``GET  /v1/webhooks/default/secret``             the ``whsec_`` key webhooks are signed with
- ``GET  /v1/models/{owner}/{name}``               a model (``latest_version`` included)
- ``GET  /v1/models/{owner}/{name}/versions[/{id}]`` its versions (one per model here)
- ``GET  /files/{id}/output.{ext}``               output image (no auth, like a CDN)

Control routes for tests (no auth): ``GET /_emulator/stats``, ``GET|POST /_emulator/config``,
``POST /_emulator/reset``. Every API request passes, in order: auth (401), the sliding-window
limit of its budget (429 with ``Retry-After``), the 5xx fault, the handler, the malformed-JSON
fault, the slow-response delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator import ops
from emulator.config import EmulatorConfig, advertised_base_url
from emulator.limits import SlidingWindowLimiter, retry_after_header
from emulator.models import model_routes
from emulator.models import version_id as version_id_of
from emulator.runner import MAX_DATA_URL_BYTES, Runner, decode_data_url
from emulator.store import TERMINAL, Store, utc_now_iso
from emulator.webhooks import WebhookSender
from pipeline.allowlist import ModelSpec, build_allowlist
from pipeline.webhooks import new_secret

log = structlog.get_logger(__name__)

Handler = Callable[[Request], Awaitable[Response]]

MAX_PREFER_WAIT_SECONDS = 60
"""Longest ``Prefer: wait=N`` Replicate honours (its sync mode allows 1-60 seconds)."""

NOT_IMAGE_BODY = b"<html><body>this is not an image</body></html>\n"


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None
) -> Response:
    """An error answer in Replicate's shape: ``{"title", "detail", "status"}``."""
    return JSONResponse(
        {"title": title, "detail": detail, "status": status}, status_code=status, headers=headers
    )


class EmulatorState:
    """Everything one running emulator holds: config, state, limiters and the runner."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.initial = config
        self.config = config
        self.allowlist = build_allowlist()
        self.by_version = {s.version: s for s in self.allowlist.values() if s.version}
        self.store = Store(config.max_predictions, config.max_outputs)
        self.create_limiter = SlidingWindowLimiter(config.create_rpm, config.window_seconds)
        self.read_limiter = SlidingWindowLimiter(config.read_rpm, config.window_seconds)
        for spec in self.allowlist.values():
            self.by_version.setdefault(version_id_of(spec), spec)
        self.runner = Runner(
            self.store, lambda: self.config, max_workers=config.max_workers, on_final=self.final
        )
        self.webhooks = WebhookSender(
            config.webhook_secret or new_secret(), self.store, lambda: self.config,
            self.runner.chance,
        )  # fmt: skip
        self._fault_files: dict[str, bytes] = {}

    def final(self, prediction_id: str) -> None:
        """A prediction may have become final: send its webhook (once) if it asked for one."""
        taken = self.store.take_webhook(prediction_id)
        if taken is not None:
            self.webhooks.send(*taken)

    def apply(self, config: EmulatorConfig) -> None:
        """Switch to a new config (limits are re-sized, the history kept)."""
        seed_changed = config.rng_seed != self.config.rng_seed
        self.config = config
        self.create_limiter.configure(config.create_rpm, config.window_seconds)
        self.read_limiter.configure(config.read_rpm, config.window_seconds)
        if seed_changed:
            self.runner.reseed(config.rng_seed)

    def reset(self) -> None:
        """Forget all predictions, outputs, counters and limit history; restore the config."""
        self.store.clear()
        self.create_limiter.reset()
        self.read_limiter.reset()
        self.apply(self.initial)
        self.runner.reseed(self.initial.rng_seed)

    def fault_file(self, mode: str) -> bytes:
        """The cached body of the ``bomb`` or ``huge`` output mode (built once)."""
        key = f"{mode}:{self.config.huge_bytes}"
        if key not in self._fault_files:
            if mode == "bomb":
                self._fault_files[key] = ops.decompression_bomb_png()
            else:
                self._fault_files[key] = ops.huge_png(self.config.huge_bytes)
        return self._fault_files[key]

    def base_url(self, request: Request) -> str:
        """Scheme and host for absolute URLs: the configured one, else the request's own."""
        if self.config.public_base_url:
            return self.config.public_base_url
        return str(request.base_url).rstrip("/")


def _authorized(config: EmulatorConfig, request: Request) -> bool:
    if config.token is None:
        return True
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() not in ("bearer", "token"):
        return False
    return hmac.compare_digest(credential.strip().encode(), config.token.encode())


def _malformed(response: Response) -> Response:
    body = bytes(response.body)
    return Response(
        body[: max(1, len(body) // 2)],
        status_code=response.status_code,
        media_type="application/json",
    )


def _api(state: EmulatorState, endpoint: str, budget: str) -> Callable[[Handler], Handler]:
    """Wrap an API handler with auth, rate limit, fault injection and counters."""

    def decorate(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            config = state.config
            state.store.count_request(endpoint)
            response = await _guarded(state, config, budget, handler, request)
            if config.slow_response_seconds > 0:
                state.store.count_fault("slow_response")
                await asyncio.sleep(config.slow_response_seconds)
            state.store.count_response(response.status_code)
            return response

        return wrapped

    return decorate


async def _guarded(
    state: EmulatorState, config: EmulatorConfig, budget: str, handler: Handler, request: Request
) -> Response:
    if not _authorized(config, request):
        return problem(401, "Unauthenticated", "You did not pass a valid authentication token")
    limiter = state.create_limiter if budget == "create" else state.read_limiter
    if budget == "create":  # created_at is the arrival: counted and stamped at one instant
        request.state.arrived_at = utc_now_iso()
    wait = limiter.try_acquire()
    if wait > 0:
        retry_after = retry_after_header(wait)
        return problem(
            429,
            "Request was throttled.",
            f"Request was throttled. Expected available in {retry_after} second(s).",
            headers={"Retry-After": retry_after},
        )
    if state.runner.chance(config.http_5xx_rate):
        state.store.count_fault("http_5xx")
        return problem(503, "Service Unavailable", "emulated outage (http_5xx_rate)")
    response = await handler(request)
    if state.runner.chance(config.malformed_json_rate):
        state.store.count_fault("malformed_json")
        return _malformed(response)
    return response


def _validate_input(spec: ModelSpec, payload: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Loose input validation: the image field (and the prompt where needed) must be there.

    Returns:
        ``(input, image URLs)``.

    Raises:
        ValueError: with Replicate's style of message (``- input: ... is required``).
    """
    if not isinstance(payload, dict):
        raise ValueError("- input: input is required and must be an object")
    if spec.kind == "edit":
        images = payload.get("image_input")
        if not isinstance(images, list) or not images:
            raise ValueError("- input: image_input is required (a list of URLs)")
    else:
        images = [payload.get(spec.image_field)]
    for url in images:
        _check_file_input(spec, url)
    if spec.requires_prompt and not str(payload.get("prompt") or "").strip():
        raise ValueError("- input: prompt is required")
    return payload, tuple(images)


def _check_file_input(spec: ModelSpec, url: Any) -> None:
    """A file input is an http(s) URL, or a data URL of at most :data:`MAX_DATA_URL_BYTES`.

    Raises:
        ValueError: with Replicate's style of message.
    """
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return
    if isinstance(url, str) and url.startswith("data:"):
        try:
            size = len(decode_data_url(url))
        except ValueError as exc:
            raise ValueError(f"- input.{spec.image_field}: {exc}") from exc
        if size > MAX_DATA_URL_BYTES:
            raise ValueError(
                f"- input.{spec.image_field}: data URLs are limited to 256 KB; "
                "upload larger files and pass an http(s) URL"
            )
        return
    raise ValueError(f"- input.{spec.image_field}: must be an http(s) URL or a data URL")


def _webhook_of(body: dict[str, Any]) -> str | None:
    """The ``webhook`` of a create request: None, or an http(s) URL.

    Raises:
        ValueError: not an http(s) URL.
    """
    webhook = body.get("webhook")
    if webhook is None:
        return None
    if not isinstance(webhook, str) or not webhook.startswith(("http://", "https://")):
        raise ValueError("- webhook: must be an http(s) URL")
    return webhook


async def _read_json(request: Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


async def _create(state: EmulatorState, request: Request, spec: ModelSpec, body: Any) -> Response:
    try:
        payload, images = _validate_input(spec, body.get("input"))
        webhook = _webhook_of(body)
    except ValueError as exc:
        return problem(422, "Input validation failed", str(exc))
    record = state.store.create(
        model=spec.name,
        version=spec.version or "hidden",
        spec=spec,
        input=payload,
        image_urls=images,
        base_url=state.base_url(request),
        output_is_list=spec.kind == "img2img",
        created_at=getattr(request.state, "arrived_at", None) or utc_now_iso(),
        webhook=webhook,
    )
    state.runner.schedule(record, state.runner.plan())
    log.debug("emulator_prediction_created", prediction_id=record.id, model=spec.name)
    wait = _prefer_wait(request.headers.get("prefer", ""))
    deadline = time.monotonic() + wait
    snapshot = state.store.snapshot(record.id) or record.to_json()
    pause = 0.005  # fast predictions answer within milliseconds; slow ones cost few checks
    while wait and snapshot["status"] not in TERMINAL and time.monotonic() < deadline:
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)
        snapshot = state.store.snapshot(record.id) or snapshot
    return JSONResponse(snapshot, status_code=201)


def _prefer_wait(header: str) -> float:
    """Seconds to hold a create request from ``Prefer: wait`` / ``Prefer: wait=N``."""
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                seconds = int(value) if value else MAX_PREFER_WAIT_SECONDS
            except ValueError:
                return 0.0
            return float(min(max(seconds, 0), MAX_PREFER_WAIT_SECONDS))
    return 0.0


def _api_routes(state: EmulatorState) -> list[Route]:
    @_api(state, "create_model_prediction", "create")
    async def create_for_model(request: Request) -> Response:
        name = f"{request.path_params['owner']}/{request.path_params['name']}"
        spec = state.allowlist.get(name)
        if spec is None:
            return problem(404, "Not found", f"model {name} is not available on this emulator")
        body = await _read_json(request)
        if not isinstance(body, dict):
            return problem(400, "Bad request", "request body must be a JSON object")
        return await _create(state, request, spec, body)

    @_api(state, "create_prediction", "create")
    async def create_for_version(request: Request) -> Response:
        body = await _read_json(request)
        if not isinstance(body, dict):
            return problem(400, "Bad request", "request body must be a JSON object")
        spec = _resolve_version(state, body.get("version"))
        if spec is None:
            return problem(
                422, "Invalid version or not permitted", "Invalid version or not permitted"
            )
        return await _create(state, request, spec, body)

    @_api(state, "get_prediction", "read")
    async def get_prediction(request: Request) -> Response:
        snapshot = state.store.snapshot(request.path_params["prediction_id"])
        if snapshot is None:
            return problem(404, "Not found", "prediction not found")
        return JSONResponse(snapshot)

    @_api(state, "cancel_prediction", "read")
    async def cancel_prediction(request: Request) -> Response:
        snapshot = state.store.cancel(request.path_params["prediction_id"])
        if snapshot is None:
            return problem(404, "Not found", "prediction not found")
        state.final(request.path_params["prediction_id"])
        return JSONResponse(snapshot)

    @_api(state, "webhook_secret", "read")
    async def webhook_secret(request: Request) -> Response:
        return JSONResponse({"key": state.webhooks.secret})

    @_api(state, "list_predictions", "read")
    async def list_predictions(request: Request) -> Response:
        cursor = request.query_params.get("cursor")
        try:
            before = int(cursor) if cursor else None
        except ValueError:
            return problem(400, "Bad request", "invalid cursor")
        results, next_cursor = state.store.page(before, state.config.page_size)
        next_url = None
        if next_cursor is not None:
            query = urlencode({"cursor": next_cursor})
            next_url = f"{state.base_url(request)}/v1/predictions?{query}"
        return JSONResponse({"next": next_url, "previous": None, "results": results})

    return [
        Route("/v1/models/{owner}/{name}/predictions", create_for_model, methods=["POST"]),
        Route("/v1/predictions", create_for_version, methods=["POST"]),
        Route("/v1/predictions", list_predictions, methods=["GET"]),
        Route("/v1/predictions/{prediction_id}", get_prediction, methods=["GET"]),
        Route("/v1/predictions/{prediction_id}/cancel", cancel_prediction, methods=["POST"]),
        Route("/v1/webhooks/default/secret", webhook_secret, methods=["GET"]),
        *model_routes(state.allowlist, _api(state, "get_model", "read")),
    ]


def _file_route(state: EmulatorState) -> Route:
    async def serve_file(request: Request) -> Response:
        config = state.config
        state.store.count_request("files")
        file = state.store.output(request.path_params["prediction_id"])
        if config.slow_response_seconds > 0:
            await asyncio.sleep(config.slow_response_seconds)
        if file is None or request.path_params["ext"] != file.ext:
            state.store.count_response(404)
            return problem(404, "Not found", "output not found or expired")
        body = file.data
        if config.output_mode == "not_image":
            body = NOT_IMAGE_BODY
        elif config.output_mode == "truncated":
            body = ops.truncated(file.data)
        elif config.output_mode in ("bomb", "huge"):
            body = await asyncio.to_thread(state.fault_file, config.output_mode)
        state.store.count_response(200)
        return Response(body, media_type=file.content_type)

    return Route("/files/{prediction_id}/output.{ext}", serve_file, methods=["GET"])


def _control_routes(state: EmulatorState) -> list[Route]:
    async def stats(request: Request) -> Response:
        data = state.store.stats()
        data["create_requests_in_window"] = state.create_limiter.in_window()
        data["read_requests_in_window"] = state.read_limiter.in_window()
        return JSONResponse(data)

    async def config_get(request: Request) -> Response:
        return JSONResponse(state.config.public_view())

    async def config_set(request: Request) -> Response:
        changes = await _read_json(request)
        if not isinstance(changes, dict):
            return problem(400, "Bad request", "body must be a JSON object of config fields")
        try:
            state.apply(state.config.with_changes(changes))
        except (ValueError, TypeError) as exc:
            return problem(422, "Invalid config", str(exc))
        log.info("emulator_config_changed", fields=sorted(changes))
        return JSONResponse(state.config.public_view())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    return [
        Route("/_emulator/stats", stats, methods=["GET"]),
        Route("/_emulator/config", config_get, methods=["GET"]),
        Route("/_emulator/config", config_set, methods=["POST"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
    ]


def _resolve_version(state: EmulatorState, version: Any) -> ModelSpec | None:
    """Find the model of ``version``: an id, ``owner/name`` or ``owner/name:id``."""
    if not isinstance(version, str) or not version:
        return None
    name, colon, version_id = version.partition(":")
    if colon:
        spec = state.allowlist.get(name)
        return spec if spec is not None and version_id_of(spec) == version_id else None
    if "/" in version:
        return state.allowlist.get(version)
    return state.by_version.get(version)


def build_app(config: EmulatorConfig) -> Starlette:
    """Build the emulator's ASGI app; its worker pool stops with the app's lifespan.

    Args:
        config: the emulator's knobs (see :class:`~emulator.config.EmulatorConfig`).
    """
    state = EmulatorState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(state.runner.close)
            await asyncio.to_thread(state.webhooks.close)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return problem(status, "Not found" if status == 404 else "Error", str(exc))

    routes = [*_api_routes(state), _file_route(state), *_control_routes(state)]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )
    app.state.emulator = state
    return app


def serve(host: str, port: int, config: EmulatorConfig) -> None:
    """Run the emulator with uvicorn until interrupted (blocking).

    Args:
        host: interface to bind, e.g. ``127.0.0.1``.
        port: TCP port to bind.
        config: the emulator's knobs; ``public_base_url`` defaults to ``http://host:port``.
    """
    if config.public_base_url is None:
        config = config.with_public_base_url(advertised_base_url(host, port))
    log.info("emulator_starting", host=host, port=port, auth=config.token is not None)
    uvicorn.run(
        build_app(config),
        host=host,
        port=port,
        log_level="warning",
        log_config=None,  # uvicorn's lines go to the root logger: the process's own format
        ws="none",
    )
