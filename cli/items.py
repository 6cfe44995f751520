"""Commands on jobs and items: submit, status, retry, cancel."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.base import (
    actor,
    app,
    fail,
    load_settings,
    open_repository,
)
from cli.progress import StepBar, on_terminal, progress
from pipeline.config import Settings
from pipeline.errors import MalformedInput, NotJson
from pipeline.statuses import ItemStatus

if TYPE_CHECKING:
    from pipeline.repository import FailedFilter, Repository
    from pipeline.storage import ObjectStorage


def _parse_params(values: list[str]) -> dict[str, Any]:
    from pipeline.validation import check_text, parse_json

    params: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise fail(f"--param must be key=value, got {value!r}")
        try:
            check_text(key, "--param name")
            try:
                params[key] = parse_json(raw, f"--param {key}")
            except NotJson:
                check_text(raw, f"--param {key}")
                params[key] = raw
        except MalformedInput as exc:
            raise fail(exc.message) from exc
    return params


def _items_from_csv(path: Path) -> list[dict[str, Any]]:
    try:
        return _read_csv(path)
    except UnicodeDecodeError as exc:
        raise fail(f"{path}: not UTF-8 text (byte {exc.start})") from exc


def _read_csv(path: Path) -> list[dict[str, Any]]:
    from pipeline.validation import check_input, check_priority, parse_json

    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "source_url" not in reader.fieldnames:
            raise fail(f"{path}: CSV needs a source_url column")
        items: list[dict[str, Any]] = []
        for line, row in enumerate(reader, start=2):
            item: dict[str, Any] = {"source_url": (row.get("source_url") or "").strip()}
            for key in ("prompt", "model"):
                if row.get(key):
                    item[key] = row[key]
            try:
                check_input(item)
                if row.get("priority"):
                    item["priority"] = int(row["priority"])
                    check_priority(item["priority"])
                if row.get("params"):
                    item["params"] = parse_json(row["params"], "params")
            except MalformedInput as exc:
                raise fail(f"{path}:{line}: {exc.message}") from exc
            except ValueError as exc:
                raise fail(f"{path}:{line}: {exc}") from exc
            items.append(item)
    return items


def _items_from_folder(path: Path, store: str, settings: Settings) -> list[dict[str, Any]]:
    """Upload each file to object storage and use its ``s3://`` URL as the source."""
    from pipeline.storage import ObjectStorage
    from pipeline.uploads import content_type_of_file, new_batch, store_upload

    storage = ObjectStorage.from_settings(settings)
    storage.ensure_bucket()
    batch = new_batch()
    items = []
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    with progress(len(files), "uploading") as bar:
        for index, file in enumerate(files):
            content_type = content_type_of_file(file.name)
            url = store_upload(
                storage, store_id=store, batch=batch, index=index, name=file.name,
                data=file.read_bytes(), content_type=content_type,
            )  # fmt: skip
            items.append({"source_url": url})
            bar.update(1)
    return items


@app.command()
def submit(
    path: Annotated[
        Path, typer.Argument(help="a folder of images, or a CSV with a source_url column")
    ],
    store: Annotated[str, typer.Option(help="the store the job belongs to")],
    model: Annotated[
        str | None, typer.Option(help="owner/name (default REPLICATE_IMAGE_MODEL)")
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="prompt for every item")] = None,
    preset: Annotated[str | None, typer.Option(help="output preset name")] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="model parameter key=value (JSON value), repeatable")
    ] = None,
    priority: Annotated[int, typer.Option(help="item priority (higher first)")] = 0,
) -> None:
    """Insert a job (one item per image or CSV row) and print its id."""
    from pipeline.validation import check_input, check_priority

    settings = load_settings()
    if not store.strip():
        raise fail("--store must not be empty")
    try:
        check_input({"--store": store, "--model": model, "--prompt": prompt, "--preset": preset})
        check_priority(priority, "--priority")
    except MalformedInput as exc:
        raise fail(exc.message) from exc
    if not path.exists():
        raise fail(f"{path} does not exist")
    items = _items_from_folder(path, store, settings) if path.is_dir() else _items_from_csv(path)
    if not items:
        raise fail(f"{path}: no images or rows found")
    for item in items:
        item.setdefault("priority", priority)
    with open_repository(settings) as repo:
        job_id = repo.insert_job(
            store_id=store,
            model=model or settings.replicate_image_model,
            prompt=prompt,
            params=_parse_params(param or []),
            preset=preset,
            items=items,
        )
    typer.echo(job_id)


@app.command()
def status(
    job: Annotated[int | None, typer.Option(help="only this job")] = None,
    store: Annotated[str | None, typer.Option(help="only this store")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Item counts by status, per store and per job (the seeds' distribution query)."""
    from pipeline.quotas import quota_config
    from pipeline.reporting import status_report

    settings = load_settings()
    with open_repository(settings) as repo:
        report = status_report(repo, job_id=job, store_id=store, quota=quota_config(settings))
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    typer.echo("status      " + "  ".join(f"{k}={v}" for k, v in report["items"].items()))
    for store_id, counts in report["stores"].items():
        typer.echo(f"store {store_id:<20} " + "  ".join(f"{k}={v}" for k, v in counts.items() if v))
    for job_id, counts in report["jobs"].items():
        typer.echo(f"job   {job_id:<20} " + "  ".join(f"{k}={v}" for k, v in counts.items() if v))
    for store_id, codes in report["errors"].items():
        typer.echo(f"errors {store_id:<19} " + "  ".join(f"{k}={v}" for k, v in codes.items()))
    for store_id, q in report.get("quotas", {}).items():
        held = (
            f"  held={q['pending_held']} PENDING until {q['frees_at']}" if q["pending_held"] else ""
        )
        typer.echo(
            f"quota {store_id:<20} used={q['used']}/{q['quota']} per "
            f"{q['window_seconds']:.0f}s  remaining={q['remaining']}{held}"
        )


RETRY_CONFIRM_ABOVE = 100
"""``retry`` asks before moving more FAILED items than this (``--yes`` skips the question)."""


@app.command()
def retry(
    job: Annotated[int | None, typer.Option(help="only this job")] = None,
    error_code: Annotated[str | None, typer.Option(help="only items FAILED with this code")] = None,
    item: Annotated[int | None, typer.Option(help="only this item (must be FAILED)")] = None,
    store: Annotated[str | None, typer.Option(help="only this store's items")] = None,
    model: Annotated[str | None, typer.Option(help="only items of this model")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only count what would be retried")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help=f"no question above {RETRY_CONFIRM_ABOVE} items")
    ] = False,
    reason: Annotated[str | None, typer.Option(help="why (the audit log)")] = None,
) -> None:
    """Send FAILED items (dead letters) back to PENDING, attempts reset; prints how many.

    More than RETRY_CONFIRM_ABOVE (100) items need a yes at the terminal or --yes; without a
    terminal and without --yes, such a retry exits 1 and changes nothing. An item whose
    uploaded source retention deleted stays FAILED (it could only fail again): --item exits 1
    saying so; a bulk retry skips such items and prints how many (exit 1 when it skipped all).
    """
    from pipeline.cancellation import retry_item
    from pipeline.errors import StorageError
    from pipeline.repository import FailedFilter
    from pipeline.storage import ObjectStorage

    if reason is not None and len(reason) > 500:
        raise fail("--reason must be at most 500 characters")
    if item is not None and any(v is not None for v in (job, error_code, store, model)):
        raise fail("--item goes alone (it names one item)")
    settings = load_settings()
    match = FailedFilter(store_id=store, job_id=job, model=model, error_code=error_code)
    storage = ObjectStorage.from_settings(settings)
    try:
        with open_repository(settings) as repo:
            count, skipped = _retry_counts(repo, storage, item, match)
            movable = count - skipped
            if dry_run:
                typer.echo(f"{movable} item(s) would go back to PENDING" + _skipped(skipped))
                return
            confirmed = yes or movable <= RETRY_CONFIRM_ABOVE
            if not confirmed and on_terminal():
                confirmed = typer.confirm(f"retry {movable} FAILED item(s)?", err=True)
            if not confirmed:
                raise fail(f"{movable} items match: confirm at a terminal, or pass --yes", code=1)
            # one conditional UPDATE: nothing to show progress of
            if item is not None:
                result = retry_item(repo, storage, item)
                if result.refused is not None:  # retention got there between the two looks
                    raise fail(result.message, code=1)
                ids = [item] if result.retried else []
            else:
                ids = repo.ops_retry_failed(match, count)  # never more than was counted
            target = f"item {item}" if item is not None else f"filter {match.params()}"
            details = {"items": len(ids), "source_deleted": skipped, "via": "cli"}
            repo.ops_audit(actor(), "retry", target, reason, details)
    except StorageError as exc:  # the stat of --item's source: nothing was changed
        raise fail(f"{exc.code}: {exc.message}", code=1) from exc
    finally:
        storage.close()
    if skipped and not ids:
        raise fail(f"0 item(s) back to PENDING{_skipped(skipped)}", code=1)
    typer.echo(f"{len(ids)} item(s) back to PENDING" + _skipped(skipped))


def _retry_counts(
    repo: Repository, storage: ObjectStorage, item: int | None, match: FailedFilter
) -> tuple[int, int]:
    """``(FAILED items that match, those of them a retry skips)`` for ``retry``.

    Raises:
        typer.Exit: code 1, ``--item`` names a FAILED item whose source is gone.
    """
    from pipeline.cancellation import SOURCE_DELETED, RetryResult, source_gone

    if item is None:
        return repo.ops_count_failed(match), repo.ops_count_source_deleted(match)
    row = repo.ops_get_item(item)
    if row is None or row["status"] != ItemStatus.FAILED:
        return 0, 0
    if source_gone(row, storage):
        raise fail(RetryResult(item, False, SOURCE_DELETED).message, code=1)
    return 1, 0


def _skipped(count: int) -> str:
    """The tail of retry's line naming the items it skips (none: empty)."""
    if not count:
        return ""
    return f"; {count} skipped (source_deleted: retention deleted their uploaded source)"


@app.command()
def cancel(
    job: Annotated[int | None, typer.Argument(help="job id")] = None,
    item: Annotated[int | None, typer.Option(help="cancel only this item")] = None,
) -> None:
    """Cancel a job's unfinished items, or one item (--item); running predictions are canceled
    at the provider."""
    from pipeline.cancellation import cancel_item, cancel_job
    from pipeline.wiring import provider_client

    if (job is None) == (item is None):
        raise fail("give a JOB id or --item ID (one of them)")
    settings = load_settings()
    provider = provider_client(settings)
    try:
        with open_repository(settings) as repo:
            if item is not None:
                results = [cancel_item(repo, provider, item)]
            else:
                results = cancel_job(repo, provider, int(job or 0), on_item=StepBar("canceling"))
    finally:
        provider.close()
    for result in results:
        if result.provider_canceled is False:
            typer.echo(
                f"warning: item {result.item_id}: cancel at the provider failed: "
                f"{result.error_code}",
                err=True,
            )
    if item is not None and not results[0].canceled:
        status_text = results[0].previous_status or "not found"
        typer.echo(f"item {item} not canceled ({status_text})")
        raise typer.Exit(1)
    typer.echo(f"{sum(r.canceled for r in results)} item(s) canceled")
