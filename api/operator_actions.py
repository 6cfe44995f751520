"""The operator console's levers (``POST /ops/api/...``), each one audited.

Every lever is one request, checked by :func:`api.operator_auth.require_operator`, carrying an
optional ``reason``; each writes one row of ``image_optimization_audit_log`` (who, what, on
what, why, and what it changed) and takes effect without a restart: item changes are
conditional UPDATEs, and store settings and the submissions switch wake the scheduler leader
(``NOTIFY``), which reads them on its next pass.

* ``retry``: ``{"itemId"}``, ``{"jobId"}`` or ``{"filter": {...}, "expected": N}``. A filter
  retry must say how many items the operator confirmed; when more match now, nothing is done
  and the answer is 409 with the current count (confirm again), and it never moves more than
  that many (one statement with a LIMIT, so failures arriving meanwhile cannot slip in).
  Items whose uploaded source retention deleted stay FAILED (:mod:`pipeline.cancellation`):
  one such item is a 409 ``source_deleted``; a job or filter skips them and says how many
  (``sourceDeleted``), and is a 409 ``source_deleted`` when it skipped every one.
* ``cancel``: ``{"itemId"}`` or ``{"jobId"}`` (running predictions are canceled at the
  provider too; :mod:`pipeline.cancellation`).
* ``submissions``: ``{"paused": bool}``: the global switch (:mod:`pipeline.controls`).
* ``stores/{store_id}``: ``{"weight", "quota", "clearQuota", "paused"}`` (each optional).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.context import ApiContext, blocking
from api.envelope import ApiError, ok, read_body, validation_error
from api.operator_auth import Operator, require_operator
from pipeline.cancellation import (
    SOURCE_DELETED,
    SOURCE_DELETED_MESSAGE,
    cancel_item,
    cancel_job,
    retry_item,
)
from pipeline.controls import SUBMISSIONS_PAUSED
from pipeline.repository import STORE_DEFAULTS, FailedFilter

MAX_ID = 2**63 - 1
Reason = Field(default=None, max_length=500)


class _Filter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    store: str | None = Field(default=None, max_length=200)
    job: int | None = Field(default=None, ge=1, le=MAX_ID)
    model: str | None = Field(default=None, max_length=200)
    error_code: str | None = Field(default=None, max_length=200)
    since: datetime | None = None
    until: datetime | None = None

    def to_filter(self) -> FailedFilter:
        return FailedFilter(
            store_id=self.store or None, job_id=self.job, model=self.model or None,
            error_code=self.error_code or None, since=self.since, until=self.until,
        )  # fmt: skip


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    item_id: int | None = Field(default=None, alias="itemId", ge=1, le=MAX_ID)
    job_id: int | None = Field(default=None, alias="jobId", ge=1, le=MAX_ID)
    reason: str | None = Reason


class _RetryBody(_Target):
    filter: _Filter | None = None
    expected: int | None = Field(default=None, ge=0, le=MAX_ID)


class _SwitchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paused: bool
    reason: str | None = Reason


class _StoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    weight: int | None = Field(default=None, ge=1, le=1000)
    quota: int | None = Field(default=None, ge=1, le=2**31 - 1)
    clear_quota: bool = Field(default=False, alias="clearQuota")
    paused: bool | None = None
    reason: str | None = Reason


async def _audit(
    ctx: ApiContext, who: Operator, action: str, target: str, reason: str | None, **details: Any
) -> None:
    await blocking(ctx.repo.ops_audit, who.actor, action, target, reason, details)


def _one_target(body: _Target, *, allow_filter: bool = False) -> None:
    given = [body.item_id is not None, body.job_id is not None]
    if allow_filter:
        given.append(getattr(body, "filter", None) is not None)
    if sum(given) != 1:
        what = "itemId, jobId or filter" if allow_filter else "itemId or jobId"
        raise validation_error("body", f"give exactly one of {what}")


async def retry(request: Request) -> Response:
    """``POST /ops/api/retry``: FAILED items back to PENDING (attempts reset)."""
    who = await require_operator(request)
    ctx: ApiContext = request.app.state.ctx
    body: _RetryBody = await read_body(request, _RetryBody)
    _one_target(body, allow_filter=True)
    skipped = 0
    if body.item_id is not None:
        result = await blocking(retry_item, ctx.repo, ctx.storage, body.item_id)
        if result.refused is not None:
            raise ApiError(409, result.refused, result.message, details={"itemId": body.item_id})
        ids = [body.item_id] if result.retried else []
        target = f"item {body.item_id}"
    else:
        match = (
            FailedFilter(job_id=body.job_id) if body.job_id is not None
            else body.filter.to_filter() if body.filter is not None else FailedFilter()
        )  # fmt: skip
        if body.filter is not None:
            if body.expected is None:
                raise validation_error("expected", "a filter retry needs the confirmed count")
            now = await blocking(ctx.repo.ops_count_failed, match)
            if now > body.expected:
                raise ApiError(
                    409, "conflict", f"{now} items match now, {body.expected} were confirmed",
                    details={"matching": now},
                )  # fmt: skip
        ids = await blocking(ctx.repo.ops_retry_failed, match, body.expected)
        skipped = await blocking(ctx.repo.ops_count_source_deleted, match)
        target = f"job {body.job_id}" if body.job_id is not None else f"filter {match.params()}"
        if skipped and not ids:
            raise ApiError(
                409, SOURCE_DELETED, f"{skipped} FAILED item(s) cannot be retried: "
                f"{SOURCE_DELETED_MESSAGE}", details={"sourceDeleted": skipped},
            )  # fmt: skip
    await _audit(ctx, who, "retry", target, body.reason, items=len(ids), source_deleted=skipped)
    return ok({"retried": len(ids), "itemIds": ids[:1000], "sourceDeleted": skipped})


async def cancel(request: Request) -> Response:
    """``POST /ops/api/cancel``: cancel an item or a job's unfinished items."""
    who = await require_operator(request)
    ctx: ApiContext = request.app.state.ctx
    body: _Target = await read_body(request, _Target)
    _one_target(body)
    if body.item_id is not None:
        results = [await blocking(cancel_item, ctx.repo, ctx.provider, body.item_id)]
        target = f"item {body.item_id}"
    else:
        results = await blocking(cancel_job, ctx.repo, ctx.provider, int(body.job_id or 0))
        target = f"job {body.job_id}"
    canceled = sum(r.canceled for r in results)
    await _audit(ctx, who, "cancel", target, body.reason, items=canceled)
    return ok({"canceled": canceled})


async def submissions(request: Request) -> Response:
    """``POST /ops/api/submissions``: pause or resume every store's submissions."""
    who = await require_operator(request)
    ctx: ApiContext = request.app.state.ctx
    body: _SwitchBody = await read_body(request, _SwitchBody)
    changed = await blocking(
        lambda: ctx.repo.set_control(
            SUBMISSIONS_PAUSED, body.paused, reason=body.reason, changed_by=who.actor[:200]
        )
    )
    action = "pause_submissions" if body.paused else "resume_submissions"
    await _audit(ctx, who, action, "all stores", body.reason, changed=changed is not None)
    return ok({"paused": body.paused, "changed": changed is not None})


async def store_settings(request: Request) -> Response:
    """``POST /ops/api/stores/{store_id}``: change a store's weight, quota or pause."""
    who = await require_operator(request)
    ctx: ApiContext = request.app.state.ctx
    store_id = str(request.path_params["store_id"])
    if not store_id or len(store_id) > 200:
        raise validation_error("store_id", "a store id has 1 to 200 characters")
    body: _StoreBody = await read_body(request, _StoreBody)
    if body.quota is not None and body.clear_quota:
        raise validation_error("quota", "give quota or clearQuota, not both")
    before = await blocking(ctx.repo.ops_get_store, store_id)
    row = await blocking(
        lambda: ctx.repo.ops_set_store(
            store_id, weight=body.weight, quota=body.quota, clear_quota=body.clear_quota,
            paused=body.paused, reason=body.reason,
        )
    )  # fmt: skip
    fields = ("weight", "quota", "paused")
    change = {
        f: {"from": (before or STORE_DEFAULTS)[f], "to": row[f]}
        for f in fields
        if (before or STORE_DEFAULTS)[f] != row[f]
    }
    await _audit(ctx, who, "store_settings", f"store {store_id}", body.reason, **change)
    return ok({"storeId": store_id, "weight": row["weight"], "quota": row["quota"],
               "paused": row["paused"]})  # fmt: skip


ROUTES = [
    Route("/ops/api/retry", retry, methods=["POST"]),
    Route("/ops/api/cancel", cancel, methods=["POST"]),
    Route("/ops/api/submissions", submissions, methods=["POST"]),
    Route("/ops/api/stores/{store_id}", store_settings, methods=["POST"]),
]
