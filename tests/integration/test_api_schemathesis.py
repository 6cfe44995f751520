"""schemathesis against ``api/openapi.yaml``: generated requests to every operation of
the running api (real Postgres, Redis, S3) find no server error, and every answer matches the
documented status codes, content types and schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.auth import create_api_key
from api.operator_auth import create_operator_key
from pipeline.db import create_pool
from pipeline.repository import Repository
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPEC = Path(__file__).resolve().parents[2] / "api" / "openapi.yaml"
EXAMPLES_PER_OPERATION = 10
SKIPPED = {("GET", "/api/jobs/{jobId}/events")}  # a stream: covered by test_api.py
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_generated_requests_find_no_server_error(pipeline_env: dict[str, str]) -> None:
    env = {
        **pipeline_env,
        "IMAGEOPT_API_RATE_PER_MINUTE": "100000",
        "IMAGEOPT_API_READ_RATE_PER_MINUTE": "100000",
        "IMAGEOPT_API_CREATE_RATE_PER_MINUTE": "100000",
        "IMAGEOPT_API_PRESET_WRITES_PER_MINUTE": "100000",
        "IMAGEOPT_API_GUEST_DAILY_ITEMS": "0",
        "IMAGEOPT_API_GENERATE_WAIT_SECONDS": "0.2",  # no workers run: 202 after the wait
    }
    pool = create_pool(DATABASE_URL, env["IMAGEOPT_DB_SCHEMA"], max_size=1, name="test")
    repo = Repository(pool)
    key, _ = create_api_key(repo, "shop-1")
    operator_key, _ = create_operator_key(repo, "schemathesis")
    repo.insert_job(store_id="shop-1", model="sczhou/codeformer", prompt=None, params={},
                    preset=None, items=[{"source_url": "https://example.com/a.jpg"}])  # fmt: skip
    pool.close()
    schema = schemathesis.openapi.from_path(SPEC)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operations.append(result.ok())
    assert len(operations) >= 21  # the /api/* routes and the seeds' paths
    tested = []
    with run_api(settings_from(env)) as base, httpx.Client() as _:
        for operation in operations:
            if (operation.method.upper(), operation.path) in SKIPPED:
                continue

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            def run(case: schemathesis.Case[Any]) -> None:
                # the operator console's routes as an operator (a store key only gets 403 there)
                as_operator = case.operation.path.startswith("/ops/api/")
                headers = {"Authorization": f"Bearer {operator_key if as_operator else key}"}
                case.call_and_validate(base_url=base, headers=headers, checks=CHECKS)

            run()
            tested.append(f"{operation.method.upper()} {operation.path}")
    assert len(tested) == len(operations) - len(SKIPPED)
