"""Creation: turn one QUEUED item into a prediction at the provider (the creation actor's body).

Order (DESIGN §4): claim the item (QUEUED → SUBMITTING, one worker only), fetch and validate the
source, store the normalized input at a stable key, presign it, take a token from the global
create budget, POST the prediction, and record its id in the statement that sets PROCESSING.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import structlog

from pipeline import metrics
from pipeline.allowlist import ModelSpec, get_model
from pipeline.errors import (
    DatabaseUnavailable,
    InvalidSourceUrl,
    PipelineError,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderTimeout,
    RateLimitTimeout,
    SourceTooLarge,
)
from pipeline.fetch import parse_s3_url
from pipeline.images import normalize_input
from pipeline.lifecycle import Fail, RetryLater, decide
from pipeline.object_keys import input_key
from pipeline.presets import resolve_preset
from pipeline.provider import Prediction
from pipeline.ratelimit import Grant
from pipeline.rows import WorkItem
from pipeline.statuses import ItemStatus
from pipeline.storage import ObjectTooLarge
from pipeline.webhooks import webhook_url
from workers.seams import CreateBudget, CreationRepository, Fetcher, InputStorage, PredictionCreator

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CreationPolicy:
    """Knobs of the creation step (from Settings).

    Attributes:
        max_attempts: attempts before a transient error becomes FAILED.
        backoff_base: first retry delay, seconds.
        backoff_cap: longest retry delay, seconds.
        acquire_timeout: longest wait for a create token, seconds.
        default_retry_after: pause when a 429 has no ``Retry-After``, seconds.
        max_input_bytes: download cap for a source image, bytes.
        max_input_pixels: decompression-bomb cap for a source image, pixels.
        sync_wait_seconds: Replicate's sync mode for creates (``Prefer: wait=N``, seconds;
            0: async), from ``REPLICATE_MAX_WAIT_MS``.
        webhook_url: the public webhook route (``IMAGEOPT_WEBHOOK_URL``); empty: no webhook.
    """

    max_attempts: int
    backoff_base: float
    backoff_cap: float
    acquire_timeout: float
    default_retry_after: float
    max_input_bytes: int
    max_input_pixels: int
    sync_wait_seconds: int = 0
    webhook_url: str = ""


CreationAction = Literal["submitted", "skipped", "retry", "failed", "released", "unknown"]
"""How a creation run ended: ``submitted`` (PROCESSING), ``skipped`` (not QUEUED, or the claim
was lost after the create), ``retry`` (PENDING with backoff), ``failed`` (FAILED), ``released``
(PENDING, the rate limit's fault: the attempt is not counted) or ``unknown`` (the create's
answer was lost; the item stays SUBMITTING and the rescuer resolves it)."""


@dataclass(frozen=True)
class CreationOutcome:
    """What one run did (:data:`CreationAction`), with the prediction or the error code."""

    action: CreationAction
    prediction_id: str | None = None
    error_code: str | None = None


class CreationService:
    """Runs the creation step for one item id; safe to run twice for the same id.

    ``on_submitted(item_id, model, prediction)`` runs after the PROCESSING row is written, with
    the create's answer (it schedules the first poll, or finishes the item at once when sync mode
    brought a finished prediction); ``on_created(grant, created)`` after each accepted create,
    with the limiter's grant and the provider's ``created_at``.
    """

    def __init__(
        self,
        *,
        repo: CreationRepository,
        storage: InputStorage,
        fetcher: Fetcher,
        provider: PredictionCreator,
        create_limiter: CreateBudget,
        allowlist: dict[str, ModelSpec],
        policy: CreationPolicy,
        on_submitted: Callable[[int, str, Prediction], None],
        on_created: Callable[[Grant, datetime | None], None] | None = None,
    ) -> None:
        self._repo = repo
        self._storage = storage
        self._fetcher = fetcher
        self._provider = provider
        self._limiter = create_limiter
        self._allowlist = allowlist
        self._policy = policy
        self._on_submitted = on_submitted
        self._on_created = on_created

    def run(self, item_id: int) -> CreationOutcome:
        """Create the prediction for ``item_id`` if it is QUEUED; otherwise do nothing.

        Never raises a :class:`PipelineError`: each one ends as a retry or a FAILED row.
        Raises :class:`pipeline.errors.DatabaseUnavailable` when Postgres is gone (the message
        is retried by the broker; the rescuer covers the rest).
        """
        item = self._repo.claim_work_item(item_id)  # claim and read in one statement
        if item is None:
            log.info("creation_skipped", item_id=item_id, reason="not_queued")
            return CreationOutcome("skipped")
        attempt = item.attempts
        bound = log.bind(item_id=item_id, job_id=item.job_id, store_id=item.store_id)
        metrics.creation_started(item.model, attempt, item.created_at)
        started = time.monotonic()
        outcome = self._run_claimed(item_id, attempt, item, bound)
        metrics.creation_finished(
            item.model, outcome.action, outcome.error_code, time.monotonic() - started
        )
        return outcome

    def _run_claimed(  # noqa: PLR0911 - one return per lifecycle outcome
        self,
        item_id: int,
        attempt: int,
        item: WorkItem,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> CreationOutcome:
        try:
            prediction = self._submit(item, bound)
        except ProviderRateLimited as exc:
            self._limiter.pause(exc.retry_after, reason="provider_429")
            self._repo.release_submission(item_id, exc.retry_after, exc.code, exc.message)
            bound.warning("provider_rate_limited", retry_after_seconds=exc.retry_after)
            return CreationOutcome("released", error_code=exc.code)
        except RateLimitTimeout as exc:
            self._repo.release_submission(item_id, 1.0, exc.code, exc.message)
            bound.info("rate_limit_wait_timeout")
            return CreationOutcome("released", error_code=exc.code)
        except (ProviderTimeout, ProviderProtocolError) as exc:
            if attempt >= self._policy.max_attempts:
                return self._handle_error(item_id, attempt, exc, bound)
            # The POST may have created a prediction whose answer was lost: submitting again
            # could pay twice. The item stays SUBMITTING; the rescuer adopts the prediction it
            # finds by the input URL, or queues the item again (docs/LIFECYCLE.md).
            bound.warning("creation_outcome_unknown", error_code=exc.code, attempt=attempt)
            return CreationOutcome("unknown", error_code=exc.code)
        except DatabaseUnavailable:
            # Never written to the row (the write would fail too): the broker retries the
            # message, and the rescuer queues the SUBMITTING item again after its timeout.
            raise
        except PipelineError as exc:
            return self._handle_error(item_id, attempt, exc, bound)
        prediction_id = prediction.id
        if not self._repo.mark_processing(item_id, prediction_id):
            # Canceled (or rescued) while we were submitting: don't leave a paid orphan running.
            bound.warning("prediction_orphaned", prediction_id=prediction_id)
            try:
                self._provider.cancel_prediction(prediction_id)
            except PipelineError as exc:
                bound.warning("orphan_cancel_failed", error_code=exc.code)
            return CreationOutcome("skipped", prediction_id=prediction_id)
        bound.info(
            "prediction_created",
            prediction_id=prediction_id,
            attempt=attempt,
            prediction_status=prediction.status,
        )
        self._on_submitted(item_id, item.model, prediction)
        return CreationOutcome("submitted", prediction_id=prediction_id)

    def _submit(self, item: WorkItem, bound: structlog.typing.FilteringBoundLogger) -> Prediction:
        spec = get_model(item.model, self._allowlist)
        params = dict(item.params)
        spec.validate(item.prompt, params)
        if item.preset:  # an unknown preset fails before anything is paid
            resolve_preset(self._repo, item.store_id, item.preset)
        key = self._store_input(item, spec)
        image_url = self._storage.presigned_get_url(key)
        payload = spec.build_input(image_url, item.prompt, params)
        grant = self._limiter.acquire_grant(self._policy.acquire_timeout)
        bound.debug("create_token_granted", waited_seconds=round(grant.waited, 3))
        hook = self._policy.webhook_url
        prediction = self._provider.create_prediction(
            spec,
            payload,
            wait_seconds=self._policy.sync_wait_seconds,
            webhook=webhook_url(hook, item.id) if hook else None,
        )
        if self._on_created is not None:  # the arrival correction of the create budget
            self._on_created(grant, prediction.created)
        return prediction

    def _store_input(self, item: WorkItem, spec: ModelSpec) -> str:
        existing = item.input_key
        if existing and self._storage.exists(existing):
            return existing
        data = self._read_source(item.source_url)
        image = normalize_input(
            data, max_pixels=self._policy.max_input_pixels, target_max_pixels=spec.max_input_pixels
        )
        key = input_key(item.store_id, item.job_id, item.id, image.extension)
        self._storage.put_bytes(key, image.data, image.content_type)
        metrics.STORED_BYTES.labels("input").inc(len(image.data))
        self._repo.record_input(item.id, key)
        return key

    def _read_source(self, url: str) -> bytes:
        s3 = parse_s3_url(url)
        if s3 is None:
            data = self._fetcher.fetch(url).data
            metrics.FETCHED_BYTES.labels("source_http").inc(len(data))
            return data
        bucket, key = s3
        if bucket != self._storage.bucket:
            raise InvalidSourceUrl(f"s3 source bucket {bucket!r} is not the pipeline's bucket")
        # No HEAD first: get_bytes refuses by Content-Length before reading (one request less).
        try:
            data = self._storage.get_bytes(key, max_bytes=self._policy.max_input_bytes)
        except ObjectTooLarge as exc:
            raise SourceTooLarge(
                f"source is more than {self._policy.max_input_bytes} bytes"
            ) from exc
        metrics.FETCHED_BYTES.labels("source_s3").inc(len(data))
        return data

    def _handle_error(
        self,
        item_id: int,
        attempt: int,
        exc: PipelineError,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> CreationOutcome:
        p = self._policy
        decision = decide(
            exc, attempt, max_attempts=p.max_attempts, base=p.backoff_base, cap=p.backoff_cap
        )
        if isinstance(decision, RetryLater):
            self._repo.retry_later(
                item_id, (ItemStatus.SUBMITTING,), decision.delay, decision.code, decision.message
            )
            bound.warning(
                "creation_retry",
                error_code=exc.code,
                error_message=exc.message,
                attempt=attempt,
                delay_seconds=round(decision.delay, 2),
            )
            return CreationOutcome("retry", error_code=exc.code)
        assert isinstance(decision, Fail)
        self._repo.fail_item(item_id, (ItemStatus.SUBMITTING,), decision.code, decision.message)
        bound.warning("item_failed", error_code=decision.code, error_message=decision.message)
        return CreationOutcome("failed", error_code=decision.code)
