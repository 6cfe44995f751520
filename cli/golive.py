"""Go-live levers (docs/DEPLOY.md, "Feature flags and staged rollout"): ``imageopt flags
list|set``, ``imageopt model enable|disable``, ``imageopt rollout set``, ``imageopt
auth-required on|off``. Each change is audited (who: the OS user and host; why: ``--reason``)
and seen by the running api and scheduler within about a second, without a restart."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from cli.base import actor, app, fail, load_settings, open_repository

if TYPE_CHECKING:
    from pipeline.golive import Change

Reason = Annotated[str, typer.Option(help="why (kept in the audit log)")]

flags_app = typer.Typer(help="Feature flags of seed 004 (docs/DEPLOY.md).", no_args_is_help=True)
app.add_typer(flags_app, name="flags")
model_app = typer.Typer(help="Switch one model on or off at run time.", no_args_is_help=True)
app.add_typer(model_app, name="model")
rollout_app = typer.Typer(help="The staged rollout of the creating routes.", no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")


def _check_reason(reason: str) -> None:
    if not reason.strip() or len(reason) > 500:
        raise fail("--reason must have 1 to 500 characters")


def _echo(change: Change) -> None:
    word = "set" if change.changed else "already"
    typer.echo(f"{change.lever} {word}: {json.dumps(change.value)}")


def _on_off(value: str, option: str) -> bool:
    word = value.strip().lower()
    if word not in ("on", "off"):
        raise fail(f"{option} must be on or off")
    return word == "on"


@flags_app.command("list")
def flags_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Print every lever in force: flags, models, auth required, rollout."""
    from pipeline.golive import describe, start_state, state_from_rows
    from pipeline.wiring import allowlist

    settings = load_settings()
    try:
        start = start_state()
    except ValueError as exc:
        raise fail(str(exc)) from exc
    with open_repository(settings) as repo:
        state = state_from_rows(start, repo.golive_rows())
    view = describe(state, allowlist(settings))
    if as_json:
        typer.echo(json.dumps(view, sort_keys=True))
        return
    for name, on in view["flags"].items():
        typer.echo(f"flag   {name:<28} {'on' if on else 'off'}")
    for name, on in view["models"].items():
        typer.echo(f"model  {name:<28} {'enabled' if on else 'disabled'}")
    typer.echo(f"auth-required {'on' if view['authRequired'] else 'off'}")
    rollout = view["rollout"]
    stores = ", ".join(rollout["allowStores"]) or "none"
    typer.echo(f"rollout {rollout['percent']}% (allowed stores: {stores})")


@flags_app.command("set")
def flags_set(
    name: Annotated[str, typer.Argument(help="e.g. SIZE_PREVIEW_ENABLED")],
    value: Annotated[str, typer.Argument(help="on or off")],
    reason: Reason,
) -> None:
    """Turn one feature flag on or off."""
    from pipeline.golive import set_flag

    on = _on_off(value, "the value")
    _check_reason(reason)
    with open_repository(load_settings()) as repo:
        try:
            change = set_flag(repo, name.strip().upper(), on, reason=reason, actor=actor())
        except ValueError as exc:
            raise fail(str(exc)) from exc
    _echo(change)


def _set_model(name: str, enabled: bool, reason: str) -> None:
    from pipeline.golive import set_model
    from pipeline.wiring import allowlist

    _check_reason(reason)
    settings = load_settings()
    with open_repository(settings) as repo:
        try:
            change = set_model(repo, name, enabled, known=allowlist(settings), reason=reason,
                               actor=actor())  # fmt: skip
        except ValueError as exc:
            raise fail(str(exc)) from exc
    _echo(change)


@model_app.command("enable")
def model_enable(name: Annotated[str, typer.Argument(help="a model of the allowlist")],
                 reason: Reason) -> None:  # fmt: skip
    """Accept and meter this model's items again."""
    _set_model(name, True, reason)


@model_app.command("disable")
def model_disable(name: Annotated[str, typer.Argument(help="a model of the allowlist")],
                  reason: Reason) -> None:  # fmt: skip
    """Refuse new jobs for this model (400 model_disabled); its PENDING items stay PENDING."""
    _set_model(name, False, reason)


@rollout_app.command("set")
def rollout_set(
    percent: Annotated[int, typer.Option(help="0-100: share of callers admitted")],
    reason: Reason,
    allow_store: Annotated[
        list[str] | None, typer.Option(help="a store always admitted (repeat)")
    ] = None,
) -> None:
    """Admit PERCENT % of callers (a stable hash of their identity) and the allowed stores to
    the creating routes; the others get 403 not_in_rollout."""
    from pipeline.golive import set_rollout

    _check_reason(reason)
    with open_repository(load_settings()) as repo:
        try:
            change = set_rollout(repo, percent, allow_store or [], reason=reason, actor=actor())
        except ValueError as exc:
            raise fail(str(exc)) from exc
    _echo(change)


@app.command("auth-required")
def auth_required(
    value: Annotated[str, typer.Argument(help="on (guests may not create) or off")],
    reason: Reason,
) -> None:
    """Require an API key to create jobs (guests get 401 auth_required), or not."""
    from pipeline.golive import set_auth_required

    on = _on_off(value, "the value")
    _check_reason(reason)
    with open_repository(load_settings()) as repo:
        change = set_auth_required(repo, on, reason=reason, actor=actor())
    _echo(change)
