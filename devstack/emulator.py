"""Test helpers: the emulator (uvicorn in a thread) and a static file server, on free ports."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devstack.processes import serve_asgi_in_thread
from emulator.config import EmulatorConfig
from emulator.server import build_app

STARTUP_TIMEOUT_SECONDS = 10.0


@contextlib.contextmanager
def run_emulator(config: EmulatorConfig | None = None) -> Iterator[str]:
    """Start an emulator on ``127.0.0.1`` on a port the OS picks; stop it on exit.

    The socket is bound here and handed to uvicorn, so there is no race for the port.

    Args:
        config: knobs; ``public_base_url`` is set to the chosen address.

    Yields:
        The API base URL, e.g. ``http://127.0.0.1:40123/v1`` (the root, for the official
        ``replicate`` client, is this without ``/v1``).

    Raises:
        RuntimeError: the server did not start within :data:`STARTUP_TIMEOUT_SECONDS`.
    """
    settings = config or EmulatorConfig()
    with serve_asgi_in_thread(
        lambda root: build_app(settings.with_public_base_url(root)),
        name="emulator",
        startup_timeout=STARTUP_TIMEOUT_SECONDS,
    ) as root:
        yield f"{root}/v1"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean (the stdlib handler writes every request to stderr)."""


@contextlib.contextmanager
def serve_directory(directory: Path | str) -> Iterator[str]:
    """Serve ``directory`` read-only over HTTP on ``127.0.0.1`` (stands in for presigned URLs).

    Args:
        directory: folder whose files are served.

    Yields:
        The root URL, e.g. ``http://127.0.0.1:40124``; files are at ``{root}/{relative path}``.
    """
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="static-files", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
