"""Rows as the API shows them (camelCase JSON, seed 002), with links to owner-gated files, or
``expired`` flags once retention deleted a file (docs/FEATURES.md, "Retention")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pipeline.errors import public_message
from pipeline.statuses import FINAL_ITEM_STATUSES, ItemStatus, JobStatus


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def display_name(source_url: str) -> str:
    """A short name for an item: its file name (an upload's ``NNN-`` index prefix removed)."""
    name = source_url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or source_url
    head, sep, rest = name.partition("-")
    return rest if sep and head.isdigit() and len(head) == 3 else name[:200]


def input_state(row: Mapping[str, Any], *, has_upload: bool) -> tuple[bool, bool]:
    """Whether an item's input can be opened, and whether retention deleted it.

    The input is the normalized input (``input_key``) or, before a worker made one, the
    uploaded original. Retention sets ``input_deleted_at`` when it deletes the former (and
    releases the latter) and ``source_deleted_at`` when the upload itself is gone.

    Args:
        row: an item row with ``input_key``, ``input_deleted_at``, ``source_deleted_at``.
        has_upload: the item's source is an upload of the pipeline's bucket.

    Returns:
        ``(available, expired)``; both False while there is no input yet.
    """
    released = row.get("input_deleted_at") is not None
    upload_gone = has_upload and row.get("source_deleted_at") is not None
    available = not released and (bool(row.get("input_key")) or (has_upload and not upload_gone))
    return available, not available and (released or upload_gone)


def result_state(row: Mapping[str, Any]) -> tuple[bool, bool]:
    """Whether an item's result can be opened, and whether retention deleted it:
    ``(available, expired)``, both False until the item is DONE."""
    done = row["status"] == ItemStatus.DONE and bool(row.get("output_key"))
    expired = done and row.get("output_deleted_at") is not None
    return done and not expired, expired


def item_view(row: Mapping[str, Any], *, has_upload: bool) -> dict[str, Any]:
    """One item: status, error, output facts and the links its owner may open.

    ``errorMessage`` is the stable sentence for ``errorCode`` (:func:`public_message`), never
    the row's ``error_message``: that one is for ops and may name addresses or DNS answers.
    A file retention deleted gets no link: ``inputExpired`` / ``resultExpired`` say so.
    """
    item_id = int(row["id"])
    has_input, input_expired = input_state(row, has_upload=has_upload)
    done, result_expired = result_state(row)
    return {
        "id": item_id,
        "name": display_name(str(row.get("source_url") or "")),
        "status": row["status"],
        "errorCode": row.get("error_code"),
        "errorMessage": public_message(row.get("error_code")),
        "attempts": int(row.get("attempts") or 0),
        "inputUrl": f"/api/items/{item_id}/input" if has_input else None,
        "inputExpired": input_expired,
        "resultUrl": f"/api/items/{item_id}/result" if done else None,
        "downloadUrl": f"/api/items/{item_id}/result?download=1" if done else None,
        "resultExpired": result_expired,
        "width": row.get("output_width"),
        "height": row.get("output_height"),
        "bytes": row.get("output_bytes"),
        "contentType": row.get("output_content_type"),
        "createdAt": _iso(row.get("created_at")),
        "completedAt": _iso(row.get("completed_at")),
    }


def counts(items: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Items by outcome, computed from the items themselves (always current)."""
    out = {"total": len(items), "pending": 0, "processing": 0, "done": 0, "failed": 0,
           "canceled": 0}  # fmt: skip
    for item in items:
        status = item["status"]
        if status == ItemStatus.DONE:
            out["done"] += 1
        elif status == ItemStatus.FAILED:
            out["failed"] += 1
        elif status == ItemStatus.CANCELED:
            out["canceled"] += 1
        elif status in (ItemStatus.SUBMITTING, ItemStatus.PROCESSING):
            out["processing"] += 1
        else:
            out["pending"] += 1
    return out


def job_status(items: Sequence[Mapping[str, Any]], stored: str) -> str:
    """The job's status from its items (the stored one lags by a scheduler tick)."""
    if not items:
        return stored
    statuses = {item["status"] for item in items}
    if not statuses <= FINAL_ITEM_STATUSES:
        started = statuses - {ItemStatus.PENDING, ItemStatus.QUEUED} or ItemStatus.DONE in statuses
        return JobStatus.PROCESSING if started else JobStatus.PENDING
    if ItemStatus.DONE in statuses:
        return JobStatus.DONE
    if ItemStatus.FAILED in statuses:
        return JobStatus.FAILED
    return JobStatus.CANCELED


def job_view(
    job: Mapping[str, Any], items: Sequence[Mapping[str, Any]] | None, upload_of: Any
) -> dict[str, Any]:
    """One job with its counters and (when given) its items.

    Args:
        job: the job row (``api_get_job``).
        items: its item rows (``api_job_items``), or None for a listing.
        upload_of: ``source_url -> key | None`` telling whether the source is an upload.
    """
    view: dict[str, Any] = {
        "id": int(job["id"]),
        "storeId": job["store_id"],
        "ownerType": job.get("owner_type") or "store",
        "model": job["model"],
        "prompt": job.get("prompt"),
        "preset": job.get("preset"),
        "params": dict(job.get("params") or {}),
        "createdAt": _iso(job.get("created_at")),
        "completedAt": _iso(job.get("completed_at")),
    }
    if items is None:
        view["status"] = job["status"]
        view["counts"] = {
            "total": int(job["total_items"]),
            "done": int(job["done_items"]),
            "failed": int(job["failed_items"]),
            "canceled": int(job["canceled_items"]),
        }
        return view
    view["status"] = job_status(items, str(job["status"]))
    view["final"] = all(item["status"] in FINAL_ITEM_STATUSES for item in items)
    view["counts"] = counts(items)
    view["items"] = [
        item_view(item, has_upload=upload_of(str(item["source_url"])) is not None) for item in items
    ]
    return view
