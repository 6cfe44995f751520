"""``python -m emulator --port 8088 --latency-min 1 --create-rpm 600 ...``: run the emulator.

Every field of :class:`~emulator.config.EmulatorConfig` is a flag (``--field-name``); the token
may also come from ``REPLICATE_API_TOKEN`` so that it stays out of process listings. Logs go to
stderr as the pipeline's do (``IMAGEOPT_LOG_LEVEL``, ``IMAGEOPT_LOG_FORMAT``; the token redacted).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from collections.abc import Sequence
from typing import Any

from emulator.config import EmulatorConfig
from emulator.server import serve
from pipeline.logging import configure_logging


def _parser_type(hint: Any) -> Any:
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return args[0] if args else hint


def build_parser() -> argparse.ArgumentParser:
    """An argument parser with ``--host``, ``--port`` and one flag per config field."""
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--port", type=int, default=8088, help="TCP port to bind")
    hints = typing.get_type_hints(EmulatorConfig)
    for field in dataclasses.fields(EmulatorConfig):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=field.name,
            type=_parser_type(hints[field.name]),
            default=argparse.SUPPRESS,
            help=f"default: {field.default!r}",
        )
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> tuple[str, int, EmulatorConfig]:
    """Parse flags into ``(host, port, config)``.

    Raises:
        SystemExit: bad flags (argparse's behaviour).
    """
    namespace = vars(build_parser().parse_args(argv))
    host, port = namespace.pop("host"), namespace.pop("port")
    namespace.setdefault("token", os.environ.get("REPLICATE_API_TOKEN") or None)
    return host, port, EmulatorConfig(**namespace)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m emulator``."""
    host, port, config = config_from_args(argv)
    configure_logging(
        os.environ.get("IMAGEOPT_LOG_LEVEL", "INFO"),
        os.environ.get("IMAGEOPT_LOG_FORMAT", "json"),
        secrets=[config.token or ""],
        process="emulator",
    )
    serve(host, port, config)


if __name__ == "__main__":
    main()
