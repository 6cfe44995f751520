"""Read-side summaries for the CLI and the demo: counts by status, per store and per job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.quotas import QuotaConfig, quota_report
from pipeline.repository import Repository
from pipeline.statuses import ItemStatus

_STATUSES = [str(s) for s in ItemStatus]  # plain strings: the report is JSON for the CLI


def status_report(
    repo: Repository,
    *,
    job_id: int | None = None,
    store_id: str | None = None,
    quota: QuotaConfig | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Counts of items by status.

    Args:
        repo: the repository.
        job_id: only this job.
        store_id: only this store.
        quota: when given, add ``"quotas"``: per store with a quota, its usage and
            the PENDING items it holds back (:func:`pipeline.quotas.quota_report`).
        now: the time quotas are evaluated at (default: now, UTC).

    Returns:
        ``{"items": {status: n}, "stores": {store: {status: n}}, "jobs": {job: {status: n}},
        "errors": {store: {error_code: n}}}``; every status appears in ``items`` (0 if none).
    """
    items = dict.fromkeys(_STATUSES, 0)
    stores: dict[str, dict[str, int]] = {}
    jobs: dict[str, dict[str, int]] = {}
    for row in repo.status_counts(job_id=job_id, store_id=store_id):
        n = int(row["n"])
        items[row["status"]] += n
        per_store = stores.setdefault(row["store_id"], dict.fromkeys(_STATUSES, 0))
        per_store[row["status"]] += n
        per_job = jobs.setdefault(str(row["job_id"]), dict.fromkeys(_STATUSES, 0))
        per_job[row["status"]] += n
    errors: dict[str, dict[str, int]] = {}
    for row in repo.error_counts(job_id=job_id):
        if store_id is None or row["store_id"] == store_id:
            errors.setdefault(row["store_id"], {})[row["error_code"] or "unknown"] = int(row["n"])
    report: dict[str, Any] = {"items": items, "stores": stores, "jobs": jobs, "errors": errors}
    if quota is not None:
        report["quotas"] = quota_report(repo, quota, sorted(stores), now or datetime.now(UTC))
    return report
