"""Local processes for the demo, tests and benchmarks: start, watch, stop (never leave strays).

Each child runs in its own session (process group) so that stopping it also stops the worker
processes dramatiq forks. Output goes to ``<run_dir>/logs/<name>.log``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_asgi_in_thread(
    build: Callable[[str], Any],
    *,
    name: str,
    startup_timeout: float = 15.0,
    graceful_seconds: int = 5,
    options: Mapping[str, Any] | None = None,
) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a daemon thread on ``127.0.0.1`` and a free port.

    The socket is bound here and handed to uvicorn, so there is no race for the port.

    Args:
        build: called with the root URL (``http://127.0.0.1:PORT``), returns the ASGI app.
        name: thread name, and what the error names.
        startup_timeout: seconds to wait for the server to start.
        graceful_seconds: uvicorn's graceful-shutdown timeout on exit.
        options: further ``uvicorn.Config`` arguments (e.g. the api's
            :func:`api.app.uvicorn_options`, so a test server trusts the same proxies
            as the real one).

    Yields:
        The root URL.

    Raises:
        RuntimeError: the server did not start within ``startup_timeout``.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    root = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config: dict[str, Any] = {
        "log_level": "warning", "log_config": None, "ws": "none", "lifespan": "on",
        **(options or {}), "timeout_graceful_shutdown": graceful_seconds,
    }  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(build(root), **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.01)
        yield root
    finally:
        server.should_exit = True
        thread.join(timeout=graceful_seconds + 10)
        sock.close()


def wait_http(url: str, timeout: float = 20.0) -> None:
    """Wait until ``url`` answers any HTTP status.

    Raises:
        TimeoutError: nothing answered within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
        except httpx.HTTPError:
            time.sleep(0.1)
        else:
            return
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@dataclass
class ProcessGroup:
    """Named child processes sharing one environment.

    Args:
        env: environment of every child (on top of nothing: pass ``os.environ`` in if wanted).
        log_dir: where each child's combined stdout/stderr goes.
    """

    env: Mapping[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self,
        name: str,
        *args: str,
        extra_env: Mapping[str, str] | None = None,
        module: str = "cli",
    ) -> subprocess.Popen[bytes]:
        """Start ``python -m MODULE ARGS...`` of this interpreter as ``name`` (by default the
        ``imageopt`` CLI)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(  # noqa: S603 - our own CLI with our own arguments
            [sys.executable, "-m", module, *args],
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group of ``name`` (SIGKILL by default)."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGKILL:
            proc.wait(timeout=10)

    def stop(self, name: str, timeout: float = 15.0) -> int | None:
        """SIGTERM the child, wait up to ``timeout`` s, then SIGKILL its group; returns the exit
        code.

        Only the child itself gets the SIGTERM: dramatiq's main process forwards it to its
        worker processes, and a worker that got a second SIGTERM from the group would take it
        as "kill now" and exit 1 instead of finishing its messages.
        """
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return proc.wait()
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
