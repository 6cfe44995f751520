"""The operator console's routes over HTTP (real Postgres, Redis, S3; the api under uvicorn):
only operators get in (401 without credentials, 403 for a store key or a console guest, on
every ops route), sign-in sets a session that the CSRF check guards, each lever is audited,
and failed items show the detailed message to operators only."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from api.auth import create_api_key
from api.operator_auth import LOGIN_ATTEMPTS_PER_MINUTE, create_operator_key
from pipeline.repository import FailedFilter, Repository
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api

pytestmark = pytest.mark.integration

READS = ["/ops/api/overview", "/ops/api/failed", "/ops/api/items/1/input",
         "/ops/api/items/1/result"]  # fmt: skip
WRITES = {
    "/ops/api/retry": {"itemId": 1},
    "/ops/api/cancel": {"itemId": 1},
    "/ops/api/submissions": {"paused": True},
    "/ops/api/stores/shop-1": {"paused": True},
}


@pytest.fixture
def api(pipeline_env: dict[str, str]) -> Iterator[str]:
    with run_api(settings_from(pipeline_env)) as base:
        yield base


def failed_item(schema: str, store: str, message: str) -> tuple[int, int]:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        job = conn.execute(
            "INSERT INTO image_optimization_jobs (store_id, model) "
            "VALUES (%s, 'nightmareai/real-esrgan') RETURNING id",
            (store,),
        ).fetchone()
        assert job is not None
        item = conn.execute(
            "INSERT INTO image_optimization_items (job_id, store_id, source_url, status, "
            "error_code, error_message, attempts, completed_at) VALUES (%s, %s, "
            "'https://img.example/a.jpg', 'FAILED', 'source_fetch_failed', %s, 3, now()) "
            "RETURNING id",
            (job[0], store, message),
        ).fetchone()
        assert item is not None
    return int(job[0]), int(item[0])


@contextlib.contextmanager
def signed_in(base: str, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, headers={"Origin": base}) as client:
        client.get("/ops/login")
        client.headers["X-CSRF-Token"] = client.cookies["csrf_token"]
        response = client.post("/ops/login", json={"key": key})
        assert response.status_code == 200, response.text
        yield client


def test_store_keys_and_guests_get_403_and_strangers_401_on_every_ops_route(
    api: str, repo: Repository
) -> None:
    store_key, _ = create_api_key(repo, "shop-1")
    with httpx.Client(base_url=api) as anyone:
        anyone.get("/")  # a console guest: guest_id and csrf_token cookies
        guest_headers = {"Origin": api, "X-CSRF-Token": anyone.cookies["csrf_token"]}
        for path in READS:
            assert anyone.get(path).status_code == 403, path
            bearer = {"Authorization": f"Bearer {store_key}"}
            assert httpx.get(api + path, headers=bearer).status_code == 403, path
            assert httpx.get(api + path).status_code == 401, path
        for path, body in WRITES.items():
            assert anyone.post(path, json=body, headers=guest_headers).status_code == 403, path
            bearer = {"Authorization": f"Bearer {store_key}"}
            assert httpx.post(api + path, json=body, headers=bearer).status_code == 403, path
            assert httpx.post(api + path, json=body, headers={"Origin": api}).status_code == 403
        assert anyone.get("/ops", follow_redirects=False).status_code == 403
    login = httpx.post(f"{api}/ops/login", json={"key": store_key},
                       headers={"Authorization": f"Bearer {store_key}"})  # fmt: skip
    assert login.status_code == 403
    assert httpx.get(f"{api}/ops", follow_redirects=False).headers["location"] == "/ops/login"
    assert repo.ops_audit_recent(10) == []  # nothing was done


def test_an_operator_sees_the_detailed_message_retries_and_the_audit_log_says_who(
    api: str, repo: Repository, pipeline_env: dict[str, str]
) -> None:
    schema = pipeline_env["IMAGEOPT_DB_SCHEMA"]
    _, item = failed_item(schema, "shop-1", "connect to 10.0.0.7:443 refused")
    key, key_id = create_operator_key(repo, "alice")
    with signed_in(api, key) as ops:
        failed = ops.get("/ops/api/failed", params={"store": "shop-1"}).json()["data"]
        assert failed["total"] == 1
        assert failed["items"][0]["errorMessage"] == "connect to 10.0.0.7:443 refused"
        assert ops.get("/ops/api/failed", params={"job": "x"}).status_code == 400
        assert ops.get("/ops/api/failed", params={"since": "yesterday"}).status_code == 400
        # a filter retry needs the confirmed count, and refuses when more match than confirmed
        body: dict[str, Any] = {"filter": {"store": "shop-1"}, "expected": 0, "reason": "INC-1"}
        conflict = ops.post("/ops/api/retry", json=body)
        assert conflict.status_code == 409
        assert conflict.json()["error"]["details"] == {"matching": 1}
        body["expected"] = 1
        assert ops.post("/ops/api/retry", json=body).json()["data"]["retried"] == 1
        assert repo.ops_get_item(item)["status"] == "PENDING"  # type: ignore[index]
        canceled = ops.post("/ops/api/cancel", json={"itemId": item, "reason": "duplicate"})
        assert canceled.json()["data"] == {"canceled": 1}
        assert repo.ops_get_item(item)["status"] == "CANCELED"  # type: ignore[index]
        assert ops.post("/ops/api/cancel", json={"itemId": 1, "jobId": 1}).status_code == 400
        store = ops.post("/ops/api/stores/shop-1", json={"weight": 4, "paused": True})
        assert store.json()["data"] == {"storeId": "shop-1", "weight": 4, "quota": None,
                                        "paused": True}  # fmt: skip
        assert ops.post("/ops/api/stores/shop-1", json={"weight": 0}).status_code == 400
        assert ops.post("/ops/api/stores/shop-1", content=b"{").status_code == 400
        overview = ops.get("/ops/api/overview").json()["data"]
        assert [s["storeId"] for s in overview["stores"] if s["paused"]] == ["shop-1"]
        # without the CSRF header a cookie session changes nothing
        del ops.headers["X-CSRF-Token"]
        assert ops.post("/ops/api/submissions", json={"paused": True}).status_code == 403
    bearer = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{api}/ops/api/overview", headers=bearer).status_code == 200
    audit = repo.ops_audit_recent(10)
    assert [a["action"] for a in audit] == ["store_settings", "cancel", "retry", "sign_in"]
    assert audit[2]["actor"] == f"alice (operator key {key_id})"
    assert audit[2]["reason"] == "INC-1"
    assert audit[0]["details"]["weight"] == {"from": 1, "to": 4}
    # a confirmed count bounds the retry, whatever failed meanwhile
    for _ in range(3):
        failed_item(schema, "shop-2", "refused")
    assert len(repo.ops_retry_failed(FailedFilter(store_id="shop-2"), 2)) == 2
    assert repo.ops_count_failed(FailedFilter(store_id="shop-2")) == 1
    repo.ops_revoke_operator_key(key_id)
    assert httpx.get(f"{api}/ops/api/overview", headers=bearer).status_code == 401


def test_sign_in_attempts_are_bounded_per_address_under_concurrent_requests(api: str) -> None:
    def attempt(_: int) -> int:
        return httpx.post(f"{api}/ops/login", json={"key": "iok_00000000_wrong"},
                          headers={"Authorization": "Bearer x"}).status_code  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(attempt, range(LOGIN_ATTEMPTS_PER_MINUTE + 10)))
    assert codes.count(401) == LOGIN_ATTEMPTS_PER_MINUTE
    assert codes.count(429) == 10
