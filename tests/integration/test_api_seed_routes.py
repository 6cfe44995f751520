"""The seeds' API paths (seed 002 §4/§5, seed 001's smoke tests) against real Postgres, Redis
and the S3 server over sockets, with scheduler and worker processes and the emulator where an
item must really finish: the envelope, 405 + Allow, guest cookies, CSRF, owner-gated files,
the synchronous generate (200 within its wait, 202 after it) and SDXL's steps."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from api.final_items import SAFETY_READ_SECONDS, application_name
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import HIGH_LIMITS, run_api
from tests.support.prometheus import samples
from tests.support.stack import run_stack

pytestmark = pytest.mark.integration

PHOTO = "store-food/coffee-cup.png"
CSRF = "seed-csrf-token-0123456789"


@pytest.fixture
def photo(images_dir: Path) -> bytes:
    return (images_dir / PHOTO).read_bytes()


@pytest.fixture
def quick_api(pipeline_env: dict[str, str]) -> Iterator[str]:
    """The api alone (no workers): a generate's wait runs out after 0.5 s."""
    env = {**pipeline_env, **HIGH_LIMITS, "IMAGEOPT_API_GENERATE_WAIT_SECONDS": "0.5"}
    with run_api(settings_from(env)) as base:
        yield base


@contextlib.contextmanager
def visitor(base: str) -> Iterator[httpx.Client]:
    """A client as seed 001's smoke test is: its first request, ``GET /api/ai-image/usage``,
    seeds the ``guest_id`` cookie; it sends Origin and the double-submit CSRF token."""
    with httpx.Client(base_url=base, timeout=60, headers={"Origin": base}) as client:
        response = client.get("/api/ai-image/usage")
        assert response.status_code == 200, response.text
        assert "guest_id" in client.cookies
        client.cookies.set("csrf_token", CSRF)
        client.headers["X-CSRF-Token"] = CSRF
        yield client


def generate(client: httpx.Client, photo: bytes, **fields: str) -> httpx.Response:
    data = {"model": "nightmareai/real-esrgan", **fields}
    return client.post(
        "/api/ai-image/generate", data=data, files=[("image", ("eh_test.png", photo, "image/png"))]
    )


def test_generate_answers_the_image_owner_gated_and_counts_usage(
    pipeline_env: dict[str, str], photo: bytes, tmp_path: Path
) -> None:
    env = {**pipeline_env, **HIGH_LIMITS, "IMAGEOPT_API_GENERATE_WAIT_SECONDS": "60"}
    with run_stack(env, tmp_path / "logs") as base, visitor(base) as owner:
        before = owner.get("/api/ai-image/usage").json()["data"]["usage"]["used"]
        response = generate(owner, photo, scale="2")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True
        data = body["data"]
        assert {"model", "originalUrl", "imageUrl", "usage", "limits"} <= set(data)
        assert data["model"] == "nightmareai/real-esrgan"
        assert data["usage"]["used"] == before + 1
        assert data["imageUrl"].startswith(f"{base}/r2-ai/results/")
        assert data["originalUrl"].startswith(f"{base}/r2-ai/uploads/")

        image = owner.get(data["imageUrl"])
        assert image.status_code == 200
        assert image.headers["content-type"].startswith("image/")
        assert image.headers["cache-control"].startswith("private")
        assert owner.get(data["originalUrl"]).status_code == 200
        with httpx.Client(timeout=20) as anonymous:
            assert anonymous.get(data["imageUrl"]).status_code == 403
            assert anonymous.get(data["originalUrl"]).status_code == 403
        with visitor(base) as stranger:
            denied = stranger.get(data["imageUrl"])
            assert denied.status_code == 403
            assert denied.json()["error"]["type"] == "forbidden"


def _samples(base: str, name: str) -> dict[str, float]:
    """The api's ``/metrics`` samples called ``name``, by their labels' values."""
    text = httpx.get(f"{base}/metrics", timeout=20).text
    return {",".join(sample.labels.values()): sample.value for sample in samples(text, name)}


def _listener_pids(schema: str) -> list[int]:
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            (application_name(schema),),
        ).fetchall()
    return [row[0] for row in rows]


def test_generate_is_woken_by_the_items_notification_and_survives_a_killed_listener(
    pipeline_env: dict[str, str], photo: bytes, tmp_path: Path
) -> None:
    schema = pipeline_env["IMAGEOPT_DB_SCHEMA"]
    env = {**pipeline_env, **HIGH_LIMITS, "IMAGEOPT_API_GENERATE_WAIT_SECONDS": "60"}
    reads = "imageopt_api_generate_item_reads_total"
    connects = "imageopt_api_item_final_listener_connects_total"
    with run_stack(env, tmp_path / "logs") as base, visitor(base) as client:
        before = _samples(base, reads)
        started = time.monotonic()
        response = generate(client, photo)
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        after = _samples(base, reads)
        delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in ("first", "notified", "safety")}
        assert delta["first"] == 1
        assert delta["notified"] >= 1  # the NOTIFY woke it, not a safety re-read
        # one read at the start, one when told, one per safety interval: not one per 0.5 s
        assert sum(delta.values()) <= 2 + elapsed // SAFETY_READ_SECONDS, (delta, elapsed)

        [listener] = _listener_pids(schema)
        connected = _samples(base, connects)[""]
        with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (listener,))
        again = generate(client, photo)
        assert again.status_code == 200, again.text
        assert _samples(base, connects)[""] > connected  # it listened again
        assert _listener_pids(schema) not in ([], [listener])


def test_generate_answers_202_with_the_jobs_url_when_the_wait_runs_out(
    quick_api: str, photo: bytes
) -> None:
    with visitor(quick_api) as client:
        response = generate(client, photo)
        assert response.status_code == 202, response.text
        data = response.json()["data"]
        assert data["jobUrl"] == f"{quick_api}/api/ai-image/jobs/{data['jobId']}"
        assert response.headers["location"] == data["jobUrl"]
        job = client.get(data["jobUrl"])
        assert job.status_code == 200
        assert job.json()["data"]["id"] == data["jobId"]
        with visitor(quick_api) as stranger:
            assert stranger.get(data["jobUrl"]).status_code == 403


def _job_params(schema: str, job_id: int) -> object:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        row = conn.execute(
            "SELECT params FROM image_optimization_jobs WHERE id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return row[0]


def test_generate_takes_steps_and_model_parameters_as_fields(
    quick_api: str, photo: bytes, pipeline_env: dict[str, str]
) -> None:
    schema = pipeline_env["IMAGEOPT_DB_SCHEMA"]
    sdxl = {"model": "stability-ai/sdxl", "prompt": "a brighter cup"}
    with visitor(quick_api) as client:
        accepted = generate(client, photo, steps="20", **sdxl)
        assert accepted.status_code == 202, accepted.text
        assert _job_params(schema, accepted.json()["data"]["jobId"]) == {"num_inference_steps": 20}
        over = generate(client, photo, steps="21", **sdxl)
        assert over.status_code == 400
        assert over.json()["error"]["details"] == {"field": "steps"}
        no_steps = generate(client, photo, steps="20")  # real-esrgan takes no steps
        assert no_steps.status_code == 400
        assert no_steps.json()["error"]["details"] == {"field": "steps"}
        unknown = generate(client, photo, colour="red")
        assert unknown.status_code == 400
        assert unknown.json()["error"]["details"] == {"field": "colour"}
        scaled = generate(client, photo, scale="2", face_enhance="true")
        assert scaled.status_code == 202
        assert _job_params(schema, scaled.json()["data"]["jobId"]) == {
            "scale": 2,
            "face_enhance": True,
        }


def test_other_methods_are_405_with_allow_and_the_envelope(quick_api: str) -> None:
    cases = {
        "/api/ai-image/generate": "POST",
        "/api/ai-image/usage": "GET, HEAD",
        "/api/ai-image/jobs": "POST",
        "/api/ai-image/jobs/1/cancel": "POST",
    }
    for path, allow in cases.items():
        wrong = "GET" if "POST" in allow else "DELETE"
        response = httpx.request(wrong, f"{quick_api}{path}")
        assert response.status_code == 405, path
        assert set(response.headers["allow"].split(", ")) == set(allow.split(", ")), path
        body = response.json()
        assert body["success"] is False
        assert body["error"]["type"] == "method_not_allowed"


def test_generate_without_origin_or_csrf_token_is_403(quick_api: str, photo: bytes) -> None:
    bare = httpx.post(
        f"{quick_api}/api/ai-image/generate",
        data={"model": "nightmareai/real-esrgan"},
        files=[("image", ("eh_test.png", photo, "image/png"))],
    )
    assert bare.status_code == 403
    assert bare.json()["error"]["type"] == "csrf_failed"


def test_usage_gives_a_first_visitor_its_cookie_and_the_seed_shape(quick_api: str) -> None:
    response = httpx.get(f"{quick_api}/api/ai-image/usage")
    assert response.status_code == 200
    assert "guest_id" in response.cookies
    data = response.json()["data"]
    assert data["ownerType"] == "guest"
    assert {"used", "limit", "remaining", "resetAt"} <= set(data["usage"])
    assert data["usage"]["used"] == 0
    assert "limits" in data


def test_seed_job_routes_create_read_and_cancel_the_owners_job(
    quick_api: str, photo: bytes
) -> None:
    with visitor(quick_api) as client, visitor(quick_api) as stranger:
        created = client.post(
            "/api/ai-image/jobs",
            data={"model": "nightmareai/real-esrgan"},
            files=[("image", ("a.png", photo, "image/png"))],
        )
        assert created.status_code == 201, created.text
        job_id = created.json()["data"]["id"]
        assert client.get(f"/api/ai-image/jobs/{job_id}").json()["data"]["id"] == job_id
        assert stranger.get(f"/api/ai-image/jobs/{job_id}").status_code == 403
        assert stranger.post(f"/api/ai-image/jobs/{job_id}/cancel").status_code == 403
        canceled = client.post(f"/api/ai-image/jobs/{job_id}/cancel")
        assert canceled.status_code == 200
        assert canceled.json()["data"]["canceled"] == 1


def test_concurrent_generates_of_one_guest_stay_within_its_quota(
    pipeline_env: dict[str, str], photo: bytes
) -> None:
    env = {
        **pipeline_env, **HIGH_LIMITS,
        "IMAGEOPT_API_GENERATE_WAIT_SECONDS": "0.2",
        "IMAGEOPT_API_GUEST_DAILY_ITEMS": "3",
    }  # fmt: skip
    with run_api(settings_from(env)) as base, visitor(base) as client:
        cookies = dict(client.cookies)
        headers = dict(client.headers)

        def one(_: int) -> int:
            with httpx.Client(base_url=base, timeout=60, cookies=cookies, headers=headers) as c:
                return generate(c, photo).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = sorted(pool.map(one, range(8)))
        used = client.get("/api/ai-image/usage").json()["data"]["usage"]["used"]
    assert statuses == [202] * 3 + [429] * 5
    assert used == 3


def test_a_generation_that_fails_is_a_502_naming_its_code_and_job(
    pipeline_env: dict[str, str], photo: bytes, tmp_path: Path
) -> None:
    env = {**pipeline_env, **HIGH_LIMITS, "IMAGEOPT_API_GENERATE_WAIT_SECONDS": "60"}
    with run_stack(env, tmp_path / "logs", failure_rate=1.0) as base, visitor(base) as client:
        response = generate(client, photo)
        assert response.status_code == 502, response.text
        error = response.json()["error"]
        assert error["type"] == "generation_failed"
        assert error["details"]["errorCode"] == "prediction_failed"
        assert error["message"] == "the model failed on this image"
        job = client.get(f"/api/ai-image/jobs/{error['details']['jobId']}").json()["data"]
        assert job["items"][0]["status"] == "FAILED"
