"""``imageopt``: the one command line of the pipeline (typer). ``imageopt COMMAND --help``.

The commands live by group in this package (:mod:`cli.processes`, :mod:`cli.items`,
:mod:`cli.images`, :mod:`cli.admin`, :mod:`cli.golive`, :mod:`cli.stores`, :mod:`cli.usage`,
:mod:`cli.dev`);
importing them registers them on :data:`cli.base.app`. Exit codes: see :mod:`cli.base`.
"""

from __future__ import annotations

from cli import admin, dev, golive, images, items, processes, stores, usage
from cli.base import app

__all__ = [
    "admin",
    "app",
    "dev",
    "golive",
    "images",
    "items",
    "main",
    "processes",
    "stores",
    "usage",
]


def main() -> None:
    """Console-script entry point."""
    app()
