"""Cancel and retry, per item and per job (CLI ``imageopt cancel`` / ``retry`` and the API).

Cancel rules (every step one conditional UPDATE, so a race with a worker is harmless):

* ``PENDING``, ``QUEUED``, ``SUBMITTING`` -> ``CANCELED`` at once. A creation worker that is
  mid-submission then fails its ``mark_processing`` and cancels the prediction it just created
  (``prediction_orphaned`` in ``workers/creation.py``), so nothing paid keeps running.
* ``PROCESSING`` -> cancel the prediction at the provider first, then ``CANCELED``. If the
  provider call fails (transient), the item is still canceled and the result says so; the
  poller skips non-PROCESSING items, so a late result is never stored.
* ``DONE``, ``FAILED``, ``CANCELED``: nothing to cancel (``canceled=False``).

Retry: ``FAILED`` -> ``PENDING`` with ``attempts`` reset and the job reopened, unless the
item's source is gone (:data:`SOURCE_DELETED`): an ``s3://`` upload that retention deleted
(``source_deleted_at``, migration 0007), or, when the item's normalized input is not stored
either, an ``s3://`` source the bucket no longer holds (one stat). Such an item would only go
back to PENDING to fail with ``storage_error``, so it stays FAILED and the caller says why. An
``http(s)`` source is fetched again on a retry, so a deleted input never blocks it. Bulk
retries (a job, a filter) decide by the row alone, in their one UPDATE, and report the count
they skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from pipeline.errors import InvalidSourceUrl, PipelineError
from pipeline.fetch import parse_s3_url
from pipeline.provider import ProviderClient
from pipeline.repository import Repository, Row
from pipeline.statuses import ItemStatus
from pipeline.storage import ObjectStorage

log = structlog.get_logger(__name__)

_AT_ONCE = (ItemStatus.PENDING, ItemStatus.QUEUED, ItemStatus.SUBMITTING)


@dataclass(frozen=True)
class CancelResult:
    """What a cancel did.

    Attributes:
        item_id: the item.
        previous_status: its status before (None when the item does not exist).
        canceled: it is CANCELED now because of this call.
        provider_canceled: the prediction was canceled at the provider (None: there was none).
        error_code: the provider error when its cancel failed.
    """

    item_id: int
    previous_status: ItemStatus | None
    canceled: bool
    provider_canceled: bool | None = None
    error_code: str | None = None


def cancel_item(repo: Repository, provider: ProviderClient, item_id: int) -> CancelResult:
    """Cancel one item by the rules of the module docstring."""
    item = repo.get_work_item(item_id)
    if item is None:
        return CancelResult(item_id, None, canceled=False)
    status = item.status
    bound = log.bind(item_id=item_id, job_id=item.job_id, store_id=item.store_id)
    if status in _AT_ONCE:
        done = repo.cancel_item(item_id, (status,)) is not None
        if done:
            bound.info("item_canceled", previous_status=str(status))
            return CancelResult(item_id, status, canceled=True)
        return cancel_item(repo, provider, item_id)  # it moved on meanwhile: look again
    if status != ItemStatus.PROCESSING:
        return CancelResult(item_id, status, canceled=False)
    provider_ok, error_code = _cancel_at_provider(provider, item.prediction_id)
    if provider_ok is False:
        bound.warning(
            "provider_cancel_failed", prediction_id=item.prediction_id, error_code=error_code
        )
    done = repo.cancel_item(item_id, (ItemStatus.PROCESSING,)) is not None
    if done:
        bound.info(
            "item_canceled",
            previous_status=str(status),
            prediction_id=item.prediction_id,
            provider_canceled=provider_ok,
        )
    return CancelResult(item_id, status, done, provider_ok, error_code)


def cancel_job(
    repo: Repository,
    provider: ProviderClient,
    job_id: int,
    on_item: Callable[[int, int], None] | None = None,
) -> list[CancelResult]:
    """Cancel every unfinished item of a job; PROCESSING ones are canceled at the provider.

    Args:
        on_item: called as ``(items handled, items in all)`` after each item (the CLI's
            progress bar: one provider call per running prediction can take a while).
    """
    results = []
    items = repo.cancel_job(job_id)
    for item in items:
        provider_ok, error_code = _cancel_at_provider(provider, item.prediction_id)
        results.append(CancelResult(item.id, None, True, provider_ok, error_code))
        if on_item is not None:
            on_item(len(results), len(items))
    log.info("job_canceled", job_id=job_id, items=len(results))
    return results


SOURCE_DELETED = "source_deleted"
"""The stable code of a refused retry: the item's source image is gone (API ``error.type``,
the CLI's message; docs/API.md and docs/OPERATIONS.md)."""

SOURCE_DELETED_MESSAGE = (
    "its uploaded source image was deleted by retention, so a new attempt could only fail; "
    "submit the image again"
)


@dataclass(frozen=True)
class RetryResult:
    """What a retry of one item did.

    Attributes:
        item_id: the item.
        retried: it is PENDING now because of this call.
        refused: why it stays FAILED although it is FAILED (:data:`SOURCE_DELETED`), else None
            (not retried and not refused: it does not exist or is not FAILED).
    """

    item_id: int
    retried: bool
    refused: str | None = None

    @property
    def message(self) -> str:
        """One line saying what happened, for the CLI and the API's error."""
        if self.retried:
            return f"item {self.item_id} back to PENDING"
        if self.refused == SOURCE_DELETED:
            return f"item {self.item_id} cannot be retried: {SOURCE_DELETED_MESSAGE}"
        return f"item {self.item_id} is not FAILED"


def source_gone(item: Row, storage: ObjectStorage) -> bool:
    """Tell whether a retry of this item could not read its source any more.

    Args:
        item: the item as :meth:`Repository.ops_get_item` returns it (``source_url``,
            ``input_key``, ``input_deleted_at``, ``source_deleted_at``).
        storage: the pipeline's bucket, asked (one stat) only for an ``s3://`` source of it
            whose normalized input is not stored.

    Returns:
        True for an ``s3://`` source that retention deleted, or that the bucket no longer
        holds while the item's input is gone too; False for ``http(s)`` sources (fetched
        again), a stored input (the worker reuses it), or a URL the worker refuses anyway.

    Raises:
        StorageError: the bucket did not answer the stat.
    """
    try:
        s3 = parse_s3_url(str(item["source_url"]))
    except InvalidSourceUrl:
        return False  # the worker fails it with invalid_source_url, as before
    if s3 is None:
        return False
    if item["source_deleted_at"] is not None:
        return True
    if item["input_key"] and item["input_deleted_at"] is None:
        return False
    bucket, key = s3
    return bucket == storage.bucket and not storage.exists(key)


def retry_item(repo: Repository, storage: ObjectStorage, item_id: int) -> RetryResult:
    """A FAILED item back to PENDING (attempts reset), unless its source is gone.

    Args:
        repo: the repository.
        storage: the bucket, for :func:`source_gone`'s stat.
        item_id: the item.

    Returns:
        ``retried`` when it moved; ``refused=SOURCE_DELETED`` when it is FAILED but its source
        is gone (it stays FAILED); neither when it does not exist or is not FAILED.

    Raises:
        StorageError: the bucket did not answer the stat.
    """
    item = repo.ops_get_item(item_id)
    if item is None or item["status"] != ItemStatus.FAILED:
        return RetryResult(item_id, retried=False)
    if source_gone(item, storage):
        log.info("item_retry_refused", item_id=item_id, reason=SOURCE_DELETED)
        return RetryResult(item_id, retried=False, refused=SOURCE_DELETED)
    done = repo.retry_item(item_id)
    if done:
        log.info("item_retried", item_id=item_id)
        return RetryResult(item_id, retried=True)
    # The UPDATE's own condition refused it: retention marked the source deleted meanwhile
    # (say so), or the item moved on (another retry won).
    now = repo.ops_get_item(item_id)
    marked = now is not None and now["status"] == ItemStatus.FAILED
    return RetryResult(item_id, retried=False, refused=SOURCE_DELETED if marked else None)


def _cancel_at_provider(
    provider: ProviderClient, prediction_id: object
) -> tuple[bool | None, str | None]:
    """Cancel a running prediction: ``(None, None)`` without one, else ``(ok, error_code)``."""
    if not prediction_id:
        return None, None
    try:
        provider.cancel_prediction(str(prediction_id))
    except PipelineError as exc:
        return False, exc.code
    return True, None
