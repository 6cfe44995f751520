"""Operating commands: API keys, quotas, retention, pausing submissions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cli.base import (
    actor,
    app,
    fail,
    load_settings,
    open_repository,
)
from cli.progress import on_terminal, phase_progress

if TYPE_CHECKING:
    from pipeline.controls import PauseState


api_key_app = typer.Typer(help="API keys of stores (docs/API.md).", no_args_is_help=True)
app.add_typer(api_key_app, name="api-key")


@api_key_app.command("create")
def api_key_create(
    store: Annotated[str | None, typer.Option(help="the store the key acts for")] = None,
    name: Annotated[str | None, typer.Option(help="a label to tell keys apart")] = None,
    operator: Annotated[
        bool,
        typer.Option(
            "--operator",
            help="an operator key for the /ops console (needs --name: who holds it; no --store)",
        ),
    ] = False,
) -> None:
    """Create an API key for a store, or an operator key (--operator), and print it (shown
    once; only its hash is stored)."""
    settings = load_settings()
    if operator:
        from api.operator_auth import create_operator_key

        if store is not None:
            raise fail("an operator key acts for every store: drop --store")
        if not name or not name.strip() or len(name) > 200:
            raise fail("--operator needs --name (who holds the key, 1 to 200 characters)")
        with open_repository(settings) as repo:
            key, key_id = create_operator_key(repo, name)
            repo.ops_audit(actor(), "create_operator_key", f"operator key {key_id}", None,
                           {"name": name.strip()})  # fmt: skip
        typer.echo(f"operator key id {key_id} for {name.strip()} (shown once, keep it secret):",
                   err=True)  # fmt: skip
        typer.echo(key)
        return
    from api.auth import create_api_key

    if store is None or not store.strip():
        raise fail("--store must not be empty (or give --operator)")
    if store == settings.api_guest_store:
        raise fail(f"{store!r} is the console guests' store (IMAGEOPT_API_GUEST_STORE)")
    with open_repository(settings) as repo:
        key, key_id = create_api_key(repo, store, name)
    typer.echo(f"key id {key_id} for store {store} (shown once, keep it secret):", err=True)
    typer.echo(key)


@api_key_app.command("list")
def api_key_list(
    store: Annotated[str | None, typer.Option(help="only this store")] = None,
    operator: Annotated[bool, typer.Option("--operator", help="operator keys instead")] = False,
) -> None:
    """List API keys (id, store, prefix, label, created, last used, revoked); never the key."""
    settings = load_settings()
    with open_repository(settings) as repo:
        rows = repo.ops_list_operator_keys() if operator else repo.api_list_keys(store)
    for row in rows:
        state = "revoked" if row["revoked_at"] else "live"
        owner = f"operator {row['name']}" if operator else row["store_id"]
        label = "-" if operator else row["name"] or "-"
        typer.echo(
            f"{row['id']:>6}  {owner:<20} iok_{row['key_prefix']}_…  {state:<7} "
            f"{label:<16} created {row['created_at']:%Y-%m-%d} "
            f"used {row['last_used_at'] or '-'}"
        )


@api_key_app.command("revoke")
def api_key_revoke(
    key_id: Annotated[int, typer.Argument(help="key id (from list)")],
    operator: Annotated[
        bool, typer.Option("--operator", help="an operator key (ends its console sessions)")
    ] = False,
) -> None:
    """Revoke an API key at once."""
    settings = load_settings()
    with open_repository(settings) as repo:
        if operator:
            revoked = repo.ops_revoke_operator_key(key_id)
            if revoked:
                repo.ops_audit(actor(), "revoke_operator_key", f"operator key {key_id}", None)
        else:
            revoked = repo.api_revoke_key(key_id)
    if not revoked:
        raise fail(f"no live key with id {key_id}", code=1)
    typer.echo(f"key {key_id} revoked")


@app.command()
def quota(
    store: Annotated[str, typer.Option(help="the store")],
    limit: Annotated[
        int | None, typer.Option(help="items per window; omit for the default")
    ] = None,
) -> None:
    """Set a store's quota of items per rolling window (IMAGEOPT_QUOTA_WINDOW_SECONDS)."""
    if limit is not None and limit < 1:
        raise fail("--limit must be 1 or more (omit it to use IMAGEOPT_DEFAULT_DAILY_ITEM_QUOTA)")
    settings = load_settings()
    with open_repository(settings) as repo:
        repo.set_store_quota(store, limit)
    typer.echo(f"store {store}: quota {limit if limit is not None else 'default'}")


@app.command()
def retention(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count what is due")] = False,
) -> None:
    """Delete old inputs, uploaded originals, outputs, rows and expired guest sessions now
    (IMAGEOPT_RETENTION_*); prints the counts."""
    from datetime import UTC, datetime

    from pipeline.storage import ObjectStorage
    from scheduler.retention import Retention, retention_config

    settings = load_settings()
    with open_repository(settings) as repo:
        result = Retention(
            repo=repo,
            storage=ObjectStorage.from_settings(settings),
            config=retention_config(settings, dry_run=dry_run or None),
            on_phase=phase_progress("retention") if on_terminal() else None,
        ).run_once(datetime.now(UTC))
    verb = "due" if result.dry_run else "deleted"
    typer.echo(
        f"{verb}: inputs={result.inputs_deleted} outputs={result.outputs_deleted} "
        f"originals={result.originals_deleted} jobs={result.jobs_deleted} "
        f"items={result.items_deleted} guest_sessions={result.guest_sessions_deleted}"
        + (f" storage_errors={result.storage_errors}" if result.storage_errors else "")
    )
    if result.storage_errors:
        raise typer.Exit(1)


submissions_app = typer.Typer(
    help="Pause and resume submissions while the pipeline runs (docs/SCHEDULING.md).",
    no_args_is_help=True,
)
app.add_typer(submissions_app, name="submissions")


def _set_submissions_paused(paused: bool, reason: str | None) -> None:
    from pipeline.controls import SUBMISSIONS_PAUSED, pause_state

    if reason is not None and len(reason) > 500:
        raise fail("--reason must be at most 500 characters")
    with open_repository(load_settings()) as repo:
        changed = repo.set_control(
            SUBMISSIONS_PAUSED, paused, reason=reason, changed_by=actor()
        )  # the new row, or None when it already was so: then read the one in force
        state = pause_state(False, changed or repo.get_control(SUBMISSIONS_PAUSED))
    word = "paused" if paused else "resumed"
    already = "" if changed is not None else "already "
    typer.echo(f"submissions {already}{word}" + _describe(state))


def _describe(state: PauseState) -> str:
    if not state.paused:
        return ""
    parts = [f" since {state.changed_at:%Y-%m-%d %H:%M:%S %Z}" if state.changed_at else ""]
    if state.changed_by:
        parts.append(f" by {state.changed_by}")
    if state.reason:
        parts.append(f": {state.reason}")
    return "".join(parts)


@submissions_app.command("pause")
def submissions_pause(
    reason: Annotated[
        str | None, typer.Option(help="why (shown by status and in the leader's log)")
    ] = None,
) -> None:
    """Stop metering new items at once: they stay PENDING; QUEUED and PROCESSING ones finish."""
    _set_submissions_paused(True, reason)


@submissions_app.command("resume")
def submissions_resume() -> None:
    """Meter again where it stopped (IMAGEOPT_SUBMISSIONS_PAUSED=true still pauses)."""
    _set_submissions_paused(False, None)


@submissions_app.command("status")
def submissions_status() -> None:
    """Print whether the switch pauses submissions; exit 0 when running, 3 when paused."""
    from pipeline.controls import SUBMISSIONS_PAUSED, pause_state

    with open_repository(load_settings()) as repo:
        state = pause_state(False, repo.get_control(SUBMISSIONS_PAUSED))
    if state.paused:
        typer.echo("submissions paused" + _describe(state))
        raise typer.Exit(3)
    typer.echo(
        "submissions running (the switch is off; IMAGEOPT_SUBMISSIONS_PAUSED is per process)"
    )
