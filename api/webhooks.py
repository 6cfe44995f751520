"""``POST /api/webhooks/replicate``: the provider's "prediction completed" webhooks.

Each delivery is checked before anything else (:mod:`pipeline.webhooks`: Replicate's
signature over ``id.timestamp.body``, a timestamp within 5 minutes); its ``webhook-id`` is
claimed in Redis so a retry or a replay is answered as handled; then the prediction goes to
the webhook queue (``imageopt-webhook``, its own, so it never waits behind polls) as a message
with its payload, and a polling worker finishes the item
through its normal path (the one a poll takes, without the GET): conditional UPDATEs, so a
webhook and a poll racing give one result.

Why the queue and not here: finishing downloads the output and stores it in the bucket (tens
of megabytes, seconds), with retries; the api stays light, answers the provider within
milliseconds, and the workers that already hold the storage and provider clients do the work.

Answers: 202 queued; 200 a duplicate or a non-final event (nothing to do); 400 no valid
``item`` or not a prediction; 401 signature or timestamp refused; 404 webhooks are off
(``IMAGEOPT_WEBHOOK_URL`` empty); 503 Redis, the queue or the provider's secret unavailable
(the provider retries).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

import redis
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.context import ApiContext, blocking
from api.envelope import ApiError
from pipeline.errors import PipelineError, ProviderProtocolError, WebhookRejected
from pipeline.provider import Prediction
from pipeline.taskqueue import TaskQueue, webhook_payload
from pipeline.webhooks import ITEM_PARAM, Deliveries, WebhookVerifier
from pipeline.wiring import build_queue

log = structlog.get_logger(__name__)

MAX_ITEM_ID = 2**63 - 1
"""Item ids are Postgres ``bigint``."""


@dataclass
class Receiver:
    """What the route needs, built at its first call (the secret may come from the provider)."""

    verifier: WebhookVerifier
    deliveries: Deliveries
    queue: TaskQueue


_build_lock = threading.Lock()


def _build(app: Starlette, ctx: ApiContext) -> Receiver:
    with _build_lock:
        found: Receiver | None = getattr(app.state, "webhook_receiver", None)
        if found is not None:
            return found
        secret = ctx.settings.replicate_webhook_secret.get_secret_value()
        if not secret:
            secret = ctx.provider.webhook_secret()
        queue = build_queue(ctx.settings)
        receiver = Receiver(
            WebhookVerifier(secret), Deliveries(ctx.redis, ctx.settings.redis_namespace), queue
        )
        app.state.webhook_receiver = receiver
        return receiver


def _item_id(request: Request) -> int:
    raw = request.query_params.get(ITEM_PARAM, "")
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) <= MAX_ITEM_ID:
        raise ApiError(400, "invalid_webhook", f"the {ITEM_PARAM} query parameter is not an id")
    return int(raw)


def _unavailable(what: str) -> ApiError:
    return ApiError(
        503, "service_unavailable", f"{what} is unavailable; retry later",
        headers={"Retry-After": "5"},
    )  # fmt: skip


def _receive(
    app: Starlette, ctx: ApiContext, item_id: int, body: bytes, headers: Mapping[str, str]
) -> str:
    """Everything one delivery needs after the body is read, in one worker-thread call: the
    receiver (built once), the signature, the ``webhook-id`` claim and the enqueue. (One
    thread hop, not one per step: profiled, the hops were a third of the route's CPU,
    docs/BENCHMARKS.md.)

    Returns:
        ``accepted``, ``duplicate`` or ``ignored`` (not a final prediction).

    Raises:
        ApiError: 400, 401 or 503 as the module docstring lists.
    """
    receiver: Receiver | None = getattr(app.state, "webhook_receiver", None)
    if receiver is None:
        try:
            receiver = _build(app, ctx)
        except PipelineError as exc:
            log.warning("webhook_secret_unavailable", error_code=exc.code)
            raise _unavailable("the webhook secret") from exc
    try:
        data = receiver.verifier.verify(body, headers)
        prediction = Prediction.from_json(data)
    except WebhookRejected as exc:
        log.warning("webhook_rejected", item_id=item_id, reason=exc.message)
        raise ApiError(401, "invalid_signature", "the webhook signature is not valid") from exc
    except ProviderProtocolError as exc:
        raise ApiError(400, "invalid_webhook", "the webhook body is not a prediction") from exc
    if not prediction.terminal:
        return "ignored"
    message_id = headers["webhook-id"]
    try:
        first = receiver.deliveries.first(message_id)
    except PipelineError as exc:
        raise _unavailable("the webhook deliveries") from exc
    if not first:
        log.info("webhook_duplicate", item_id=item_id, prediction_id=prediction.id)
        return "duplicate"
    try:
        receiver.queue.send_webhook(item_id, webhook_payload(data))
    except redis.RedisError as exc:  # the broker's Redis: let the provider retry
        receiver.deliveries.forget(message_id)
        log.warning("webhook_not_queued", item_id=item_id, error=type(exc).__name__)
        raise _unavailable("the queue") from exc
    log.info("webhook_accepted", item_id=item_id, prediction_id=prediction.id)
    return "accepted"


async def replicate_webhook(request: Request) -> Response:
    """Verify one webhook delivery and queue its final prediction on the webhook queue."""
    ctx: ApiContext = request.app.state.ctx
    if not ctx.settings.replicate_webhook_url:
        raise ApiError(404, "not_found", "webhooks are not enabled")
    item_id = _item_id(request)
    body = await request.body()
    status = await blocking(_receive, request.app, ctx, item_id, body, request.headers)
    return JSONResponse({"status": status}, status_code=202 if status == "accepted" else 200)


PATH = "/api/webhooks/replicate"
"""The receiving route; its body is verified before anything parses it (the api's input guard
leaves it alone, :mod:`api.input_guard`)."""
ROUTES = [Route(PATH, replicate_webhook, methods=["POST"])]
