"""The rescuer: finds work that a crash or a lost Redis message left behind, and recovers it.

Each duty is a ``run_once(now)`` that returns what it did (River's ``JobRescuer`` shape), run by
the scheduler leader on an interval:

- lost QUEUED messages are sent again (a duplicate is harmless: the claim is conditional);
  a new leader first sends those of the QUEUED items the broker holds no message of, at once;
- PROCESSING items not polled for a while get a poll;
- with webhooks on, PROCESSING items never polled whose webhook is overdue (the model's expected
  runtime plus ``IMAGEOPT_WEBHOOK_POLL_GRACE_SECONDS``) get a poll: a prediction created with a
  webhook gets no poll message of its own, so this scan is what ends an item whose webhook was
  lost;
- SUBMITTING items whose worker died half-way are resolved: if the provider lists a prediction
  made from this item's input image, it is adopted (no second prediction); otherwise the item
  is queued again. The window where we cannot tell: a worker that died after the provider
  accepted the POST but before the prediction appears in ``GET /predictions`` — we wait
  ``submitting_timeout`` (minutes) before looking, which Replicate's list endpoint covers;
- items older than the maximum age are canceled at the provider and FAILED with ``timeout``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from pipeline.errors import PipelineError
from pipeline.pollplan import WebhookWaits
from pipeline.prediction_errors import FailureClassifier
from pipeline.provider import Prediction, ProviderClient
from pipeline.repository import Repository
from pipeline.storage import ObjectStorage

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RescuerConfig:
    """Thresholds in seconds; ``batch`` bounds the rows one pass touches."""

    queued_timeout: float = 120.0
    processing_timeout: float = 90.0
    submitting_timeout: float = 300.0
    max_age: float = 3600.0
    batch: int = 500
    failures: FailureClassifier = field(default_factory=FailureClassifier)
    """A prediction that failed because its input never reached the model is never adopted:
    the item had it before and went back to PENDING for a new one."""


@dataclass(frozen=True)
class RescueResult:
    """Counts of each recovery action of one pass."""

    requeued: int = 0
    repolled: int = 0
    adopted: int = 0
    resubmitted: int = 0
    expired: int = 0
    webhook_overdue: int = 0

    @property
    def total(self) -> int:
        return (
            self.requeued
            + self.repolled
            + self.adopted
            + self.resubmitted
            + self.expired
            + self.webhook_overdue
        )


class Rescuer:
    """All recovery duties; ``run_once`` runs each of them once.

    ``webhook_waits`` (webhooks on) gives, at each pass, how long an item waits for its
    webhook (:func:`pipeline.pollplan.webhook_waits`); ``None``: webhooks off, no such scan.
    """

    def __init__(
        self,
        *,
        repo: Repository,
        provider: ProviderClient,
        storage: ObjectStorage,
        send_create: Callable[[Iterable[int]], int],
        send_poll: Callable[[int], None],
        config: RescuerConfig,
        webhook_waits: Callable[[], WebhookWaits] | None = None,
    ) -> None:
        self._webhook_waits = webhook_waits
        self._repo = repo
        self._provider = provider
        self._storage = storage
        self._send_create = send_create
        self._send_poll = send_poll
        self._config = config

    def run_once(self, now: datetime) -> RescueResult:
        requeued = self.requeue_lost_queued(now)
        webhook_overdue = self.poll_overdue_webhooks(now)
        repolled = self.repoll_stale_processing(now)
        expired = self.expire_old_items(now)
        adopted, resubmitted = self.resolve_stale_submitting(now)
        result = RescueResult(
            requeued=requeued,
            repolled=repolled,
            adopted=adopted,
            resubmitted=resubmitted,
            expired=expired,
            webhook_overdue=webhook_overdue,
        )
        if result.total:
            log.warning(
                "rescuer_recovered",
                requeued=result.requeued,
                repolled=result.repolled,
                adopted=result.adopted,
                resubmitted=result.resubmitted,
                expired=result.expired,
                webhook_overdue=result.webhook_overdue,
            )
        return result

    def requeue_lost_queued(self, now: datetime) -> int:
        """Send creation messages again for QUEUED items idle past ``queued_timeout``."""
        ids = self._repo.stale_queued(now, self._config.queued_timeout, self._config.batch)
        touched = self._repo.touch_queued(ids)
        return self._send_create(touched)

    def requeue_unsent_queued(self, now: datetime, pending: Collection[int]) -> int:
        """Send creation messages for the QUEUED items the broker holds no message of.

        A new leader runs this once before its first pass: the leader before it may have
        died between committing a pass's QUEUED rows and sending their messages, and those
        items would otherwise wait ``queued_timeout`` while holding in-flight slots.

        Args:
            now: rows updated before it are considered.
            pending: item ids of the broker's creation messages
                (:meth:`pipeline.taskqueue.TaskQueue.pending_create_items`), read *before*
                this call, so that an item whose message is acknowledged meanwhile is no
                longer QUEUED here.

        Returns:
            Messages sent.
        """
        ids = self._repo.stale_queued(now, 0.0, self._config.batch)
        unsent = [item_id for item_id in ids if item_id not in pending]
        sent = self._send_create(self._repo.touch_queued(unsent))
        if sent:
            log.warning("takeover_requeued", requeued=sent, queued=len(ids))
        return sent

    def repoll_stale_processing(self, now: datetime) -> int:
        """Send a poll for PROCESSING items not polled for ``processing_timeout``."""
        ids = self._repo.stale_processing(now, self._config.processing_timeout, self._config.batch)
        touched = self._repo.touch_repolled(ids)  # commit first: a rerun finds nothing to do
        for item_id in touched:
            self._send_poll(item_id)
        return len(touched)

    def poll_overdue_webhooks(self, now: datetime) -> int:
        """Send a poll for PROCESSING items never polled whose webhook is overdue.

        With webhooks on, a new prediction gets no poll message (its webhook finishes it); an
        item still PROCESSING past its model's expected runtime plus the grace has lost its
        webhook (or the webhook's message), and is polled from here on as without webhooks.
        ``touch_repolled`` commits first, so a second pass finds nothing to do.

        Returns:
            Polls sent (at most ``batch``).
        """
        if self._webhook_waits is None:
            return 0
        ids = self._repo.overdue_webhooks(now, self._webhook_waits(), self._config.batch)
        touched = self._repo.touch_repolled(ids)
        for item_id in touched:
            self._send_poll(item_id)
        return len(touched)

    def resolve_stale_submitting(self, now: datetime) -> tuple[int, int]:
        """Adopt the prediction a dead worker created, or queue the item again.

        Returns:
            ``(adopted, resubmitted)``.
        """
        adopted = resubmitted = 0
        rows = self._repo.stale_submitting(now, self._config.submitting_timeout, self._config.batch)
        for stale in rows:
            item_id = stale.id
            prediction_id = None
            if stale.input_key:
                prefix = self._storage.presigned_get_url(stale.input_key).split("?", 1)[0]
                since = stale.updated_at - timedelta(seconds=self._config.submitting_timeout)
                try:
                    found = self._provider.find_predictions_by_image(prefix, created_after=since)
                except PipelineError as exc:
                    log.warning("rescuer_lookup_failed", item_id=item_id, error_code=exc.code)
                    continue  # can't tell now; try again next pass rather than pay twice
                found = [p for p in found if not self._input_never_fetched(p)]
                if found:
                    prediction_id = found[0].id
            if prediction_id and self._repo.adopt_prediction(item_id, prediction_id):
                self._send_poll(item_id)
                adopted += 1
            elif prediction_id is None and self._repo.requeue_submitting(item_id):
                self._send_create([item_id])
                resubmitted += 1
        return adopted, resubmitted

    def _input_never_fetched(self, prediction: Prediction) -> bool:
        return prediction.status == "failed" and self._config.failures.input_unreachable(
            prediction.error
        )

    def expire_old_items(self, now: datetime) -> int:
        """FAIL (``timeout``) items older than ``max_age``, then cancel them at the provider.

        The row is failed first: a poll running meanwhile then finds a final row and does
        nothing, instead of seeing our cancel at the provider and recording ``canceled``.
        """
        expired = 0
        message = f"not finished within {self._config.max_age:.0f} s"
        for item in self._repo.expired_items(now, self._config.max_age, self._config.batch):
            if not self._repo.fail_item(item.id, (item.status,), "timeout", message):
                continue  # it moved on meanwhile; the next pass looks again if still due
            expired += 1
            if item.prediction_id:
                try:
                    self._provider.cancel_prediction(item.prediction_id)
                except PipelineError as exc:
                    log.warning("cancel_failed", item_id=item.id, error_code=exc.code)
        return expired
