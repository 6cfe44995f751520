"""Polling: advance one PROCESSING item (the polling actor's body).

GET the prediction under the read budget. ``succeeded``: download the output, check it decodes
within the pixel cap, apply the output preset if the item or its job names one
(:mod:`pipeline.presets`; the stored bytes, format, size and content type are then the
preset's), store it at ``results/{store_id}/{job_id}/{item_id}.{ext}`` and set DONE with its
size. ``failed``/``canceled``: FAILED with the provider's error, except a prediction that failed
because the provider could not download our input (:mod:`pipeline.prediction_errors`): that
item goes back to PENDING for a new prediction, an attempt like any other (up to
``IMAGEOPT_MAX_ATTEMPTS``). Otherwise poll again later with backoff. Transient errors poll
again; they never lose the prediction id.

When the create's own answer already brought a finished prediction (Replicate's sync mode,
``REPLICATE_MAX_WAIT_MS``), the creation worker calls :meth:`PollingService.run` with it: the
same steps without the GET and its read token, and without a poll message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import structlog

from pipeline import metrics
from pipeline.errors import (
    OutputInvalid,
    PipelineError,
    PredictionCanceled,
    PredictionInputUnreachable,
    ProviderRateLimited,
    RateLimitTimeout,
    SourceError,
)
from pipeline.images import ImageInfo, format_of_pillow, inspect_output
from pipeline.lifecycle import Fail, backoff_delay, decide, poll_delay
from pipeline.object_keys import result_key
from pipeline.prediction_errors import FailureClassifier
from pipeline.presets import apply_preset, resolve_preset
from pipeline.provider import Prediction
from pipeline.rows import WorkItem
from pipeline.statuses import ItemStatus
from workers.seams import PollingRepository, PredictionReader, ReadBudget, ResultStorage

log = structlog.get_logger(__name__)

EARLY_WEBHOOK_DELAY = 1.0
"""Seconds before a webhook that arrived while its item was SUBMITTING is looked at again."""


@dataclass(frozen=True)
class PollingPolicy:
    """Knobs of the polling step (from Settings); durations in seconds, sizes in bytes/pixels."""

    initial_delay: float
    max_delay: float
    acquire_timeout: float
    max_output_bytes: int
    max_output_pixels: int
    webhooks: bool = False
    """Webhooks on: a new prediction gets no poll message; the scheduler's rescuer polls it
    if its webhook has not come by the expected runtime plus the grace (scheduler/rescuer.py)."""
    max_attempts: int = 5
    """Attempts (predictions) per item when the provider could not download the input."""
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    failures: FailureClassifier = field(default_factory=FailureClassifier)
    """Tells a prediction whose input never reached the model (a new one, as an attempt) from
    the model's own failure (final)."""


PollAction = Literal["done", "failed", "again", "retried", "skipped"]
"""How a poll ended: ``done`` (DONE, or someone else finished it first), ``failed`` (FAILED),
``again`` (poll after the outcome's ``delay``), ``retried`` (back to PENDING for a new
prediction after ``delay``) or ``skipped`` (not PROCESSING with this prediction)."""


@dataclass(frozen=True)
class PollOutcome:
    """What one poll did (:data:`PollAction`); ``delay`` in seconds for ``again``."""

    action: PollAction
    delay: float = 0.0
    error_code: str | None = None


class PollingService:
    """Runs one poll of one item; safe to run twice for the same id."""

    def __init__(
        self,
        *,
        repo: PollingRepository,
        storage: ResultStorage,
        provider: PredictionReader,
        read_limiter: ReadBudget,
        policy: PollingPolicy,
        on_runtime: Callable[[str, float], None] | None = None,
        first_delay: Callable[[str], float] | None = None,
    ) -> None:
        """``on_runtime(model, seconds)`` hears the runtime of each prediction that ends DONE;
        ``first_delay(model)`` gives the wait before a new prediction's first poll, seconds
        (both :class:`pipeline.pollhints.RuntimeHints`; default ``policy.initial_delay``)."""
        self._on_runtime = on_runtime
        self._first_delay = first_delay or (lambda _model: policy.initial_delay)
        self._repo = repo
        self._storage = storage
        self._provider = provider
        self._limiter = read_limiter
        self._policy = policy

    def after_create(self, item_id: int, model: str, prediction: Prediction) -> float | None:
        """What follows a create's answer: finish it here, or the delay of the first poll.

        A final answer (sync mode) is completed at once, without a GET or a poll message. If
        that cannot be done now (e.g. Postgres is gone), the poll path takes over.

        Args:
            item_id: the item, PROCESSING with ``prediction``'s id.
            model: the item's model (for the first poll's delay).
            prediction: the create's answer.

        Returns:
            Seconds until the poll message the caller sends, or ``None`` when none is needed
            (finished here, or webhooks on: the webhook or the rescuer's scan ends the item).
        """
        first = self._first_delay(model)
        if not prediction.terminal:
            return None if self._policy.webhooks else first
        try:
            outcome = self.run(item_id, known=prediction)
        except PipelineError as exc:
            log.warning("sync_completion_deferred", item_id=item_id, error_code=exc.code)
            return first
        return outcome.delay if outcome.action == "again" else None

    def run(  # noqa: PLR0911 - one return per outcome
        self, item_id: int, known: Prediction | None = None
    ) -> PollOutcome:
        """Poll ``item_id`` if it is PROCESSING; the caller schedules ``again`` outcomes.

        Args:
            item_id: the item.
            known: the prediction as the provider just reported it (the create's answer in
                sync mode, or a verified webhook); it is used instead of a GET, so no read
                token is taken.

        Returns:
            ``done``, ``failed``, ``again`` (with the delay, seconds; for a ``known``
            prediction whose item is still SUBMITTING: look again with it later),
            ``retried`` (PENDING for a new prediction; nothing for the caller to send) or
            ``skipped`` (the row is not PROCESSING with a prediction id, or ``known`` is
            another prediction).
        """
        item = self._repo.get_work_item(item_id)
        if known is not None and item is not None and item.status == ItemStatus.SUBMITTING:
            # A webhook that overtook the create's answer: look again once the id is written.
            return PollOutcome("again", delay=EARLY_WEBHOOK_DELAY)
        if item is None or item.status != ItemStatus.PROCESSING or not item.prediction_id:
            return PollOutcome("skipped")
        if known is not None and known.id != item.prediction_id:
            return PollOutcome("skipped")
        bound = log.bind(
            item_id=item_id,
            job_id=item.job_id,
            store_id=item.store_id,
            prediction_id=item.prediction_id,
        )
        polls = item.poll_count
        try:
            prediction = known or self._get(item.prediction_id)
            if prediction.status == "succeeded":
                return self._finish(item, prediction, bound, polled=known is None)
            if known is None:
                polls = self._repo.record_poll(item_id) or polls + 1
            self._record_unfinished_cost(item_id, prediction)
            if prediction.status == "failed":
                raise self._policy.failures.classify(prediction.error)
            if prediction.status == "canceled":
                raise PredictionCanceled("prediction was canceled at the provider")
        except ProviderRateLimited as exc:
            self._limiter.pause(exc.retry_after, reason="provider_429")
            return PollOutcome("again", delay=exc.retry_after, error_code=exc.code)
        except RateLimitTimeout as exc:
            return PollOutcome("again", delay=1.0, error_code=exc.code)
        except PipelineError as exc:
            return self._after_error(item, exc, polls, bound)
        delay = poll_delay(
            polls, initial=self._policy.initial_delay, maximum=self._policy.max_delay
        )
        return PollOutcome("again", delay=delay)

    def _after_error(
        self,
        item: WorkItem,
        exc: PipelineError,
        polls: int,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> PollOutcome:
        """A poll's error: a new prediction, the same poll later, or FAILED."""
        if isinstance(exc, PredictionInputUnreachable):
            return self._new_prediction_later(item, exc, bound)
        if exc.transient:
            delay = backoff_delay(
                min(polls, 8) + 1, base=self._policy.initial_delay, cap=self._policy.max_delay
            )
            bound.warning("poll_retry", error_code=exc.code, delay_seconds=round(delay, 2))
            metrics.item_error("polling", exc.code, "retry")
            return PollOutcome("again", delay=delay, error_code=exc.code)
        return self._fail(item, exc.code, exc.message, bound)

    def _fail(
        self,
        item: WorkItem,
        code: str,
        message: str,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> PollOutcome:
        if self._repo.fail_item(item.id, (ItemStatus.PROCESSING,), code, message):
            metrics.transition(item.model, ItemStatus.PROCESSING, ItemStatus.FAILED)
        metrics.item_error("polling", code, "failed")
        bound.warning("item_failed", error_code=code, error_message=message)
        return PollOutcome("failed", error_code=code)

    def _new_prediction_later(
        self,
        item: WorkItem,
        exc: PredictionInputUnreachable,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> PollOutcome:
        """PROCESSING -> PENDING (a new prediction after a backoff), or FAILED at the last attempt.

        The model never ran, so the prediction is retried as the creation step retries its
        transient errors (:func:`pipeline.lifecycle.decide`, ``item.attempts`` so far).
        """
        policy = self._policy
        decision = decide(
            exc,
            item.attempts,
            max_attempts=policy.max_attempts,
            base=policy.backoff_base,
            cap=policy.backoff_max,
        )
        if isinstance(decision, Fail):
            return self._fail(item, decision.code, decision.message, bound)
        if self._repo.retry_later(
            item.id, (ItemStatus.PROCESSING,), decision.delay, decision.code, decision.message
        ):
            metrics.transition(item.model, ItemStatus.PROCESSING, ItemStatus.PENDING)
        metrics.item_error("polling", exc.code, "retry")
        bound.warning(
            "prediction_retry",
            error_code=exc.code,
            attempts=item.attempts,
            delay_seconds=round(decision.delay, 2),
        )
        return PollOutcome("retried", delay=decision.delay, error_code=exc.code)

    def _record_unfinished_cost(self, item_id: int, prediction: Prediction) -> None:
        """A failed or canceled prediction's provider seconds are billed too (usage report)."""
        if prediction.terminal and prediction.predict_time is not None:
            self._repo.record_predict_time(item_id, prediction.id, prediction.predict_time)

    def _get(self, prediction_id: str) -> Prediction:
        self._limiter.acquire(self._policy.acquire_timeout)
        return self._provider.get_prediction(prediction_id)

    def _finish(
        self,
        item: WorkItem,
        prediction: Prediction,
        bound: structlog.typing.FilteringBoundLogger,
        *,
        polled: bool,
    ) -> PollOutcome:
        if not prediction.output_urls:
            raise OutputInvalid("prediction succeeded without an output URL")
        started = time.monotonic()
        data = self._provider.download(
            prediction.output_urls[0], max_bytes=self._policy.max_output_bytes
        )
        metrics.FETCHED_BYTES.labels("provider_output").inc(len(data))
        info = inspect_output(data, max_pixels=self._policy.max_output_pixels)
        fmt = format_of_pillow(info.format)
        ext = fmt.extension if fmt is not None else "bin"
        if item.preset:  # the job's (or item's) output preset, then store that
            data, info, ext = self._apply_preset(item.store_id, item.preset, data)
        key = result_key(item.store_id, item.job_id, item.id, ext)
        self._storage.put_bytes(key, data, info.content_type)
        metrics.STORED_BYTES.labels("result").inc(len(data))
        if self._repo.mark_done(
            item.id,
            output_key=key,
            width=info.width,
            height=info.height,
            size=len(data),
            content_type=info.content_type,
            polled=polled,  # mark_done counts the poll that saw the success
            predict_time=prediction.predict_time,
        ):
            metrics.item_done(
                item.model,
                item.created_at,
                item.submitted_at,
                prediction,
                time.monotonic() - started,
            )
            runtime = prediction.runtime_seconds
            if self._on_runtime is not None and runtime is not None:
                self._on_runtime(item.model, runtime)
            bound.info(
                "item_done",
                output_key=key,
                width=info.width,
                height=info.height,
                output_bytes=len(data),
            )
        return PollOutcome("done")

    def _apply_preset(
        self, store_id: str, preset_name: str, data: bytes
    ) -> tuple[bytes, ImageInfo, str]:
        """Apply the item's preset (item overrides job) to a validated output.

        Raises:
            UnknownPreset, InvalidPreset: the preset does not exist or its spec is bad.
            OutputInvalid: Pillow could not render the output.
        """
        preset = resolve_preset(self._repo, store_id, preset_name)
        try:
            out = apply_preset(data, preset, max_pixels=self._policy.max_output_pixels)
        except SourceError as exc:
            raise OutputInvalid(f"preset {preset.name} failed ({exc.code}): {exc.message}") from exc
        fmt = preset.image_format.pillow
        info = ImageInfo(
            width=out.width, height=out.height, format=fmt, content_type=out.content_type
        )
        return out.data, info, out.extension
