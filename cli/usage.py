"""``imageopt usage``: a store's predictions, provider seconds and estimated cost by model."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from cli.base import app, fail, load_settings, open_repository

_RELATIVE = re.compile(r"^(\d{1,6})([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO 8601 date or time (naive means UTC), or ``24h``, ``7d``, ``4w`` ago.

    Raises:
        typer.Exit: (exit code 2) neither.
    """
    match = _RELATIVE.match(value.strip())
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return (now or datetime.now(UTC)) - delta
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise fail(f"--since must be an ISO date/time or like 24h, 7d, 4w; got {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
def usage(
    store: Annotated[str, typer.Option(help="the store")],
    since: Annotated[str, typer.Option(help="ISO date/time, or 24h, 7d, 4w ago")] = "30d",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Predictions, provider seconds (metrics.predict_time) and estimated cost by model."""
    from pipeline.errors import ConfigurationError
    from pipeline.usage import parse_prices, usage_report

    settings = load_settings()
    start = parse_since(since)
    try:
        prices = parse_prices(settings.model_prices)
    except ConfigurationError as exc:
        raise fail(exc.message) from exc
    with open_repository(settings) as repo:
        report = usage_report(repo, store, start, prices)
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    typer.echo(f"store {store} since {report['since']}")
    typer.echo(f"{'model':<28} {'predictions':>11} {'seconds':>10} {'est. USD':>10}")
    for line in report["models"]:
        cost = "-" if line["estimated_cost"] is None else f"{line['estimated_cost']:.4f}"
        typer.echo(
            f"{line['model']:<28} {line['predictions']:>11} "
            f"{line['provider_seconds']:>10.1f} {cost:>10}"
        )
    total = report["total"]
    typer.echo(
        f"{'total':<28} {total['predictions']:>11} {total['provider_seconds']:>10.1f} "
        f"{total['estimated_cost']:>10.4f}"
    )
