"""The api pointed at a schema without its migrations (real Postgres, Redis, S3, over
sockets): every route answers 503 naming ``imageopt migrate`` (the envelope on ``/api/*``, the
operations shape on the stats, a plain page for the console), logged once as a structured
event and never as a traceback; ``/healthz`` stays 200, ``/readyz`` says why; after
``imageopt migrate`` the same process serves again by itself."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from psycopg import sql
from structlog.testing import capture_logs

from pipeline.migrate import drop_schema, migrate, shipped_versions
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api

pytestmark = pytest.mark.integration

RECOVERY_DEADLINE_SECONDS = 30.0
"""Upper bound for the api to notice the migration (it rechecks every 5 s); not a figure."""
JSON_ROUTES = [
    ("GET", "/api/models"),
    ("GET", "/api/presets"),
    ("GET", "/api/usage"),
    ("GET", "/api/jobs"),
    ("POST", "/api/jobs"),
    ("GET", "/api/jobs/1"),
    ("GET", "/api/jobs/1/events"),
    ("POST", "/api/jobs/1/cancel"),
    ("GET", "/api/items/1/result"),
    ("GET", "/api/openapi.yaml"),
]


@pytest.fixture
def empty_schema() -> Iterator[str]:
    """A schema that exists and holds nothing (``imageopt migrate`` never ran)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield schema
    drop_schema(DATABASE_URL, schema)


def test_every_route_answers_503_naming_imageopt_migrate_until_it_ran(
    pipeline_env: dict[str, str], empty_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    env = {**pipeline_env, "IMAGEOPT_DB_SCHEMA": empty_schema}
    caplog.set_level(logging.WARNING)
    with (
        capture_logs() as logs,
        run_api(settings_from(env)) as base,
        httpx.Client(base_url=base, timeout=20, headers={"Origin": base}) as client,
    ):
        for method, path in JSON_ROUTES:
            response = client.request(method, path, json={} if method == "POST" else None)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["retry-after"] == "5"
            error = response.json()["error"]
            assert error["type"] == "service_unavailable", path
            assert "imageopt migrate" in error["message"], path

        stats = client.get("/api/replicate-rate-limiter/stats")
        assert stats.status_code == 503
        assert stats.json()["status"] == "error"
        assert stats.json()["error"] == "schema_not_migrated"
        assert "imageopt migrate" in stats.json()["message"]

        for path in ("/", "/static/console.js"):
            page = client.get(path)
            assert page.status_code == 503
            assert page.headers["content-type"].startswith("text/html")
            assert "imageopt migrate" in page.text
            assert page.headers["x-frame-options"] == "DENY"  # still behind the headers

        assert client.get("/healthz").status_code == 200  # alive: do not restart it
        assert client.get("/metrics").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["schema"] == "error: schema_not_migrated"

        migrate(DATABASE_URL, empty_schema)
        deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
        while (models := client.get("/api/models")).status_code == 503:
            assert time.monotonic() < deadline, "the api did not notice the migration"
            time.sleep(0.5)
        assert models.status_code == 200
        assert client.get("/").status_code == 200
        assert client.get("/api/replicate-rate-limiter/stats").status_code == 200

    events = [e["event"] for e in logs]
    warned = [e for e in logs if e["event"] == "api_schema_not_migrated"]
    assert len(warned) == 1  # once, not per request
    assert warned[0]["missing"] == list(shipped_versions())
    assert warned[0]["schema"] == empty_schema
    assert events.count("api_schema_migrated") == 1
    assert "api_internal_error" not in events
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
