"""Shared fixtures: real Postgres (a fresh schema per test), Redis (a fresh key namespace per
test), the S3 server (a fresh bucket per session) and the emulator."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from pipeline.config import Settings
from pipeline.migrate import drop_schema, migrate
from pipeline.taskqueue import POLL_QUEUE

if TYPE_CHECKING:
    from pipeline.storage import ObjectStorage

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

LONGEST_FIRST = (
    "tests/faults/test_soak.py",
    "tests/integration/test_bench_smoke.py",
    "tests/integration/test_demo_offline.py",
    "tests/faults/test_provider_faults.py",
    "tests/integration/test_health_probes.py",
)
"""The modules that take longest (measured: README, "Development"), run first. ``make test``
hands whole modules to its parallel workers (pytest-xdist ``--dist loadfile``) in collection
order, so a long one that came last would run alone at the end."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order modules: :data:`LONGEST_FIRST`, then those with a test marked ``slow``, then the
    rest; each module's tests stay together and in their order (the sort is stable), so its
    module-scoped fixtures are still made once."""

    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::", 1)[0]

    slow = {module(item) for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        name = module(item)
        if name in LONGEST_FIRST:
            return LONGEST_FIRST.index(name)
        return len(LONGEST_FIRST) + (0 if name in slow else 1)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def images_dir() -> Path:
    """The shared corpus of real photos (``../shared/data/images``)."""
    if not IMAGES.is_dir():
        pytest.fail(f"shared images not found at {IMAGES}")
    return IMAGES


@pytest.fixture(scope="session")
def s3_settings() -> Iterator[dict[str, str]]:
    """An S3 server (started if needed) and a bucket of this session's own, emptied after."""
    from pipeline.storage import ObjectStorage
    from tests.support.s3 import ensure_s3_server

    endpoint = ensure_s3_server()
    bucket = f"test-{uuid.uuid4().hex[:10]}"
    values = {
        "S3_ENDPOINT": endpoint.endpoint,
        "S3_ACCESS_KEY": endpoint.access_key,
        "S3_SECRET_KEY": endpoint.secret_key,
        "S3_BUCKET": bucket,
    }
    storage = ObjectStorage(
        endpoint=endpoint.endpoint,
        access_key=endpoint.access_key,
        secret_key=endpoint.secret_key,
        bucket=bucket,
    )
    storage.ensure_bucket()
    yield values
    for key in list(storage.list_keys("")):
        storage.delete(key)
    storage.remove_bucket()


@pytest.fixture
def storage(s3_settings: dict[str, str]) -> Iterator[ObjectStorage]:
    """The pipeline's S3 client on the session's bucket (:func:`s3_settings`); modules whose
    api or stack has a bucket of its own define their own ``storage``."""
    from pipeline.storage import ObjectStorage

    store = ObjectStorage(
        endpoint=s3_settings["S3_ENDPOINT"],
        access_key=s3_settings["S3_ACCESS_KEY"],
        secret_key=s3_settings["S3_SECRET_KEY"],
        bucket=s3_settings["S3_BUCKET"],
    )
    yield store
    store.close()


@pytest.fixture
def db_schema() -> Iterator[str]:
    """A freshly migrated schema of this test's own, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    migrate(DATABASE_URL, schema)
    yield schema
    drop_schema(DATABASE_URL, schema)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A client of the test Redis (``REDIS_URL``), closed afterwards."""
    connection = redis.Redis.from_url(REDIS_URL)
    yield connection
    connection.close()


@pytest.fixture
def poll_broker() -> Iterator[StubBroker]:
    """An in-memory dramatiq broker with the poll queue declared: the polls a worker's services
    send (no actor consumes them) stay in ``POLL_QUEUE`` and its delay queue, to be counted."""
    stub = StubBroker()
    stub.declare_queue(POLL_QUEUE)
    yield stub
    stub.close()


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A Redis key namespace of this test's own; its keys are deleted afterwards."""
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    yield namespace
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for pattern in (f"{namespace}:*", f"{namespace}-dramatiq*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def pipeline_env(
    db_schema: str, redis_namespace: str, s3_settings: dict[str, str]
) -> dict[str, str]:
    """Environment variables for pipeline processes under test (no emulator URL yet)."""
    return {
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "IMAGEOPT_DB_SCHEMA": db_schema,
        "IMAGEOPT_REDIS_NAMESPACE": redis_namespace,
        "IMAGEOPT_SOURCE_ALLOWLIST": "127.0.0.0/8",
        # no /metrics servers on fixed ports (tests run side by side); observability tests
        # set free ports
        "IMAGEOPT_SCHEDULER_METRICS_PORT": "0",
        "IMAGEOPT_WORKER_METRICS_PORT": "0",
        **s3_settings,
    }


def settings_from(env: dict[str, str]) -> Settings:
    """Settings built from ``env`` only (what a child process with that env would read)."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


pytest_plugins = ["tests.support.api_fixtures"]
"""Shared fixtures: the api tests' ``api_env`` and ``api``, and every test's ``repo``."""
