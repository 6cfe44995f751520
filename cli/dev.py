"""``imageopt demo``: the main job on real images, in a demo schema of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.base import app, fail, load_settings


@app.command()
def demo(
    images: Annotated[Path, typer.Option(help="folder laid out as DIR/<store>/<images>")] = Path(
        "../shared/data/images"
    ),
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 600.0,
    schema: Annotated[
        str | None, typer.Option(help="the demo's own schema; its name must contain 'demo'")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="the demo's own Redis namespace; must contain 'demo'")
    ] = None,
    bucket: Annotated[
        str | None, typer.Option(help="the demo's own S3 bucket; must contain 'demo'")
    ] = None,
) -> None:
    """Run the whole pipeline on a folder of store folders and print a per-store summary.

    Only in a schema, Redis namespace and bucket of its own, marked as the demo's.
    """
    from devstack.demo import run_demo
    from devstack.targets import DemoTargetRefused, resolve_targets

    settings = load_settings()
    try:
        targets = resolve_targets(settings, schema=schema, namespace=namespace, bucket=bucket)
        code = run_demo(settings, images, timeout=timeout, targets=targets)
    except DemoTargetRefused as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)
