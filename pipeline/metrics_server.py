"""Serving ``/metrics``: a thread in the scheduler, a dramatiq fork process per worker group.

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
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

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


def serve_metrics(
    host: str, port: int, registry: CollectorRegistry = REGISTRY
) -> MetricsServer | None:
    """Serve ``registry`` on ``http://host:port/metrics`` from a daemon thread.

    Args:
        host: bind address (``127.0.0.1`` unless a scraper on another host needs it).
        port: TCP port; 0 disables the server.
        registry: what to serve.

    Returns:
        The server, or None when disabled or when the port could not be bound (logged: a
        missing metrics endpoint must not stop the pipeline).
    """
    if port <= 0:
        return None
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning("metrics_server_failed", host=host, port=port, error=str(exc))
        return None
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
    """The dramatiq fork process of a worker group: serve its multiprocess samples forever.

    Returns:
        1 when the port could not be bound (dramatiq keeps the workers running); otherwise it
        returns only when the process is told to stop.
    """
    settings = Settings()
    setup_logging(settings, process="worker")
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        log.warning("worker_metrics_disabled", reason="PROMETHEUS_MULTIPROC_DIR not set")
        return 1
    server = serve_metrics(
        settings.metrics_host, settings.worker_metrics_port, multiprocess_registry()
    )
    if server is None:
        return 1
    server._thread.join()
    return 0
