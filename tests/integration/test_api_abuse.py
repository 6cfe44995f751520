"""The API's limits against a caller that tries to get around them, over real sockets (uvicorn
with ``imageopt api``'s options, Postgres, Redis, the S3 server): concurrent uploads of one guest,
cookie-less guests from one address, new sessions per address, forged ``X-Forwarded-For``."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from PIL import Image

from api.auth import create_api_key
from pipeline.db import create_pool
from pipeline.repository import Repository
from pipeline.storage import ObjectStorage
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api

pytestmark = pytest.mark.integration

HIGH_RATES = {
    "IMAGEOPT_API_RATE_PER_MINUTE": "1000",
    "IMAGEOPT_API_CREATE_RATE_PER_MINUTE": "1000",
}
MODEL = "nightmareai/real-esrgan"
CSRF = "csrf-test-token-0123456789"


@pytest.fixture
def env(pipeline_env: dict[str, str]) -> dict[str, str]:
    """High request rates (the quotas are under test), and a guests' store of this test's own
    so that its uploads can be counted in the shared bucket."""
    return {
        **pipeline_env,
        **HIGH_RATES,
        "IMAGEOPT_API_GUEST_STORE": f"console-{uuid.uuid4().hex[:8]}",
    }


@pytest.fixture
def repo(env: dict[str, str]) -> Iterator[Repository]:
    pool = create_pool(DATABASE_URL, env["IMAGEOPT_DB_SCHEMA"], max_size=2, name="test")
    yield Repository(pool)
    pool.close()


@pytest.fixture
def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def browser(base: str, **headers: str) -> httpx.Client:
    """A client that carries its own CSRF double submit (cookie and header, as any script
    can) but no guest cookie until the api sets one."""
    client = httpx.Client(
        base_url=base, timeout=60,
        headers={"Origin": base, "X-CSRF-Token": CSRF, **headers},
    )  # fmt: skip
    client.cookies.set("csrf_token", CSRF)
    return client


def cookieless_post(base: str, files: int, image: bytes, **headers: str) -> httpx.Response:
    """One multipart job of ``files`` images from a client that drops its cookies after."""
    with browser(base, **headers) as client:
        return client.post(
            "/api/jobs",
            data={"model": MODEL},
            files=[("image", (f"{i}.png", image, "image/png")) for i in range(files)],
        )


def at_once(requests: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the requests in threads released together (a barrier), in order of the list."""
    barrier = threading.Barrier(len(requests))
    answers: list[httpx.Response | BaseException | None] = [None] * len(requests)

    def run(index: int) -> None:
        barrier.wait()
        try:
            answers[index] = requests[index]()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread below
            answers[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    responses = []
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
        assert answer is not None
        responses.append(answer)
    return responses


def assert_quota_envelope(response: httpx.Response, scope: str) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["success"] is False
    assert set(body["error"]) == {"type", "message", "details"}
    assert body["error"]["type"] == "quota_exceeded"
    assert body["error"]["details"]["scope"] == scope
    assert int(response.headers["retry-after"]) > 80_000  # the oldest item frees in ~24 h


def created_items(responses: list[httpx.Response]) -> int:
    return sum(len(r.json()["data"]["items"]) for r in responses if r.status_code == 201)


def uploads_of(env: dict[str, str]) -> list[str]:
    settings = settings_from(env)
    storage = ObjectStorage.from_settings(settings)
    try:
        return list(storage.list_keys(f"uploads/{settings.api_guest_store}/"))
    finally:
        storage.close()


def items_in_db(repo: Repository) -> int:
    return sum(int(row["n"]) for row in repo.status_counts(None, None))


def job_networks(env: dict[str, str]) -> list[str | None]:
    """The client network recorded on each job, in job order."""
    schema = env["IMAGEOPT_DB_SCHEMA"]
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        rows = conn.execute("SELECT client_network FROM image_optimization_jobs ORDER BY id")
        return [row[0] for row in rows]


# --- one guest, many concurrent uploads ------------------------------------------------------
def test_concurrent_uploads_of_one_guest_never_exceed_its_daily_quota(
    env: dict[str, str], repo: Repository, png: bytes
) -> None:
    settings = settings_from(
        {
            **env,
            "IMAGEOPT_API_GUEST_DAILY_ITEMS": "20",
            "IMAGEOPT_API_GUEST_ADDRESS_DAILY_ITEMS": "0",
        }
    )
    with run_api(settings) as base, browser(base) as client:
        assert client.get("/api/usage").status_code == 200  # the guest cookie
        responses = at_once(
            [
                lambda: client.post(
                    "/api/jobs",
                    data={"model": MODEL},
                    files=[("image", (f"{i}.png", png, "image/png")) for i in range(10)],
                )
                for _ in range(10)
            ]
        )
        usage = client.get("/api/usage").json()["data"]["usage"]
    accepted = [r for r in responses if r.status_code == 201]
    assert created_items(responses) == 20
    assert len(accepted) == 2
    for refused in (r for r in responses if r.status_code != 201):
        assert_quota_envelope(refused, "owner")
    assert items_in_db(repo) == 20
    assert (usage["used"], usage["remaining"]) == (20, 0)
    assert len(uploads_of(env)) == 20  # a refused request's uploads are deleted again


def test_concurrent_json_jobs_of_one_store_never_exceed_its_api_quota(
    env: dict[str, str], repo: Repository
) -> None:
    key, _ = create_api_key(repo, "shop-1", "test")
    settings = settings_from({**env, "IMAGEOPT_API_STORE_DAILY_ITEMS": "5"})
    items = [{"sourceUrl": f"https://example.com/{i}.jpg"} for i in range(3)]
    with (
        run_api(settings) as base,
        httpx.Client(
            base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"}
        ) as client,
    ):
        responses = at_once(
            [lambda: client.post("/api/jobs", json={"model": MODEL, "items": items})] * 8
        )
    assert [r.status_code for r in responses].count(201) == 1
    for refused in (r for r in responses if r.status_code != 201):
        assert_quota_envelope(refused, "owner")
    assert items_in_db(repo) == 3


# --- guests without cookies: bounded per client address --------------------------------------
def test_cookieless_uploads_from_one_address_are_bounded_by_the_address_quota(
    env: dict[str, str], repo: Repository, png: bytes
) -> None:
    settings = settings_from(
        {
            **env,
            "IMAGEOPT_API_GUEST_DAILY_ITEMS": "20",
            "IMAGEOPT_API_GUEST_ADDRESS_DAILY_ITEMS": "20",
        }
    )
    with run_api(settings) as base:
        responses = at_once([lambda: cookieless_post(base, 10, png) for _ in range(6)])
        later = cookieless_post(base, 1, png)
    assert created_items(responses) == 20
    for refused in (r for r in responses if r.status_code != 201):
        assert_quota_envelope(refused, "address")
    assert_quota_envelope(later, "address")
    assert "this address" in later.json()["error"]["message"]
    assert items_in_db(repo) == 20
    assert len(uploads_of(env)) == 20


def test_usage_shows_a_guest_the_address_quota_it_shares_and_a_store_none(
    env: dict[str, str], repo: Repository, png: bytes
) -> None:
    settings = settings_from(
        {
            **env,
            "IMAGEOPT_API_GUEST_DAILY_ITEMS": "5",
            "IMAGEOPT_API_GUEST_ADDRESS_DAILY_ITEMS": "3",
        }
    )
    key, _ = create_api_key(repo, "shop-1", "test")
    with run_api(settings) as base, browser(base) as first, browser(base) as second:
        assert first.get("/api/usage").status_code == 200  # the guest cookies
        assert second.get("/api/usage").status_code == 200
        two = [("image", (f"{i}.png", png, "image/png")) for i in range(2)]
        assert first.post("/api/jobs", data={"model": MODEL}, files=two).status_code == 201
        own = second.get("/api/usage").json()["data"]
        assert (own["usage"]["used"], own["usage"]["remaining"]) == (0, 5)
        shared = own["addressUsage"]
        assert (shared["used"], shared["limit"], shared["remaining"]) == (2, 3, 1)
        assert shared["resetAt"] is None
        refused = second.post("/api/jobs", data={"model": MODEL}, files=two)
        assert_quota_envelope(refused, "address")  # what addressUsage said: room for one
        one = [("image", ("a.png", png, "image/png"))]
        assert second.post("/api/jobs", data={"model": MODEL}, files=one).status_code == 201
        full = second.get("/api/usage").json()["data"]["addressUsage"]
        assert (full["used"], full["remaining"]) == (3, 0)
        assert full["resetAt"] is not None  # when the first of them leaves the window
        store = httpx.get(
            f"{base}/api/usage", headers={"Authorization": f"Bearer {key}"}, timeout=20
        )
    assert store.json()["data"]["addressUsage"] is None


def test_new_guest_sessions_per_address_are_rate_limited(
    env: dict[str, str], repo: Repository
) -> None:
    settings = settings_from({**env, "IMAGEOPT_API_GUEST_SESSIONS_PER_HOUR": "3"})
    with run_api(settings) as base:
        first = browser(base)
        assert first.get("/api/usage").status_code == 200
        for _ in range(2):
            with browser(base) as client:
                assert client.get("/api/usage").status_code == 200
        with browser(base) as client:
            refused = client.get("/api/usage")
            console = client.get("/")
        assert first.get("/api/usage").status_code == 200  # a guest keeping its cookie goes on
        first.close()
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "rate_limited"
    assert "new guest sessions" in error["message"]
    assert 3000 < int(refused.headers["retry-after"]) <= 3600
    assert "guest_id" not in refused.cookies
    assert console.status_code == 429


# --- forwarded headers ------------------------------------------------------------------------
def test_forged_forwarded_for_from_an_untrusted_peer_does_not_change_the_throttle_key(
    env: dict[str, str],
) -> None:
    settings = settings_from({**env, "IMAGEOPT_API_READ_RATE_PER_MINUTE": "3"})
    with run_api(settings) as base:
        answers = [
            httpx.get(f"{base}/api/models", headers={"X-Forwarded-For": f"198.51.100.{i}"})
            for i in range(1, 6)
        ]
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
    assert answers[3].json()["error"]["type"] == "rate_limited"


def test_forged_forwarded_for_from_an_untrusted_peer_does_not_reset_the_address_quota(
    env: dict[str, str], png: bytes
) -> None:
    settings = settings_from({**env, "IMAGEOPT_API_GUEST_ADDRESS_DAILY_ITEMS": "10"})
    with run_api(settings) as base:
        first = cookieless_post(base, 10, png, **{"X-Forwarded-For": "198.51.100.1"})
        second = cookieless_post(base, 10, png, **{"X-Forwarded-For": "198.51.100.2"})
    assert first.status_code == 201
    assert_quota_envelope(second, "address")


def test_a_configured_trusted_proxy_sets_the_client_address_of_every_limit(
    env: dict[str, str], repo: Repository, png: bytes
) -> None:
    settings = settings_from(
        {
            **env,
            "IMAGEOPT_TRUSTED_PROXIES": "10.255.0.0/16, 127.0.0.1",
            "IMAGEOPT_API_RATE_PER_MINUTE": "3",
            "IMAGEOPT_API_READ_RATE_PER_MINUTE": "3",
            "IMAGEOPT_API_GUEST_ADDRESS_DAILY_ITEMS": "10",
        }
    )

    def forwarded(address: str) -> dict[str, str]:
        return {"X-Forwarded-For": f"{address}, 10.255.3.4"}  # client, then an inner proxy

    with run_api(settings) as base:
        rotating = [
            httpx.get(f"{base}/api/models", headers=forwarded(f"198.51.100.{i}"))
            for i in range(1, 6)
        ]
        same = [httpx.get(f"{base}/api/models", headers=forwarded("203.0.113.9")) for _ in range(4)]
        a_first = cookieless_post(base, 10, png, **forwarded("192.0.2.1"))
        a_again = cookieless_post(base, 1, png, **forwarded("192.0.2.1"))
        b_first = cookieless_post(base, 10, png, **forwarded("192.0.2.2"))
    assert [r.status_code for r in rotating] == [200] * 5  # each forwarded client its own key
    assert [r.status_code for r in same] == [200, 200, 200, 429]
    assert a_first.status_code == 201
    assert_quota_envelope(a_again, "address")
    assert b_first.status_code == 201
    assert items_in_db(repo) == 20
    assert job_networks(env) == ["192.0.2.1", "192.0.2.2"]
