"""Test helper: the api app under uvicorn in a thread, on a port the OS picks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from api import create_app
from api.app import uvicorn_options
from devstack.processes import serve_asgi_in_thread
from pipeline.config import Settings

STARTUP_TIMEOUT_SECONDS = 15.0


@contextlib.contextmanager
def run_api(settings: Settings) -> Iterator[str]:
    """Serve :func:`api.create_app` on ``127.0.0.1``, with the uvicorn options of
    ``imageopt api`` (so forwarded headers are trusted as in production); yields
    ``http://127.0.0.1:PORT``.

    Raises:
        RuntimeError: the server did not start in time.
    """
    with serve_asgi_in_thread(
        lambda _root: create_app(settings),
        name="api",
        startup_timeout=STARTUP_TIMEOUT_SECONDS,
        graceful_seconds=2,
        options=uvicorn_options(settings),
    ) as root:
        yield root
