"""Cancel and retry, per item and per job (CLI ``imageopt cancel`` / ``retry`` and the API).

Cancel rules (every step one conditional UPDATE, so a race with a worker is harmless):

* ``PENDING``, ``QUEUED``, ``SUBMITTING`` -> ``CANCELED`` at once. A creation worker that is
  mid-submission then fails its ``mark_processing`` and cancels the prediction it just created
  (``prediction_orphaned`` in ``workers/creation.py``), so nothing paid keeps running.
* ``PROCESSING`` -> cancel the prediction at the provider first, then ``CANCELED``. If the
  provider call fails (transient), the item is still canceled and the result says so; the
  poller skips non-PROCESSING items, so a late result is never stored.
* ``DONE``, ``FAILED``, ``CANCELED``: nothing to cancel (``canceled=False``).

Retry: ``FAILED`` -> ``PENDING`` with ``attempts`` reset and the job reopened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from pipeline.errors import PipelineError
from pipeline.provider import ProviderClient
from pipeline.repository import Repository
from pipeline.statuses import ItemStatus

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


def retry_item(repo: Repository, item_id: int) -> bool:
    """A FAILED item back to PENDING (attempts reset); False when it is not FAILED."""
    done = repo.retry_item(item_id)
    if done:
        log.info("item_retried", item_id=item_id)
    return done


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
