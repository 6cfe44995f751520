"""A real S3-compatible server for tests and benchmarks, and buckets of a run's own.

:func:`ensure_s3_server` reuses the server at ``S3_ENDPOINT`` (default ``127.0.0.1:8333``,
e.g. the one ``scripts/s3-server.sh start`` runs for the demo) when it accepts the expected
keys. Otherwise it starts a private SeaweedFS instance with ``scripts/s3server.py`` on a free
block of loopback ports, in ``<repo>/.run/pytest-<pid>-<hex>/s3``, and stops and deletes it
at interpreter exit. Tests never stop a server they did not start, so several pytest sessions
(and the demo) can run side by side.

Each test should use a bucket of its own: :func:`temporary_bucket` creates ``test-<hex>`` and
empties and removes it afterwards.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import urllib3
from minio import Minio
from minio.error import S3Error

from pipeline.storage import ObjectStorage

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "s3server.py"
DEFAULT_ENDPOINT = "127.0.0.1:8333"
PORTS_PER_SERVER = 8
"""The S3 port plus seven internal ports (see ``scripts/s3server.py``)."""

_lock = threading.Lock()
_cached: S3Endpoint | None = None


@dataclass(frozen=True)
class S3Endpoint:
    """Where a test reaches the S3 server.

    Attributes:
        endpoint: ``host:port``.
        access_key: accepted access key.
        secret_key: its secret.
        region: signing region.
        started_here: True when this process started the server (and will stop it).
    """

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    started_here: bool = False

    def storage(self, bucket: str, *, secret_key: str | None = None) -> ObjectStorage:
        """Return an :class:`ObjectStorage` for a bucket on this server.

        Args:
            bucket: bucket name.
            secret_key: a different secret (to test refusals); default: the right one.
        """
        return ObjectStorage(
            endpoint=self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key if secret_key is None else secret_key,
            bucket=bucket,
            region=self.region,
        )

    def minio(self) -> Minio:
        """Return a raw minio client (for what the pipeline never does, e.g. bucket policies)."""
        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region=self.region,
        )


def ensure_s3_server() -> S3Endpoint:
    """Return a running S3 server with the expected credentials, starting one if needed.

    Returns:
        The endpoint; the same object for every call in this process.

    Raises:
        RuntimeError: when no server can be started (the message holds the logs' tails).
    """
    global _cached  # noqa: PLW0603 - one server per test process, shared by all fixtures
    with _lock:
        if _cached is not None:
            return _cached
        access_key = os.environ.get("S3_ACCESS_KEY", "imageopt")
        secret_key = os.environ.get("S3_SECRET_KEY", "imageopt-secret")
        endpoint = os.environ.get("S3_ENDPOINT", DEFAULT_ENDPOINT)
        if _accepts(endpoint, access_key, secret_key):
            _cached = S3Endpoint(endpoint, access_key, secret_key)
        else:
            _cached = _start_private(access_key, secret_key)
        return _cached


def unique_bucket_name(prefix: str = "test") -> str:
    """Return a fresh valid bucket name, ``<prefix>-<12 hex>``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def purge_bucket(storage: ObjectStorage) -> None:
    """Delete every object of the storage's bucket, then the bucket itself."""
    for key in list(storage.list_keys("")):
        storage.delete(key)
    storage.remove_bucket()


@contextlib.contextmanager
def temporary_bucket(endpoint: S3Endpoint, prefix: str = "test") -> Iterator[ObjectStorage]:
    """Create a bucket of the caller's own, private, and remove it with its objects after.

    Args:
        endpoint: the server.
        prefix: bucket name prefix.

    Yields:
        An :class:`ObjectStorage` bound to the new bucket.
    """
    storage = endpoint.storage(unique_bucket_name(prefix))
    storage.ensure_bucket()
    try:
        yield storage
    finally:
        purge_bucket(storage)
        storage.close()


def _accepts(endpoint: str, access_key: str, secret_key: str) -> bool:
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=1.0, read=5.0), retries=urllib3.Retry(total=0)
    )
    client = Minio(
        endpoint,
        access_key=access_key,
        secret_key=secret_key,
        secure=False,
        region="us-east-1",
        http_client=http,
    )
    try:
        client.list_buckets()
    except (S3Error, urllib3.exceptions.HTTPError, OSError, ValueError):
        return False
    finally:
        http.clear()
    return True


def _free_port_block(count: int) -> int:
    """Return the first of ``count`` consecutive loopback TCP ports that are free right now."""
    rng = random.Random()  # noqa: S311 - spreading port picks, not a secret
    for _ in range(200):
        base = rng.randrange(20_000, 45_000)
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no block of free loopback ports found")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class PrivateServer:
    """A server this process started with ``scripts/s3server.py`` on ports of its own.

    Attributes:
        endpoint: where its S3 gateway answers, with the accepted keys.
        env: the environment it was started with (``S3_ENDPOINT``, ``IMAGEOPT_RUN_DIR``, ...).
        run_dir: its ``IMAGEOPT_RUN_DIR`` (state in ``run_dir/s3``), deleted on stop.
    """

    endpoint: S3Endpoint
    env: dict[str, str]
    run_dir: Path

    def config(self) -> Any:
        """The script's own ``ServerConfig`` for this server (ports, state and key paths)."""
        return server_script().ServerConfig.from_env(self.env)


def server_script() -> ModuleType:
    """``scripts/s3server.py`` loaded as a module (its port layout, TLS helpers)."""
    spec = importlib.util.spec_from_file_location("imageopt_s3server", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses resolve their module by name
        spec.loader.exec_module(module)
    return module


def start_private_server(access_key: str, secret_key: str) -> PrivateServer:
    """Start a server of this process's own on a free block of loopback ports.

    Raises:
        RuntimeError: three attempts failed (the message holds the logs' tails).
    """
    errors = []
    for _ in range(3):  # another process may grab a port between the check and the bind
        port = _free_port_block(PORTS_PER_SERVER)
        run_dir = REPO / ".run" / f"pytest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        env = {
            **os.environ,
            "S3_ENDPOINT": f"127.0.0.1:{port}",
            "S3_ACCESS_KEY": access_key,
            "S3_SECRET_KEY": secret_key,
            "IMAGEOPT_RUN_DIR": str(run_dir),
            "IMAGEOPT_S3_PORT_BASE": str(port + 1),
        }
        result = _script("start", env)
        if result.returncode == 0:
            endpoint = S3Endpoint(f"127.0.0.1:{port}", access_key, secret_key, started_here=True)
            return PrivateServer(endpoint, env, run_dir)
        errors.append(result.stderr)
        shutil.rmtree(run_dir, ignore_errors=True)
    raise RuntimeError("could not start a private S3 server:\n" + "\n".join(errors))


def stop_private_server(server: PrivateServer) -> None:
    """Stop a server :func:`start_private_server` started and delete its state."""
    _stop_private(server.env, server.run_dir)


def _start_private(access_key: str, secret_key: str) -> S3Endpoint:
    server = start_private_server(access_key, secret_key)
    atexit.register(_stop_private, server.env, server.run_dir)
    return server.endpoint


def _stop_private(env: dict[str, str], run_dir: Path) -> None:
    _script("stop", env)
    shutil.rmtree(run_dir, ignore_errors=True)


def _script(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own script with a fixed command
        [sys.executable, str(SCRIPT), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
