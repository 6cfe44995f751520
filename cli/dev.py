"""``imageopt demo``: the main job on real images, in a demo schema of its own."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.base import (
    app,
    load_settings,
)

if TYPE_CHECKING:
    pass


@app.command()
def demo(
    images: Annotated[Path, typer.Option(help="folder laid out as DIR/<store>/<images>")] = Path(
        "../shared/data/images"
    ),
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 600.0,
) -> None:
    """Run the whole pipeline on a folder of store folders and print a per-store summary."""
    from devstack.demo import run_demo

    raise typer.Exit(run_demo(load_settings(), images, timeout=timeout))
