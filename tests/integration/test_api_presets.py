"""A store's custom presets through the API (real Postgres, Redis, S3; the api under uvicorn):
create, list, update, use in a job, delete; built-in names refused; bad specs a 400 naming
the field; guests refused; the flag gating the writes and ``imageopt preset-add``; the write
limit and the per-store cap each holding under concurrent requests; the metric by action."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from api.auth import create_api_key
from api.operator_auth import create_operator_key
from pipeline.repository import Repository
from tests.conftest import settings_from
from tests.integration.test_golive import SEEN_WITHIN_SECONDS, imageopt
from tests.support.api import run_api
from tests.support.rows import wait_until

pytestmark = pytest.mark.integration

MODEL = "nightmareai/real-esrgan"
LIMITS = {
    "IMAGEOPT_API_RATE_PER_MINUTE": "1000",
    "IMAGEOPT_API_CREATE_RATE_PER_MINUTE": "1000",
    "IMAGEOPT_API_PRESET_WRITES_PER_MINUTE": "1000",
}
SPEC = {"format": "webp", "width": 800, "quality": 70}


@pytest.fixture
def api_env(pipeline_env: dict[str, str]) -> dict[str, str]:
    """The shared ``api`` fixture (tests/support/api_fixtures.py) uses these."""
    return {**pipeline_env, **LIMITS}


def client_of(api: str, repo: Repository, store_id: str) -> httpx.Client:
    key, _ = create_api_key(repo, store_id, "test")
    return httpx.Client(base_url=api, timeout=30, headers={"Authorization": f"Bearer {key}"})


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def custom_names(client: httpx.Client) -> list[str]:
    presets = client.get("/api/presets").json()["data"]["presets"]
    return [p["name"] for p in presets if not p["builtin"]]


def preset_counts(api: str) -> dict[str, float]:
    """``imageopt_custom_presets_total`` by action, from the api's ``/metrics``."""
    text = httpx.get(f"{api}/metrics").text
    found = re.findall(r'^imageopt_custom_presets_total\{action="(\w+)"\} (\S+)$', text, re.M)
    return {action: float(value) for action, value in found}


def test_a_store_creates_lists_updates_uses_and_deletes_its_presets(
    api: str, repo: Repository
) -> None:
    before = preset_counts(api)
    with client_of(api, repo, "shop-1") as shop, client_of(api, repo, "shop-2") as other:
        created = shop.post("/api/presets", json={"name": "hero", "spec": SPEC})
        assert created.status_code == 201, created.text
        assert created.json()["data"]["preset"]["spec"] == {**SPEC, "fit": "contain"}
        assert custom_names(shop) == ["hero"]
        assert shop.head("/api/presets").status_code == 200  # a HEAD reads, never writes
        assert custom_names(other) == []  # a store sees only its own

        spec = {"format": "jpeg", "width": 400, "height": 400, "fit": "pad",
                "background": "#FFEEDD"}  # fmt: skip
        updated = shop.put("/api/presets/hero", json={"spec": spec})
        assert updated.status_code == 200, updated.text
        assert updated.json()["data"]["preset"]["spec"]["background"] == "#ffeedd"
        assert repo.get_preset("shop-1", "hero")["spec"]["format"] == "jpeg"  # type: ignore[index]

        job = {"model": MODEL, "preset": "hero", "items": [{"sourceUrl": "https://img.example/a"}]}
        assert shop.post("/api/jobs", json=job).status_code == 201
        assert other.post("/api/jobs", json=job).status_code == 400  # not shop-2's preset

        assert other.delete("/api/presets/hero").status_code == 404  # nor can shop-2 delete it
        deleted = shop.delete("/api/presets/hero")
        assert deleted.status_code == 200
        assert deleted.json()["data"] == {"deleted": "hero"}
        assert custom_names(shop) == []
        assert shop.delete("/api/presets/hero").status_code == 404
        missing = shop.put("/api/presets/hero", json={"spec": SPEC})
        assert missing.status_code == 404
        assert error_of(missing)["type"] == "not_found"
    after = preset_counts(api)
    assert {a: after[a] - before.get(a, 0.0) for a in after} == {
        "create": 1.0, "update": 1.0, "delete": 1.0,
    }  # fmt: skip


def test_built_in_and_taken_names_are_a_409(api: str, repo: Repository) -> None:
    with client_of(api, repo, "shop-1") as shop:
        for response in (
            shop.post("/api/presets", json={"name": "web-2048", "spec": SPEC}),
            shop.put("/api/presets/web-2048", json={"spec": SPEC}),
            shop.delete("/api/presets/thumb-400"),
        ):
            assert response.status_code == 409, response.text
            assert error_of(response)["type"] == "preset_builtin"
        assert shop.post("/api/presets", json={"name": "mine", "spec": SPEC}).status_code == 201
        again = shop.post("/api/presets", json={"name": "mine", "spec": {"format": "png"}})
        assert again.status_code == 409
        assert error_of(again)["type"] == "preset_exists"
        assert repo.get_preset("shop-1", "mine")["spec"]["format"] == "webp"  # type: ignore[index]


BAD_SPECS: list[tuple[dict[str, Any], str]] = [
    ({"name": "Bad Name", "spec": SPEC}, "name"),
    ({"spec": SPEC}, "name"),
    ({"name": "ok"}, "spec"),
    ({"name": "ok", "spec": ["webp"]}, "spec"),
    ({"name": "ok", "spec": {"format": "gif"}}, "spec.format"),
    ({"name": "ok", "spec": {"width": 800}}, "spec.format"),
    ({"name": "ok", "spec": {"format": "webp", "width": 8}}, "spec.width"),
    ({"name": "ok", "spec": {"format": "webp", "height": 9000}}, "spec.height"),
    ({"name": "ok", "spec": {"format": "webp", "width": "800"}}, "spec.width"),
    ({"name": "ok", "spec": {"format": "jpeg", "quality": 101}}, "spec.quality"),
    ({"name": "ok", "spec": {"format": "jpeg", "background": "red"}}, "spec.background"),
    ({"name": "ok", "spec": {"format": "jpeg", "fit": "stretch"}}, "spec.fit"),
    ({"name": "ok", "spec": {"format": "jpeg", "fit": "cover", "width": 100}}, "spec.height"),
    ({"name": "ok", "spec": {"format": "jpeg", "lossless": True}}, "spec.lossless"),
    ({"name": "ok", "spec": {"format": "jpeg", "upscale": "yes"}}, "spec.upscale"),
    ({"name": "ok", "spec": {"format": "jpeg", "colour": "#ffffff"}}, "spec.colour"),
    ({"name": "ok", "spec": {"format": "jpeg", "description": "x" * 201}}, "spec.description"),
]


def test_each_bad_field_is_a_400_naming_it(api: str, repo: Repository) -> None:
    with client_of(api, repo, "shop-1") as shop:
        for body, field in BAD_SPECS:
            response = shop.post("/api/presets", json=body)
            assert response.status_code == 400, (body, response.text)
            error = error_of(response)
            assert (error["type"], error["details"]["field"]) == ("validation_error", field), body
            if "spec" in body and field.startswith("spec"):
                put = shop.put("/api/presets/ok", json={"spec": body["spec"]})
                assert error_of(put)["details"]["field"] == field, body
        not_json = shop.post(
            "/api/presets", content=b"[1]", headers={"Content-Type": "application/json"}
        )
        assert error_of(not_json)["details"]["field"] == "body"
        assert custom_names(shop) == []


def test_a_guest_session_may_list_but_not_write(api: str) -> None:
    with httpx.Client(base_url=api, timeout=30) as guest:
        assert guest.get("/").status_code == 200  # guest_id and csrf_token cookies
        csrf = {"X-CSRF-Token": guest.cookies["csrf_token"], "Origin": api}
        assert guest.get("/api/presets").status_code == 200
        for response in (
            guest.post("/api/presets", json={"name": "mine", "spec": SPEC}, headers=csrf),
            guest.put("/api/presets/mine", json={"spec": SPEC}, headers=csrf),
            guest.delete("/api/presets/mine", headers=csrf),
        ):
            assert response.status_code == 403, response.text
            assert error_of(response)["type"] == "store_required"


def test_the_flag_gates_the_writes_and_the_cli(
    api: str, repo: Repository, api_env: dict[str, str]
) -> None:
    key, _ = create_operator_key(repo, "alice")
    with (
        client_of(api, repo, "shop-1") as shop,
        httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}) as operator,
    ):
        assert shop.post("/api/presets", json={"name": "a", "spec": SPEC}).status_code == 201
        off = {"name": "CUSTOM_PRESETS_ENABLED", "enabled": False, "reason": "rollback"}
        assert operator.post("/ops/api/flags", json=off).status_code == 200
        for response in (
            shop.post("/api/presets", json={"name": "b", "spec": SPEC}),
            shop.put("/api/presets/a", json={"spec": SPEC}),
            shop.delete("/api/presets/a"),
        ):
            assert response.status_code == 404, response.text
            assert error_of(response) == {
                "type": "feature_disabled", "message": "this feature is not enabled",
                "details": {"flag": "CUSTOM_PRESETS_ENABLED"},
            }  # fmt: skip
        assert custom_names(shop) == ["a"]  # listing is no write

        spec = '{"format": "png"}'
        add = ("preset-add", "--store", "shop-1", "--name", "c", "--spec", spec)
        refused = imageopt(api_env, *add)
        assert refused.returncode == 2
        assert "custom presets are disabled (CUSTOM_PRESETS_ENABLED is off)" in refused.stderr
        assert repo.get_preset("shop-1", "c") is None

        operator.post("/ops/api/flags", json={**off, "enabled": True})
        wait_until(
            lambda: shop.delete("/api/presets/a").status_code == 200 or None,
            SEEN_WITHIN_SECONDS, "the api did not see the flag turned on",
        )  # fmt: skip
        added = imageopt(api_env, *add)
        assert added.returncode == 0, added.stderr


def _parallel(count: int, send: Callable[[int], httpx.Response]) -> Counter[int]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return Counter(r.status_code for r in pool.map(send, range(count)))


def test_parallel_writes_over_the_write_limit_admit_exactly_the_limit(
    api_env: dict[str, str], repo: Repository
) -> None:
    limit, sent = 5, 20
    settings = settings_from({**api_env, "IMAGEOPT_API_PRESET_WRITES_PER_MINUTE": str(limit)})
    with run_api(settings) as api, client_of(api, repo, "shop-1") as shop:

        def send(i: int) -> httpx.Response:
            return shop.post("/api/presets", json={"name": f"p{i}", "spec": SPEC})

        statuses = _parallel(sent, send)
        assert statuses == {201: limit, 429: sent - limit}
        refused = shop.delete("/api/presets/p0")  # every write counts, deletes too
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert len(custom_names(shop)) == limit
        with client_of(api, repo, "shop-2") as other:  # per caller: another key is not held
            assert other.post("/api/presets", json={"name": "x", "spec": SPEC}).status_code == 201


def test_parallel_creations_never_exceed_the_store_cap(
    api_env: dict[str, str], repo: Repository
) -> None:
    cap, sent = 3, 12
    settings = settings_from({**api_env, "IMAGEOPT_API_MAX_PRESETS_PER_STORE": str(cap)})
    with run_api(settings) as api, client_of(api, repo, "shop-1") as shop:

        def send(i: int) -> httpx.Response:
            return shop.post("/api/presets", json={"name": f"p{i}", "spec": SPEC})

        assert _parallel(sent, send) == {201: cap, 409: sent - cap}
        full = shop.post("/api/presets", json={"name": "one-more", "spec": SPEC})
        assert error_of(full)["type"] == "preset_limit"
        taken = shop.post("/api/presets", json={"name": custom_names(shop)[0], "spec": SPEC})
        assert error_of(taken)["type"] == "preset_exists"  # the name, not the cap, is the news
        assert len(repo.list_presets("shop-1")) == cap
