"""The HTTP API against real Postgres, Redis and the S3 server, over sockets: each route's
success and error paths, ownership, CSRF, security headers, 405s, upload limits, rate limits."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml  # type: ignore[import-untyped]  # types-PyYAML is not a dev dependency
from PIL import Image

from pipeline.migrate import migrate
from pipeline.repository import Repository
from pipeline.storage import ObjectStorage
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import HIGH_LIMITS, run_api, store_client, track

pytestmark = pytest.mark.integration

PHOTO = "store-food/coffee-cup.png"
CSRF = "csrf-test-token-0123456789"


@pytest.fixture
def photo(images_dir: Path) -> bytes:
    return (images_dir / PHOTO).read_bytes()


def guest(base: str) -> httpx.Client:
    """A browser-like client: opens the console (guest and CSRF cookies), sends Origin and
    the CSRF header on every request."""
    client = track(httpx.Client(base_url=base, timeout=20, headers={"Origin": base}))
    response = client.get("/")
    assert response.status_code == 200
    client.headers["X-CSRF-Token"] = client.cookies["csrf_token"]
    return client


def upload(client: httpx.Client, *files: tuple[str, bytes], **fields: str) -> httpx.Response:
    data = {"model": "nightmareai/real-esrgan", **fields}
    return client.post(
        "/api/jobs", data=data, files=[("image", (n, b, "image/jpeg")) for n, b in files]
    )


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert body["success"] is False
    error = body["error"]
    assert isinstance(error, dict)
    return error


# --- operations endpoints ---------------------------------------------------------------------
def test_health_ready_and_stats_answer_with_their_shapes(api: str, repo: Repository) -> None:
    assert httpx.get(f"{api}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{api}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "postgres": "ok",
        "redis": "ok",
        "schema": "ok",
        "storage": "ok",
    }
    repo.insert_job(
        store_id="s1",
        model="nightmareai/real-esrgan",
        prompt=None,
        params={},
        preset=None,
        items=[{"source_url": "https://example.com/a.jpg"}] * 3,
    )
    stats = httpx.get(f"{api}/api/replicate-rate-limiter/stats").json()
    assert stats["status"] == "ok"
    assert stats["rateLimiter"]["queueLength"] == 3
    assert stats["rateLimiter"]["maxRPM"] == 450
    assert stats["rateLimiter"]["requestsInLastMinute"] == 0
    assert stats["readRateLimiter"]["maxRPM"] == 2400
    assert stats["health"] == {"queueHealthy": True, "rpmHealthy": True, "readRpmHealthy": True}
    assert stats["submissions"] == {"paused": False, "pausedSince": None, "pausedStores": 0}
    repo.set_control("submissions_paused", True, reason="incident 42", changed_by="ops@host")
    paused = httpx.get(f"{api}/api/replicate-rate-limiter/stats").json()["submissions"]
    assert paused["paused"] is True
    assert paused["pausedSince"] is not None
    assert set(paused) == {
        "paused",
        "pausedSince",
        "pausedStores",
    }  # no reason or author without credentials


def test_stats_count_grants_of_the_shared_limiter(api_env: dict[str, str]) -> None:
    from pipeline.wiring import limiters, redis_client

    secret = "r8_stats-secret-4242"
    settings = settings_from({**api_env, "REPLICATE_API_TOKEN": secret})
    client = redis_client(settings)
    create, _ = limiters(settings, client)
    for _ in range(3):
        create.acquire(timeout=5)
    with run_api(settings) as base:
        response = httpx.get(f"{base}/api/replicate-rate-limiter/stats")
    client.close()
    rate = response.json()["rateLimiter"]
    assert rate["requestsInLastMinute"] == 3
    assert rate["rpmUsagePercent"] == pytest.approx(3 / 450 * 100, abs=0.1)
    for value in (secret, settings.s3_secret_key.get_secret_value(), settings.database_url):
        assert value not in response.text


def test_readyz_is_503_naming_storage_when_the_bucket_is_unreachable(
    api_env: dict[str, str],
) -> None:
    settings = settings_from({**api_env, "S3_ENDPOINT": "127.0.0.1:1"})
    with run_api(settings) as base:
        ready = httpx.get(f"{base}/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["checks"]["postgres"] == "ok"
    assert ready.json()["checks"]["storage"] != "ok"


def test_readyz_is_503_while_the_schema_lacks_a_migration_of_this_release(
    api_env: dict[str, str],
) -> None:
    schema = api_env["IMAGEOPT_DB_SCHEMA"]
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        conn.execute("DROP TABLE image_optimization_controls")  # as before release 0005
        conn.execute("DELETE FROM imageopt_schema_migrations WHERE version = 5")
    with run_api(settings_from(api_env)) as base:
        before = httpx.get(f"{base}/readyz", timeout=10)
        migrate(DATABASE_URL, schema)  # 0005 again: what `imageopt migrate` would apply
        after = httpx.get(f"{base}/readyz", timeout=10)
    assert before.status_code == 503
    assert before.json()["checks"]["schema"] == "error: schema_not_migrated"
    assert before.json()["checks"]["postgres"] == "ok"
    assert after.status_code == 200


# --- browser safety ------------------------------------------------------------------------------
def test_console_assets_have_content_hashed_names_cached_for_a_year(api: str) -> None:
    page = httpx.get(f"{api}/").text
    names = re.findall(r'"/assets/(console\.[0-9a-f]{12}\.(?:js|css))"', page)
    assert sorted(n.rsplit(".", 1)[1] for n in names) == ["css", "js"]
    for name in names:
        response = httpx.get(f"{api}/assets/{name}")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        digest = hashlib.sha256(response.content).hexdigest()[:12]
        assert name.split(".")[1] == digest
    stale = httpx.get(f"{api}/assets/console.000000000000.js")
    assert stale.status_code == 404
    assert stale.json()["error"]["type"] == "not_found"


def test_console_language_from_accept_language_unless_the_switch_chose_one(api: str) -> None:
    def lang(headers: dict[str, str], cookies: dict[str, str] | None = None) -> str:
        page = httpx.get(f"{api}/", headers=headers, cookies=cookies).text
        found = re.search(r'<html lang="(\w+)">', page)
        assert found is not None
        return found.group(1)

    assert lang({"Accept-Language": "de-DE,de;q=0.9,en;q=0.8"}) == "de"
    assert lang({"Accept-Language": "fr-FR, en;q=0.5, de;q=0.7"}) == "de"
    assert lang({"Accept-Language": "fr, ja"}) == "en"
    assert lang({"Accept-Language": "de;q=x"}) == "en"
    assert lang({"Accept-Language": "de"}, {"console_lang": "en"}) == "en"
    assert lang({}, {"console_lang": "de"}) == "de"
    assert lang({}, {"console_lang": "xx"}) == "en"


def test_every_response_carries_the_security_headers(api: str) -> None:
    for path in ("/", "/api/models", "/healthz", "/api/jobs/1", "/static/console.js"):
        headers = httpx.get(f"{api}{path}").headers
        assert headers["x-frame-options"] == "DENY", path
        assert headers["x-content-type-options"] == "nosniff", path
        assert "max-age=" in headers["strict-transport-security"], path
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin", path
        assert "camera=()" in headers["permissions-policy"], path
        assert "script-src 'self'" in headers["content-security-policy"], path


def test_wrong_method_is_405_with_allow_in_the_envelope(api: str) -> None:
    response = httpx.delete(f"{api}/api/jobs/1", headers={"Origin": api})
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert error_of(response)["type"] == "method_not_allowed"
    response = httpx.put(f"{api}/api/jobs")
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]


def test_state_changing_requests_need_origin_and_the_csrf_token(api: str, photo: bytes) -> None:
    client = guest(api)
    files = [("image", ("a.png", photo, "image/png"))]
    cases = {
        "no origin": {"X-CSRF-Token": CSRF, "Origin": ""},
        "foreign origin": {"Origin": "https://evil.example"},
        "no token": {"X-CSRF-Token": ""},
        "wrong token": {"X-CSRF-Token": "x" * 24},
    }
    for name, headers in cases.items():
        merged = {"Origin": api, "X-CSRF-Token": client.cookies["csrf_token"], **headers}
        bare = track(httpx.Client(base_url=api, cookies=client.cookies,
                                  headers={k: v for k, v in merged.items() if v}))  # fmt: skip
        response = bare.post("/api/jobs", files=files, data={"model": "sczhou/codeformer"})
        assert response.status_code == 403, name
        assert error_of(response)["type"] == "csrf_failed", name
    assert upload(client, ("a.png", photo)).status_code == 201


# --- creating jobs --------------------------------------------------------------------------------
def test_upload_creates_an_owned_job_whose_input_only_its_owner_can_read(
    api: str, photo: bytes, repo: Repository
) -> None:
    owner = guest(api)
    created = upload(owner, ("coffee.png", photo), ("again.png", photo))
    assert created.status_code == 201
    job = created.json()["data"]
    assert created.headers["location"] == f"/api/jobs/{job['id']}"
    assert job["ownerType"] == "guest"
    assert [i["status"] for i in job["items"]] == ["PENDING", "PENDING"]
    assert [i["name"] for i in job["items"]] == ["coffee.png", "again.png"]
    item = job["items"][0]

    assert owner.get(f"/api/jobs/{job['id']}").json()["data"]["id"] == job["id"]
    image = owner.get(item["inputUrl"])
    assert image.status_code == 200
    assert image.headers["cache-control"].startswith("private")
    assert Image.open(io.BytesIO(image.content)).size == Image.open(io.BytesIO(photo)).size

    other = guest(api)
    for path in (f"/api/jobs/{job['id']}", item["inputUrl"], f"/api/items/{item['id']}/result"):
        assert other.get(path).status_code == 403, path
        assert httpx.get(f"{api}{path}").status_code == 401, path
    shop = store_client(api, repo, "console")  # even a key for the guests' store
    assert shop.get(f"/api/jobs/{job['id']}").status_code == 403
    assert shop.post(f"/api/jobs/{job['id']}/cancel").status_code == 403
    assert other.post(f"/api/jobs/{job['id']}/cancel").status_code == 403
    assert owner.get("/api/jobs").json()["data"]["jobs"][0]["id"] == job["id"]
    assert other.get("/api/jobs").json()["data"]["jobs"] == []


def test_job_history_pages_newest_first_with_items_and_only_the_callers_jobs(
    api: str, photo: bytes
) -> None:
    owner, other = guest(api), guest(api)
    ids = [upload(owner, (f"p{n}.png", photo)).json()["data"]["id"] for n in range(3)]
    upload(other, ("theirs.png", photo))
    first = owner.get("/api/jobs", params={"limit": 2}).json()["data"]
    assert [j["id"] for j in first["jobs"]] == [ids[2], ids[1]]
    assert first["nextBefore"] == ids[1]
    assert [i["name"] for i in first["jobs"][0]["items"]] == ["p2.png"]
    assert first["jobs"][0]["items"][0]["inputUrl"].startswith("/api/items/")
    second = owner.get("/api/jobs", params={"limit": 2, "before": ids[1]}).json()["data"]
    assert [j["id"] for j in second["jobs"]] == [ids[0]]
    assert second["nextBefore"] is None
    for query in ({"limit": "0"}, {"limit": "51"}, {"before": "-1"}, {"before": "x"}):
        response = owner.get("/api/jobs", params=query)
        assert response.status_code == 400, query
        assert error_of(response)["details"] == {"field": next(iter(query))}


def test_a_result_is_served_to_its_owner_only(
    api: str, photo: bytes, api_env: dict[str, str]
) -> None:
    owner = guest(api)
    item_id = upload(owner, ("coffee.png", photo)).json()["data"]["items"][0]["id"]
    storage = ObjectStorage.from_settings(settings_from(api_env))
    key = f"results/console/x/{item_id}.png"
    storage.put_bytes(key, photo, "image/png")
    with psycopg.connect(
        DATABASE_URL, options=f"-c search_path={api_env['IMAGEOPT_DB_SCHEMA']}"
    ) as conn:
        conn.execute(
            "UPDATE image_optimization_items SET status = 'DONE', output_key = %s, "
            "output_content_type = 'image/png' WHERE id = %s",
            (key, item_id),
        )
    download = owner.get(f"/api/items/{item_id}/result?download=1")
    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.content == photo
    assert guest(api).get(f"/api/items/{item_id}/result").status_code == 403
    assert httpx.get(f"{api}/api/items/{item_id}/result").status_code == 401
    storage.delete(key)
    assert owner.get(f"/api/items/{item_id}/result").status_code == 404


def test_uploads_that_are_not_images_or_too_big_are_refused_naming_the_field(
    pipeline_env: dict[str, str], photo: bytes
) -> None:
    env = {**pipeline_env, **HIGH_LIMITS, "IMAGEOPT_API_MAX_UPLOAD_BYTES": str(len(photo) - 1),
           "IMAGEOPT_API_MAX_FILES_PER_JOB": "2"}  # fmt: skip
    with run_api(settings_from(env)) as base:
        client = guest(base)
        text = upload(client, ("notes.jpg", b"this is not an image\n" * 20))
        assert text.status_code == 415
        assert error_of(text)["details"] == {
            "field": "image", "file": "notes.jpg",
            "allowed": ["image/jpeg", "image/png", "image/webp"],
        }  # fmt: skip
        assert "notes.jpg" in str(error_of(text)["message"])
        big = upload(client, ("big.png", photo))
        assert big.status_code == 413
        assert error_of(big)["details"]["field"] == "image"  # type: ignore[index]
        huge = client.post("/api/jobs", content=b"x" * (3 * len(photo) + 2 * 1024 * 1024),
                           headers={"Content-Type": "multipart/form-data; boundary=x"})  # fmt: skip
        assert huge.status_code == 413
        small = photo[:100]
        many = upload(client, *[(f"{i}.png", small) for i in range(3)])
        assert many.status_code == 400
        none = client.post("/api/jobs", data={"model": "nightmareai/real-esrgan"},
                           files=[("other", ("x.txt", b"x", "text/plain"))])  # fmt: skip
        assert none.status_code == 400
        assert error_of(none)["details"] == {"field": "image"}
        model = upload(client, ("a.png", small), model="acme/unknown")
        assert model.status_code == 400
        assert error_of(model)["details"]["field"] == "model"  # type: ignore[index]
        params = upload(client, ("a.png", small), params='{"scale": 99}')
        assert error_of(params)["details"] == {"field": "params"}
        preset = upload(client, ("a.png", small), preset="no-such-preset")
        assert error_of(preset)["details"] == {"field": "preset"}
        wrong_type = client.post("/api/jobs", content=b"a=b",
                                 headers={"Content-Type": "text/plain"})  # fmt: skip
        assert wrong_type.status_code == 415


def test_a_store_creates_jobs_from_source_urls_with_its_api_key(api: str, repo: Repository) -> None:
    shop = store_client(api, repo, "shop-1")
    body = {
        "model": "nightmareai/real-esrgan",
        "params": {"scale": 2},
        "preset": "web-2048",
        "items": [
            {"sourceUrl": "https://example.com/a.jpg"},
            {"sourceUrl": "https://example.com/b.jpg", "params": {"scale": 4}},
        ],
    }
    created = shop.post("/api/jobs", json=body)
    assert created.status_code == 201, created.text
    job = created.json()["data"]
    assert (job["storeId"], job["ownerType"], job["preset"]) == ("shop-1", "store", "web-2048")
    assert job["items"][0]["inputUrl"] is None  # not fetched yet, not an upload

    upstream = repo.insert_job(store_id="shop-1", model="tencentarc/gfpgan", prompt=None,
                               params={}, preset=None,
                               items=[{"source_url": "https://example.com/c.jpg"}])  # fmt: skip
    assert shop.get(f"/api/jobs/{upstream}").status_code == 200  # the store's own upstream job
    assert {j["id"] for j in shop.get("/api/jobs").json()["data"]["jobs"]} == {job["id"], upstream}
    assert store_client(api, repo, "shop-2").get(f"/api/jobs/{job['id']}").status_code == 403

    bad = {"items": [{"sourceUrl": "s3://bucket/results/other/1.png"}], "model": body["model"]}
    refused = shop.post("/api/jobs", json=bad)
    assert refused.status_code == 400
    assert error_of(refused)["details"] == {"field": "items[0].sourceUrl"}
    assert shop.post("/api/jobs", json={"items": []}).status_code == 400
    assert (
        shop.post(
            "/api/jobs", content=b"{nope", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    bad_key = httpx.get(f"{api}/api/jobs", headers={"Authorization": "Bearer iok_nope_nope"})
    assert bad_key.status_code == 401
    assert bad_key.headers["www-authenticate"] == "Bearer"


def test_cancel_and_retry_change_only_the_owners_job(
    api: str, repo: Repository, api_env: dict[str, str]
) -> None:
    shop = store_client(api, repo, "shop-1")
    items = [{"sourceUrl": f"https://example.com/{i}.jpg"} for i in range(3)]
    job_id = shop.post("/api/jobs", json={"model": "sczhou/codeformer", "items": items}).json()[
        "data"
    ]["id"]
    with psycopg.connect(
        DATABASE_URL, options=f"-c search_path={api_env['IMAGEOPT_DB_SCHEMA']}"
    ) as conn:
        conn.execute(
            "UPDATE image_optimization_items SET status = 'FAILED', error_code = 'x' "
            "WHERE id = (SELECT min(id) FROM image_optimization_items WHERE job_id = %s)",
            (job_id,),
        )
    retried = shop.post(f"/api/jobs/{job_id}/retry").json()["data"]
    assert retried["retried"] == 1
    assert [i["status"] for i in retried["job"]["items"]] == ["PENDING"] * 3
    canceled = shop.post(f"/api/jobs/{job_id}/cancel").json()["data"]
    assert canceled["canceled"] == 3
    assert canceled["job"]["status"] == "CANCELED"
    assert canceled["job"]["final"] is True
    assert shop.post("/api/jobs/999999/cancel").status_code == 404
    assert shop.get("/api/jobs/99999999999999999999999").status_code == 404


def test_job_events_stream_the_job_and_end_when_it_is_final(api: str, repo: Repository) -> None:
    shop = store_client(api, repo, "shop-1")
    job_id = shop.post("/api/jobs", json={"model": "sczhou/codeformer",
                                          "items": [{"sourceUrl": "https://example.com/a.jpg"}]}
                       ).json()["data"]["id"]  # fmt: skip
    shop.post(f"/api/jobs/{job_id}/cancel")
    with shop.stream("GET", f"/api/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    assert "event: job" in text
    assert '"status":"CANCELED"' in text
    assert text.rstrip().endswith("event: end\ndata: {}")


# --- limits ----------------------------------------------------------------------------------
def test_callers_over_their_request_rate_get_429_with_retry_after(
    pipeline_env: dict[str, str], photo: bytes
) -> None:
    env = {
        **pipeline_env,
        "IMAGEOPT_API_RATE_PER_MINUTE": "4",
        "IMAGEOPT_API_READ_RATE_PER_MINUTE": "3",
        "IMAGEOPT_API_CREATE_RATE_PER_MINUTE": "1",
    }
    with run_api(settings_from(env)) as base:
        client = guest(base)  # read 1
        created = upload(client, ("a.png", photo))  # write 1
        assert created.status_code == 201
        second = upload(client, ("a.png", photo))  # write 2, but the second creation this minute
        assert second.status_code == 429
        assert "job creation" in str(error_of(second)["message"])
        assert 1 <= int(second.headers["retry-after"]) <= 60
        assert client.get("/api/usage").status_code == 200  # read 2
        assert client.get("/api/usage").status_code == 200  # read 3
        limited = client.get("/api/usage")
        assert limited.status_code == 429
        assert error_of(limited)["type"] == "rate_limited"
        assert error_of(limited)["details"] == {
            "limit": 3,
            "retryAfter": limited.headers["retry-after"],
        }
        assert "reads" in str(error_of(limited)["message"])
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        cancel = f"/api/jobs/{created.json()['data']['id']}/cancel"
        assert client.post(cancel).status_code == 200  # write 3: reads and writes count apart
        assert client.post(cancel).status_code == 200  # write 4
        refused = client.post(cancel)
        assert refused.status_code == 429
        assert error_of(refused)["details"] == {
            "limit": 4,
            "retryAfter": refused.headers["retry-after"],
        }
        assert guest(base).get("/api/usage").status_code == 200  # another caller is not limited


def test_a_guest_over_the_daily_quota_gets_429_and_usage_shows_it(
    pipeline_env: dict[str, str], photo: bytes
) -> None:
    env = {**pipeline_env, **HIGH_LIMITS, "IMAGEOPT_API_GUEST_DAILY_ITEMS": "2"}
    with run_api(settings_from(env)) as base:
        client = guest(base)
        assert upload(client, ("a.png", photo)).status_code == 201
        over = upload(client, ("b.png", photo), ("c.png", photo))
        assert over.status_code == 429
        assert error_of(over)["type"] == "quota_exceeded"
        assert int(over.headers["retry-after"]) > 80_000  # the first item frees in ~24 h
        usage = client.get("/api/usage").json()["data"]["usage"]
        assert (usage["used"], usage["limit"], usage["remaining"]) == (1, 2, 1)


# --- size preview and analysis -----------------------------------------------------------------
def test_preview_estimates_a_presets_output_for_an_upload(
    api: str, photo: bytes, repo: Repository
) -> None:
    from pipeline.presets import BUILTIN_PRESETS, add_custom_preset, apply_preset

    client = guest(api)
    files = {"image": ("coffee.png", photo, "image/png")}
    response = client.post("/api/preview", files=files, data={"preset": "web-2048"})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    preview = response.json()["data"]
    real = apply_preset(photo, BUILTIN_PRESETS["web-2048"], max_pixels=50_000_000)
    assert (preview["width"], preview["height"]) == (real.width, real.height)
    assert preview["contentType"] == "image/jpeg"
    assert preview["inputBytes"] == len(photo)
    assert abs(preview["estimatedBytes"] - len(real.data)) / len(real.data) < 0.15
    assert preview["method"] in ("exact", "sampled")
    assert_documented(preview, "SizePreview")

    add_custom_preset(repo, "shop-1", "tiny-png",
                      {"format": "png", "width": 64, "height": 64, "fit": "cover"})  # fmt: skip
    shop = store_client(api, repo, "shop-1")
    custom = shop.post("/api/preview", files=files, data={"preset": "tiny-png"})
    assert custom.status_code == 200, custom.text
    assert (custom.json()["data"]["width"], custom.json()["data"]["contentType"]) == (
        64, "image/png"
    )  # fmt: skip
    assert client.post("/api/preview", files=files, data={"preset": "tiny-png"}).status_code == 400


def test_preview_of_a_model_and_preset_predicts_the_models_output_then_the_preset(
    api: str, photo: bytes
) -> None:
    client = guest(api)
    files = {"image": ("coffee.png", photo, "image/png")}
    with Image.open(io.BytesIO(photo)) as image:
        width, height = image.size  # 600x400: under every model's input limit
    raw = client.post("/api/preview", files=files, data={"model": "nightmareai/real-esrgan"})
    assert raw.status_code == 200, raw.text
    model_only = raw.json()["data"]
    assert model_only["preset"] is None
    assert (model_only["width"], model_only["height"]) == (4 * width, 4 * height)
    assert model_only["contentType"] == "image/png"
    assert model_only["model"]["params"] == {"scale": 4, "face_enhance": False}
    assert model_only["estimatedBytes"] > 4 * len(photo)
    assert_documented(model_only, "SizePreview")

    form = {"model": "nightmareai/real-esrgan", "params": '{"scale": 2}', "preset": "web-2048"}
    both = client.post("/api/preview", files=files, data=form).json()["data"]
    assert (both["width"], both["height"], both["contentType"]) == (1200, 800, "image/jpeg")
    assert (both["model"]["width"], both["model"]["height"]) == (1200, 800)
    assert both["estimatedBytes"] < model_only["estimatedBytes"]

    for fields, field in (
        ({"model": "acme/none"}, "model"),
        ({"model": "nightmareai/real-esrgan", "params": '{"scale": 9}'}, "params"),
        ({"model": "nightmareai/real-esrgan", "params": "[1]"}, "params"),
        ({"params": '{"scale": 2}', "preset": "web-2048"}, "model"),
        ({"model": "nightmareai/real-esrgan", "preset": "nope"}, "preset"),
    ):
        refused = client.post("/api/preview", files=files, data=fields)
        assert refused.status_code == 400, fields
        assert error_of(refused)["details"]["field"] == field, fields  # type: ignore[index]


def test_preview_refuses_bad_input_naming_the_field(api: str, photo: bytes) -> None:
    client = guest(api)
    image = {"image": ("coffee.png", photo, "image/png")}
    unknown = client.post("/api/preview", files=image, data={"preset": "no-such-preset"})
    assert unknown.status_code == 400
    assert error_of(unknown)["type"] == "validation_error"
    assert error_of(unknown)["details"] == {"field": "preset"}
    for bad in ("", "../etc", "x" * 64, "nul\x00"):
        refused = client.post("/api/preview", files=image, data={"preset": bad})
        assert refused.status_code == 400, bad
        assert error_of(refused)["details"] == {"field": "preset"}, bad
    notes = {"image": ("notes.jpg", b"not an image\n" * 20, "image/jpeg")}
    text = client.post("/api/preview", data={"preset": "web-2048"}, files=notes)
    assert text.status_code == 415
    assert error_of(text)["details"]["field"] == "image"  # type: ignore[index]
    missing = client.post("/api/preview", data={"preset": "web-2048"},
                          files={"other": ("x.txt", b"x", "text/plain")})  # fmt: skip
    assert missing.status_code == 400
    assert error_of(missing)["details"] == {"field": "image"}
    two = client.post("/api/preview", data={"preset": "web-2048"},
                      files=[("image", ("a.png", photo, "image/png"))] * 2)  # fmt: skip
    assert two.status_code == 400
    json_body = client.post("/api/preview", json={"preset": "web-2048"})
    assert json_body.status_code == 415
    anonymous = track(httpx.Client(base_url=api, cookies={"csrf_token": CSRF},
                                   headers={"Origin": api, "X-CSRF-Token": CSRF}))  # fmt: skip
    assert anonymous.post("/api/preview", files=image, data={"preset": "web-2048"}
                          ).status_code == 401  # fmt: skip
    no_csrf = track(httpx.Client(base_url=api, cookies=client.cookies, headers={"Origin": api}))
    forged = no_csrf.post("/api/preview", files=image, data={"preset": "web-2048"})
    assert forged.status_code == 403
    assert error_of(forged)["type"] == "csrf_failed"
    assert client.get("/api/preview").status_code == 405


def test_analyze_describes_an_upload_and_recommends_a_model_and_preset(
    api: str, images_dir: Path, repo: Repository
) -> None:
    shop = store_client(api, repo, "shop-1")
    data = (images_dir / "store-food/kiwi-cutout.webp").read_bytes()
    response = shop.post("/api/analyze", files={"image": ("kiwi.webp", data, "image/webp")})
    assert response.status_code == 200, response.text
    analysis = response.json()["data"]
    with Image.open(io.BytesIO(data)) as image:
        assert (analysis["width"], analysis["height"]) == image.size
    assert analysis["format"] == "WEBP"
    assert analysis["bytes"] == len(data)
    assert analysis["transparent"] is True
    recommendation = analysis["recommendation"]
    assert recommendation["preset"] == "webp-1600"
    assert recommendation["model"] in _model_names(shop)
    assert recommendation["presetReason"]
    assert recommendation["modelReason"]
    assert all("_" not in key for key in analysis)  # camelCase like the rest of the API
    assert_documented(analysis, "Analysis")

    text = shop.post("/api/analyze", files={"image": ("notes.png", b"text\n" * 50, "image/png")})
    assert text.status_code == 415
    assert error_of(text)["details"]["field"] == "image"  # type: ignore[index]
    bad_key = httpx.post(f"{api}/api/analyze", files={"image": ("k.webp", data, "image/webp")},
                         headers={"Authorization": "Bearer iok_nope_nope"})  # fmt: skip
    assert bad_key.status_code == 401


def assert_documented(data: dict[str, object], schema_name: str) -> None:
    """``data`` has every required key of the OpenAPI schema and no undocumented one."""
    spec = yaml.safe_load((Path(__file__).parents[2] / "api/openapi.yaml").read_text())
    schema = spec["components"]["schemas"][schema_name]
    assert set(schema["required"]) <= set(data), schema_name
    assert set(data) <= set(schema["properties"]), schema_name


def _model_names(client: httpx.Client) -> list[str]:
    return [m["name"] for m in client.get("/api/models").json()["data"]["models"]]


def test_preview_and_analyze_refuse_images_over_the_pixel_cap_and_count_against_the_rate(
    pipeline_env: dict[str, str], photo: bytes
) -> None:
    env = {**pipeline_env, "IMAGEOPT_MAX_INPUT_PIXELS": "10000",
           "IMAGEOPT_API_RATE_PER_MINUTE": "3"}  # fmt: skip
    image = {"image": ("coffee.png", photo, "image/png")}
    with run_api(settings_from(env)) as base:
        client = guest(base)  # a read: counted against the read budget, not this limit
        big = client.post("/api/analyze", files=image)  # 1
        assert big.status_code == 413
        assert error_of(big)["details"]["field"] == "image"  # type: ignore[index]
        assert client.post("/api/preview", files=image, data={"preset": "thumb-400"}
                           ).status_code == 413  # 2  # fmt: skip
        assert client.post("/api/preview", files=image, data={"preset": "x"}).status_code == 400
        limited = client.post("/api/analyze", files=image)  # 4
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1


def test_results_stream_in_chunks_with_their_length(
    api: str, photo: bytes, api_env: dict[str, str]
) -> None:
    owner = guest(api)
    item_id = upload(owner, ("coffee.png", photo)).json()["data"]["items"][0]["id"]
    storage = ObjectStorage.from_settings(settings_from(api_env))
    key = f"results/console/x/{item_id}-big.png"
    payload = photo * 3  # several 256 KiB chunks
    storage.put_bytes(key, payload, "image/png")
    with psycopg.connect(
        DATABASE_URL, options=f"-c search_path={api_env['IMAGEOPT_DB_SCHEMA']}"
    ) as conn:
        conn.execute(
            "UPDATE image_optimization_items SET status = 'DONE', output_key = %s WHERE id = %s",
            (key, item_id),
        )
    with owner.stream("GET", f"/api/items/{item_id}/result") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-length"] == str(len(payload))
        assert stream.headers["content-type"] == "image/png"
        assert stream.headers["x-content-type-options"] == "nosniff"
        received = b"".join(stream.iter_bytes())
    assert received == payload
    head = owner.head(f"/api/items/{item_id}/result")
    assert (head.status_code, head.headers["content-length"], head.content) == (
        200, str(len(payload)), b""
    )  # fmt: skip
    storage.delete(key)
