"""Serving ``/metrics``: a thread in the scheduler, a dramatiq fork process per worker group.

Beside ``/metrics`` the same server answers ``/livez`` and ``/readyz`` from the process's work
loop (:mod:`pipeline.health`), so a probe sees a stuck loop while ``/metrics`` still answers.

Workers: ``imageopt worker`` calls :func:`worker_metrics_env` before it becomes dramatiq, so
that every worker process (and dramatiq's own Prometheus middleware) writes its samples to one
directory in prometheus-client's multiprocess mode. :class:`workers.prometheus.
WorkerPrometheus` makes dramatiq fork :func:`serve_worker_metrics`, which serves everything in
that directory on ``IMAGEOPT_METRICS_HOST:IMAGEOPT_WORKER_METRICS_PORT``: one scrape per worker
group shows ours and dramatiq's. A port of 0 disables a server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.multiprocess import MultiProcessCollector

from pipeline import health
from pipeline.config import Settings
from pipeline.logging import setup_logging

log = structlog.get_logger(__name__)

MULTIPROC_ROOT = Path(tempfile.gettempdir()) / "imageopt-metrics"
"""Parent of the default per-worker-group multiprocess directories (``workers-<pid>``)."""


@dataclass
class MetricsServer:
    """A running ``/metrics`` HTTP server (a daemon thread).

    Attributes:
        host: the address it is bound to.
        port: the TCP port it is bound to.
    """

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


Probe = Callable[[], health.Verdict]
"""A health check: called per request, answers 200 (``ok``) or 503 with a JSON body."""

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _with_probes(metrics_app: WSGIApp, probes: Mapping[str, Probe]) -> WSGIApp:
    """``probes`` by exact path, everything else to prometheus-client's app."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        probe = probes.get(environ.get("PATH_INFO", ""))
        if probe is None:
            return metrics_app(environ, start_response)
        verdict = probe()
        body = verdict.body()
        status = "200 OK" if verdict.ok else "503 Service Unavailable"
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                   ("Content-Length", str(len(body)))]  # fmt: skip
        start_response(status, headers)
        return [body]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood stderr; the access log is not wanted here."""


def serve_metrics(
    host: str,
    port: int,
    registry: CollectorRegistry = REGISTRY,
    probes: Mapping[str, Probe] | None = None,
) -> MetricsServer | None:
    """Serve ``registry`` on ``http://host:port/metrics`` (and ``probes``) from a daemon thread.

    Args:
        host: bind address (``127.0.0.1`` unless a scraper on another host needs it).
        port: TCP port; 0 disables the server.
        registry: what to serve.
        probes: extra paths (``/livez``, ``/readyz``) answered by health checks.

    Returns:
        The server, or None when disabled or when the port could not be bound (logged: a
        missing metrics endpoint must not stop the pipeline).
    """
    if port <= 0:
        return None

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    app = _with_probes(make_wsgi_app(registry), probes or {})
    try:
        server = make_server(host, port, app, Server, handler_class=_QuietHandler)
    except OSError as exc:
        log.warning("metrics_server_failed", host=host, port=port, error=str(exc))
        return None
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="metrics-server")
    thread.start()
    log.info("metrics_serving", host=host, port=port)
    return MetricsServer(host, port, server, thread)


# --- workers (multiprocess mode) ------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_dirs(root: Path) -> None:
    """Delete ``workers-<pid>`` directories of worker groups that are gone."""
    if not root.is_dir():
        return
    for path in root.glob("workers-*"):
        pid = path.name.removeprefix("workers-")
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def prepare_multiproc_dir(path: Path) -> Path:
    """Create ``path`` and delete samples left in it by earlier runs (``*.db`` files).

    prometheus-client requires the directory to be wiped between runs, or old counters would
    be summed into new ones.
    """
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    return path


def worker_metrics_env(settings: Settings, port: int, pid: int | None = None) -> dict[str, str]:
    """Environment for a dramatiq worker group whose metrics are served on ``port``.

    Args:
        settings: this process' settings (host and multiprocess directory).
        port: the group's metrics port; 0 disables metrics (an empty dict is returned).
        pid: the pid the group will run as (default: this one, which ``execv`` keeps).

    Returns:
        ``PROMETHEUS_MULTIPROC_DIR`` and dramatiq's ``dramatiq_prom_*`` variables, all naming
        the same freshly wiped directory, plus ``IMAGEOPT_WORKER_METRICS_PORT``.
    """
    if port <= 0:
        return {"IMAGEOPT_WORKER_METRICS_PORT": "0"}
    if settings.metrics_multiproc_dir:
        directory = Path(settings.metrics_multiproc_dir)
    else:
        _remove_stale_dirs(MULTIPROC_ROOT)
        directory = MULTIPROC_ROOT / f"workers-{pid or os.getpid()}"
    prepare_multiproc_dir(directory)
    return {
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "dramatiq_prom_db": str(directory),
        "dramatiq_prom_host": settings.metrics_host,
        "dramatiq_prom_port": str(port),
        "IMAGEOPT_WORKER_METRICS_PORT": str(port),
    }


def multiprocess_registry() -> CollectorRegistry:
    """A registry aggregating every process' samples in ``PROMETHEUS_MULTIPROC_DIR``."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def serve_worker_metrics() -> int:
    """The dramatiq fork process of a worker group: serve its multiprocess samples forever,
    with ``/livez`` and ``/readyz`` from the worker processes' beat files.

    Returns:
        1 when the port could not be bound (dramatiq keeps the workers running); otherwise it
        returns only when the process is told to stop.
    """
    settings = Settings()
    setup_logging(settings, process="worker")
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        log.warning("worker_metrics_disabled", reason="PROMETHEUS_MULTIPROC_DIR not set")
        return 1
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    limits = health.WorkerThresholds(
        live=settings.worker_liveness_seconds, stall=settings.worker_stall_seconds
    )

    def verdicts() -> tuple[health.Verdict, health.Verdict]:
        return health.worker_verdicts(health.read_worker_beats(directory), time.time(), limits)

    probes = {"/livez": lambda: verdicts()[0], "/readyz": lambda: verdicts()[1]}
    server = serve_metrics(
        settings.metrics_host, settings.worker_metrics_port, multiprocess_registry(), probes
    )
    if server is None:
        return 1
    server._thread.join()
    return 0
