"""Test helpers: the api app under uvicorn in a thread, on a port the OS picks; a repository
on a test's schema; HTTP clients closed when the test ends (the fixtures ``api_env``, ``api``,
``repo`` of :mod:`tests.support.api_fixtures` are built from these)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from api import create_app
from api.app import uvicorn_options
from api.auth import create_api_key
from devstack.processes import serve_asgi_in_thread
from pipeline.config import Settings
from pipeline.db import create_pool
from pipeline.repository import Repository
from tests.conftest import DATABASE_URL

HIGH_LIMITS = {
    "IMAGEOPT_API_RATE_PER_MINUTE": "1000",
    "IMAGEOPT_API_READ_RATE_PER_MINUTE": "1000",
    "IMAGEOPT_API_CREATE_RATE_PER_MINUTE": "1000",
}
"""Per-caller request limits high enough that a test's own requests never meet them."""

_OPEN_CLIENTS: list[httpx.Client] = []

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


@contextlib.contextmanager
def repository(schema: str) -> Iterator[Repository]:
    """A :class:`Repository` on ``schema`` of the test database (a pool of 2), closed on exit."""
    pool = create_pool(DATABASE_URL, schema, max_size=2, name="test")
    try:
        yield Repository(pool)
    finally:
        pool.close()


def track(client: httpx.Client) -> httpx.Client:
    """``client``, closed when the test ends (:func:`close_tracked`, an autouse fixture)."""
    _OPEN_CLIENTS.append(client)
    return client


def close_tracked() -> None:
    """Close every client :func:`track` was given."""
    while _OPEN_CLIENTS:
        _OPEN_CLIENTS.pop().close()


def store_client(base: str, repo: Repository, store: str) -> httpx.Client:
    """A client of the api at ``base`` holding a new API key of ``store`` (tracked)."""
    key, _ = create_api_key(repo, store, "test")
    return track(
        httpx.Client(base_url=base, timeout=20, headers={"Authorization": f"Bearer {key}"})
    )
