"""Operating commands for one tenant and for dead letters: ``imageopt store show|set`` (weight,
quota, pause; the scheduler reads them on its next pass, woken by NOTIFY) and ``imageopt
failed`` (FAILED items with their detailed messages). Changes are written to the audit log
(docs/OPERATIONS.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from cli.base import actor, app, fail, load_settings, open_repository
from pipeline.repository import STORE_DEFAULTS

store_app = typer.Typer(
    help="A store's weight, quota and pause (docs/OPERATIONS.md).", no_args_is_help=True
)
app.add_typer(store_app, name="store")

FAILED_LIMIT_MAX = 10_000


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _store_line(store_id: str, row: dict[str, Any] | None) -> str:
    if row is None:
        return f"store {store_id}: weight 1, quota default, running (no settings of its own)"
    quota = "default" if row["quota"] is None else row["quota"]
    state = "PAUSED" if row["paused"] else "running"
    why = f" ({row['paused_reason']})" if row["paused"] and row["paused_reason"] else ""
    return f"store {store_id}: weight {row['weight']}, quota {quota}, {state}{why}"


@store_app.command("show")
def store_show(
    store: Annotated[str, typer.Argument(help="the store id")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Print a store's weight, quota and pause."""
    with open_repository(load_settings()) as repo:
        row = repo.ops_get_store(store)
    if as_json:
        doc = {"store_id": store, "weight": 1, "quota": None, "paused": False,
               "paused_reason": None}  # fmt: skip
        if row is not None:
            doc.update({k: row[k] for k in ("weight", "quota", "paused", "paused_reason")})
        typer.echo(json.dumps(doc, sort_keys=True))
        return
    typer.echo(_store_line(store, row))


@store_app.command("set")
def store_set(
    store: Annotated[str, typer.Argument(help="the store id")],
    weight: Annotated[
        int | None, typer.Option(min=1, max=1000, help="items per round-robin round")
    ] = None,
    quota: Annotated[
        int | None, typer.Option(min=1, help="items per rolling window (IMAGEOPT_QUOTA_*)")
    ] = None,
    default_quota: Annotated[
        bool, typer.Option("--default-quota", help="back to IMAGEOPT_DEFAULT_DAILY_ITEM_QUOTA")
    ] = False,
    paused: Annotated[
        bool | None,
        typer.Option("--paused/--running", help="hold the store's items PENDING, or meter again"),
    ] = None,
    reason: Annotated[str | None, typer.Option(help="why (the audit log, and the pause)")] = None,
) -> None:
    """Change a store's weight, quota or pause; the scheduler leader applies it at once."""
    if not store or len(store) > 200:
        raise fail("a store id has 1 to 200 characters")
    if weight is None and quota is None and not default_quota and paused is None:
        raise fail("give --weight, --quota, --default-quota, --paused or --running")
    if quota is not None and default_quota:
        raise fail("give --quota or --default-quota, not both")
    if reason is not None and len(reason) > 500:
        raise fail("--reason must be at most 500 characters")
    with open_repository(load_settings()) as repo:
        before = repo.ops_get_store(store)
        row = repo.ops_set_store(
            store, weight=weight, quota=quota, clear_quota=default_quota, paused=paused,
            reason=reason,
        )  # fmt: skip
        change = {
            f: {"from": (before or STORE_DEFAULTS)[f], "to": row[f]}
            for f in ("weight", "quota", "paused")
            if (before or STORE_DEFAULTS)[f] != row[f]
        }
        repo.ops_audit(actor(), "store_settings", f"store {store}", reason,
                       {**change, "via": "cli"})  # fmt: skip
    typer.echo(_store_line(store, row))


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise fail(f"{option} must be an ISO 8601 time, e.g. 2026-12-06T09:00") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
def failed(
    store: Annotated[str | None, typer.Option(help="only this store")] = None,
    job: Annotated[int | None, typer.Option(help="only this job")] = None,
    model: Annotated[str | None, typer.Option(help="only this model")] = None,
    error_code: Annotated[str | None, typer.Option(help="only this error code")] = None,
    since: Annotated[str | None, typer.Option(help="failed at or after (ISO, UTC)")] = None,
    until: Annotated[str | None, typer.Option(help="failed before (ISO, UTC)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=FAILED_LIMIT_MAX, help="most listed")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """List FAILED items, newest first, with their error code and detailed message."""
    from pipeline.repository import FailedFilter

    match = FailedFilter(
        store_id=store, job_id=job, model=model, error_code=error_code,
        since=_parse_time(since, "--since"), until=_parse_time(until, "--until"),
    )  # fmt: skip
    with open_repository(load_settings()) as repo:
        total, rows = repo.ops_failed_items(match, limit)
    items = [
        {
            "id": int(r["id"]), "job_id": int(r["job_id"]), "store_id": r["store_id"],
            "model": r["model"], "source_url": r["source_url"], "error_code": r["error_code"],
            "error_message": r["error_message"], "attempts": int(r["attempts"]),
            "created_at": _iso(r["created_at"]), "completed_at": _iso(r["completed_at"]),
        }
        for r in rows
    ]  # fmt: skip
    if as_json:
        typer.echo(json.dumps({"total": total, "items": items}, indent=2, sort_keys=True))
        return
    for item in items:
        typer.echo(
            f"{item['id']:>8}  job {item['job_id']:<6} {item['store_id']:<16} "
            f"{item['error_code'] or '-':<22} attempts={item['attempts']} "
            f"at {item['completed_at'] or '-'}  {item['error_message'] or ''}"
        )
    typer.echo(f"{total} failed item(s) match" + (f", {len(items)} shown" if total > len(items)
                                                    else ""), err=True)  # fmt: skip
