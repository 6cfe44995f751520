"""The console's sign-in with a store's API key over HTTP (real Postgres, Redis, S3; the api
under uvicorn): the session cookie makes a browser the store (history, presets, quota) until it
signs out, the key is revoked or the session expires; wrong keys get one generic 401; sign-in
attempts are bounded per client address under concurrent requests; both writes need the
Origin and the CSRF double submit."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from api.auth import create_api_key
from api.operator_auth import create_operator_key
from api.store_session import WRONG_KEY
from pipeline.repository import Repository
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.integration

SIGN_INS_PER_MINUTE = 4
LIMITS = {
    "IMAGEOPT_API_RATE_PER_MINUTE": "1000",
    "IMAGEOPT_API_CREATE_RATE_PER_MINUTE": "1000",
    "IMAGEOPT_API_PRESET_WRITES_PER_MINUTE": "1000",
    "IMAGEOPT_API_STORE_DAILY_ITEMS": "500",
    "IMAGEOPT_API_SIGN_IN_ATTEMPTS_PER_MINUTE": str(SIGN_INS_PER_MINUTE),
}
MODEL = "nightmareai/real-esrgan"


@pytest.fixture
def api_env(pipeline_env: dict[str, str]) -> dict[str, str]:
    """The shared ``api`` fixture (tests/support/api_fixtures.py) uses these."""
    return {**pipeline_env, **LIMITS}


@pytest.fixture
def browser(api: str) -> Iterator[httpx.Client]:
    """A browser-like client: opens the console (guest and CSRF cookies), then sends the Origin
    and the CSRF header on every request."""
    with httpx.Client(base_url=api, timeout=20, headers={"Origin": api}) as client:
        assert client.get("/").status_code == 200
        client.headers["X-CSRF-Token"] = client.cookies["csrf_token"]
        yield client


def sessions_in(schema: str) -> int:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        row = conn.execute("SELECT count(*) FROM image_optimization_store_sessions").fetchone()
    assert row is not None
    return int(row[0])


def who(client: httpx.Client) -> dict[str, object]:
    response = client.get("/api/session")
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()["data"]
    return data


def test_a_signed_in_browser_is_the_store_until_it_signs_out(
    api: str, browser: httpx.Client, repo: Repository, api_env: dict[str, str]
) -> None:
    key, _ = create_api_key(repo, "shop-1", "console")
    source = {"source_url": "https://example.com/a.jpg"}
    upstream = repo.insert_job(
        store_id="shop-1", model=MODEL, prompt=None, params={}, preset=None, items=[source]
    )
    assert who(browser) == {"signedIn": False, "owner": "guest", "storeId": None}
    assert (
        browser.post("/api/presets", json={"name": "sq", "spec": {"format": "png"}}).json()[
            "error"
        ]["type"]
        == "store_required"
    )

    signed = browser.post("/api/session", json={"key": key})
    assert signed.status_code == 200, signed.text
    assert signed.json()["data"] == {"signedIn": True, "owner": "store", "storeId": "shop-1"}
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith("store_session=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/", "Max-Age=43200"):
        assert attribute.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()  # plain http here; https sets Secure
    assert key not in cookie
    assert signed.headers["cache-control"] == "no-store"

    assert who(browser) == {"signedIn": True, "owner": "store", "storeId": "shop-1"}
    jobs = browser.get("/api/jobs").json()["data"]["jobs"]
    assert [row["id"] for row in jobs] == [upstream]  # the store's history
    created = browser.post("/api/presets", json={"name": "sq", "spec": {"format": "png"}})
    assert created.status_code == 201, created.text
    job = browser.post(
        "/api/jobs", json={"model": MODEL, "items": [{"sourceUrl": "https://example.com/b.jpg"}]}
    )
    assert job.status_code == 201, job.text
    assert (job.json()["data"]["storeId"], job.json()["data"]["ownerType"]) == ("shop-1", "store")
    usage = browser.get("/api/usage").json()["data"]["usage"]
    assert (usage["used"], usage["limit"]) == (2, 500)  # the store's items and quota, not a guest's
    page = browser.get("/")
    assert "Store shop-1" in page.text
    assert 'id="signout"' in page.text

    stolen = browser.cookies["store_session"]
    out = browser.delete("/api/session")
    assert out.status_code == 200, out.text
    assert (
        'store_session=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    )
    assert sessions_in(api_env["IMAGEOPT_DB_SCHEMA"]) == 0
    assert who(browser) == {"signedIn": False, "owner": "guest", "storeId": None}
    # The cookie of a signed-out session opens nothing, even sent again.
    replay = httpx.get(f"{api}/api/jobs", cookies={"store_session": stolen})
    assert replay.status_code == 401


def test_wrong_revoked_and_operator_keys_get_the_same_generic_401(
    browser: httpx.Client, repo: Repository
) -> None:
    revoked, revoked_id = create_api_key(repo, "shop-1")
    repo.api_revoke_key(revoked_id)
    operator, _ = create_operator_key(repo, "ops")
    for key in ("iok_00000000_wrong", revoked, operator):
        refused = browser.post("/api/session", json={"key": key})
        assert refused.status_code == 401, key
        assert refused.json()["error"] == {"type": "unauthorized", "message": WRONG_KEY}
        assert "set-cookie" not in refused.headers
    empty = browser.post("/api/session", json={"key": ""})
    assert (empty.status_code, empty.json()["error"]["details"]) == (400, {"field": "key"})


def test_revoking_the_key_ends_its_sessions(browser: httpx.Client, repo: Repository) -> None:
    key, key_id = create_api_key(repo, "shop-1")
    assert browser.post("/api/session", json={"key": key}).status_code == 200
    assert browser.get("/api/presets").status_code == 200
    assert browser.post("/api/presets", json={"name": "a", "spec": {"format": "png"}}).is_success

    assert repo.api_revoke_key(key_id)
    answer = browser.get("/api/session")
    assert answer.json()["data"]["owner"] == "guest"
    assert "store_session=" in answer.headers["set-cookie"]  # the dead cookie is cleared
    refused = browser.post("/api/presets", json={"name": "b", "spec": {"format": "png"}})
    assert refused.json()["error"]["type"] == "store_required"


def test_an_expired_session_is_no_longer_the_store(
    browser: httpx.Client, repo: Repository, api_env: dict[str, str]
) -> None:
    key, _ = create_api_key(repo, "shop-1")
    assert browser.post("/api/session", json={"key": key}).status_code == 200
    assert who(browser)["storeId"] == "shop-1"
    with psycopg.connect(
        DATABASE_URL, options=f"-c search_path={api_env['IMAGEOPT_DB_SCHEMA']}"
    ) as c:
        c.execute("UPDATE image_optimization_store_sessions SET expires_at = now() - interval '1s'")
    assert who(browser) == {"signedIn": False, "owner": "guest", "storeId": None}
    # A new sign-in forgets expired rows.
    assert browser.post("/api/session", json={"key": key}).status_code == 200
    assert sessions_in(api_env["IMAGEOPT_DB_SCHEMA"]) == 1


def test_sign_in_and_sign_out_need_the_origin_and_the_csrf_token(
    api: str, browser: httpx.Client, repo: Repository, api_env: dict[str, str]
) -> None:
    key, _ = create_api_key(repo, "shop-1")
    token = browser.cookies["csrf_token"]
    cookies = {"csrf_token": token}
    refusals = [
        httpx.post(f"{api}/api/session", json={"key": key}, cookies=cookies,
                   headers={"X-CSRF-Token": token}),  # no Origin
        httpx.post(f"{api}/api/session", json={"key": key}, cookies=cookies,
                   headers={"Origin": "https://evil.example", "X-CSRF-Token": token}),
        httpx.post(f"{api}/api/session", json={"key": key}, cookies=cookies,
                   headers={"Origin": api}),  # no token
    ]  # fmt: skip
    for refused in refusals:
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "csrf_failed"
    assert sessions_in(api_env["IMAGEOPT_DB_SCHEMA"]) == 0

    assert browser.post("/api/session", json={"key": key}).status_code == 200
    session = browser.cookies["store_session"]
    forged = httpx.delete(
        f"{api}/api/session", cookies={"store_session": session, "csrf_token": token},
        headers={"Origin": "https://evil.example", "X-CSRF-Token": token},
    )  # fmt: skip
    assert forged.status_code == 403
    assert who(browser)["signedIn"] is True


def test_sign_in_attempts_are_bounded_per_address_under_concurrent_requests(
    api: str, repo: Repository
) -> None:
    key, _ = create_api_key(repo, "shop-1")
    token = "t" * 24
    headers = {"Origin": api, "X-CSRF-Token": token}

    def attempt(_: int) -> int:
        return httpx.post(f"{api}/api/session", json={"key": "iok_00000000_wrong"},
                          headers=headers, cookies={"csrf_token": token}).status_code  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(attempt, range(SIGN_INS_PER_MINUTE + 12)))
    assert codes.count(401) == SIGN_INS_PER_MINUTE
    assert codes.count(429) == 12
    late = httpx.post(f"{api}/api/session", json={"key": key}, headers=headers,
                      cookies={"csrf_token": token})  # fmt: skip
    assert late.status_code == 429  # even the right key waits: the limit comes first
    assert late.json()["error"]["type"] == "rate_limited"
    assert int(late.headers["retry-after"]) >= 1
