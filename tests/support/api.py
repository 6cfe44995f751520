"""Test helper: the api app under uvicorn in a thread, on a port the OS picks."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn

from pipeline.api import create_app
from pipeline.config import Settings

STARTUP_TIMEOUT_SECONDS = 15.0


@contextlib.contextmanager
def run_api(settings: Settings) -> Iterator[str]:
    """Serve :func:`pipeline.api.create_app` on ``127.0.0.1``; yields ``http://127.0.0.1:PORT``.

    Raises:
        RuntimeError: the server did not start in time.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), log_level="warning", ws="none", lifespan="on",
            timeout_graceful_shutdown=2,
        )
    )  # fmt: skip
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("api did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
