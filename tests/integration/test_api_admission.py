"""Every guarded route runs one prelude (api/admission.py): who is asking, then their request
limit, and only then the resource and its owner (real Postgres, Redis, S3 and api server)."""

from __future__ import annotations

import httpx
import pytest

from api.auth import create_api_key
from pipeline.db import create_pool
from pipeline.repository import Repository
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api

pytestmark = pytest.mark.integration

MISSING = 2**62
GUARDED = [
    ("GET", "/api/jobs"),
    ("GET", f"/api/jobs/{MISSING}"),
    ("GET", f"/api/jobs/{MISSING}/events"),
    ("POST", f"/api/jobs/{MISSING}/cancel"),
    ("POST", f"/api/jobs/{MISSING}/retry"),
    ("GET", f"/api/items/{MISSING}/input"),
    ("GET", f"/api/items/{MISSING}/result"),
    ("POST", "/api/preview"),
    ("POST", "/api/analyze"),
    ("GET", "/api/usage"),
    ("GET", "/api/presets"),
    ("GET", "/api/models"),
]


def test_a_bad_key_is_401_on_every_guarded_route_before_any_lookup(
    pipeline_env: dict[str, str],
) -> None:
    env = {**pipeline_env, "IMAGEOPT_API_RATE_PER_MINUTE": "1000"}
    headers = {"Authorization": "Bearer not-a-key"}
    with run_api(settings_from(env)) as base, httpx.Client(base_url=base, timeout=20) as client:
        for method, path in GUARDED:
            answer = client.request(method, path, headers=headers)
            assert answer.status_code == 401, (method, path)
            assert answer.json()["error"]["type"] == "unauthorized"


def test_the_request_limit_is_counted_before_the_resource_is_looked_up(
    pipeline_env: dict[str, str],
) -> None:
    env = {**pipeline_env, "IMAGEOPT_API_RATE_PER_MINUTE": "1",
           "IMAGEOPT_API_READ_RATE_PER_MINUTE": "1"}  # fmt: skip
    pool = create_pool(DATABASE_URL, env["IMAGEOPT_DB_SCHEMA"], max_size=1, name="test")
    repo = Repository(pool)
    try:
        with run_api(settings_from(env)) as base:
            for method, path in GUARDED:
                key, _ = create_api_key(repo, "shop", "test")  # a fresh caller per route
                with httpx.Client(
                    base_url=base, timeout=20, headers={"Authorization": f"Bearer {key}"}
                ) as client:
                    first = client.request(method, path)
                    assert first.status_code != 429, (method, path)
                    second = client.request(method, path)
                    assert second.status_code == 429, (method, path, second.text)
    finally:
        pool.close()
