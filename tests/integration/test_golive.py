"""Go-live levers against running processes (real Postgres, Redis, S3; the api under uvicorn,
the scheduler leader in a thread), each change made while they run and seen without a
restart: feature flags (operator API and the CLI as its own process), one model switched off
(refused at creation, its PENDING items not metered while the other model's are), guests off
and the staged rollout; every change in the audit log with who and why."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from api.operator_auth import create_operator_key
from pipeline.golive import bucket
from pipeline.presets import add_custom_preset
from pipeline.repository import Repository
from tests.integration.test_scheduling_loop import MODEL, run_scheduler, wait_status
from tests.support.api import store_client
from tests.support.cycles import wait_cycles
from tests.support.rows import connect, insert_job, item_statuses, wait_until

pytestmark = pytest.mark.integration

OTHER_MODEL = "tencentarc/gfpgan"
SEEN_WITHIN_SECONDS = 5.0
"""The api re-reads the levers every second; this only bounds a slow machine's wait."""


@pytest.fixture
def env(api_env: dict[str, str]) -> dict[str, str]:
    """The api's settings (tests/support/api_fixtures.py), for the CLI and the scheduler."""
    return api_env


@pytest.fixture
def operator(api: str, repo: Repository) -> Iterator[httpx.Client]:
    key, _ = create_operator_key(repo, "alice")
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def create(client: httpx.Client, model: str = MODEL) -> httpx.Response:
    body = {"model": model, "items": [{"sourceUrl": "https://img.example/a.jpg"}]}
    return client.post("/api/jobs", json=body)


def error_type(response: httpx.Response) -> str:
    return str(response.json()["error"]["type"])


def imageopt(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_flags_gate_their_routes_and_change_without_a_restart(
    api: str, repo: Repository, operator: httpx.Client, env: dict[str, str]
) -> None:
    shop = store_client(api, repo, "shop-1")
    image = {"image": ("a.png", png(), "image/png")}
    flags = httpx.get(f"{api}/api/flags")
    assert flags.status_code == 200
    assert flags.json()["data"]["flags"]["IMAGE_ANALYSIS_ENABLED"] is True
    assert "max-age" in flags.headers["cache-control"]
    assert shop.post("/api/analyze", files=image).status_code == 200

    changed = operator.post(
        "/ops/api/flags",
        json={"name": "IMAGE_ANALYSIS_ENABLED", "enabled": False, "reason": "bad answers"},
    )
    assert changed.status_code == 200, changed.text
    refused = shop.post("/api/analyze", files=image)
    assert refused.status_code == 404
    assert error_type(refused) == "feature_disabled"
    assert httpx.get(f"{api}/api/flags").json()["data"]["flags"]["IMAGE_ANALYSIS_ENABLED"] is False

    # The CLI, a process of its own, flips the size preview; the running api follows.
    form = {"preset": "web-2048"}
    assert shop.post("/api/preview", files=image, data=form).status_code == 200
    done = imageopt(env, "flags", "set", "SIZE_PREVIEW_ENABLED", "off", "--reason", "canary")
    assert done.returncode == 0, done.stderr
    wait_until(
        lambda: shop.post("/api/preview", files=image, data=form).status_code == 404 or None,
        SEEN_WITHIN_SECONDS, "the api did not see the flag turned off",
    )  # fmt: skip
    listed = imageopt(env, "flags", "list", "--json")
    assert '"SIZE_PREVIEW_ENABLED": false' in listed.stdout

    # Rollback is flipping back.
    operator.post("/ops/api/flags", json={"name": "IMAGE_ANALYSIS_ENABLED", "enabled": True})
    assert shop.post("/api/analyze", files=image).status_code == 200
    audit = repo.ops_audit_recent(10)
    flag_changes = [
        (a["action"], a["target"], a["reason"]) for a in audit if a["action"] == "set_flag"
    ]
    assert ("set_flag", "flag IMAGE_ANALYSIS_ENABLED", "bad answers") in flag_changes
    assert ("set_flag", "flag SIZE_PREVIEW_ENABLED", "canary") in flag_changes
    assert any(a["actor"].startswith("alice") for a in audit if a["action"] == "set_flag")


def test_a_custom_preset_is_refused_while_its_flag_is_off(
    api: str, repo: Repository, operator: httpx.Client
) -> None:
    shop = store_client(api, repo, "shop-1")
    add_custom_preset(repo, "shop-1", "thumbs", {"format": "webp", "width": 100})
    operator.post("/ops/api/flags", json={"name": "CUSTOM_PRESETS_ENABLED", "enabled": False})
    body = {"model": MODEL, "preset": "thumbs", "items": [{"sourceUrl": "https://img.example/a"}]}
    refused = shop.post("/api/jobs", json=body)
    assert refused.status_code == 404
    assert error_type(refused) == "feature_disabled"
    assert shop.post("/api/jobs", json={**body, "preset": "web-2048"}).status_code == 201
    operator.post("/ops/api/flags", json={"name": "CUSTOM_PRESETS_ENABLED", "enabled": True})
    assert shop.post("/api/jobs", json=body).status_code == 201


def test_a_disabled_model_is_refused_and_its_items_wait_while_the_other_model_runs(
    api: str, repo: Repository, operator: httpx.Client, db_schema: str, redis_namespace: str
) -> None:
    shop = store_client(api, repo, "shop-1")
    # A 5 s tick and a 60 s control re-read: only the lever's NOTIFY makes the leader look.
    with run_scheduler(db_schema, redis_namespace, tick=5.0, control_interval=60.0) as leader:
        first = insert_job(db_schema, "s", ["https://img.example/a.jpg"], model=MODEL)
        wait_status(db_schema, first.item_ids[0], "QUEUED", timeout=5)

        off = operator.post("/ops/api/models", json={"name": MODEL, "enabled": False,
                                                     "reason": "provider incident"})  # fmt: skip
        assert off.status_code == 200, off.text
        refused = create(shop)
        assert refused.status_code == 400
        assert error_type(refused) == "model_disabled"
        listed = httpx.get(f"{api}/api/models").json()["data"]["models"]
        models = {m["name"]: m["enabled"] for m in listed}
        assert models[MODEL] is False
        assert models[OTHER_MODEL] is True

        # Upstream still inserts: the disabled model's items wait ahead of the other's.
        held = insert_job(db_schema, "s", ["https://img.example/b.jpg"] * 3, model=MODEL)
        other = insert_job(db_schema, "s", ["https://img.example/c.jpg"], model=OTHER_MODEL)
        wait_status(db_schema, other.item_ids[0], "QUEUED", timeout=5)
        wait_cycles(leader, 2, db_schema)
        with connect(db_schema) as conn:
            statuses = item_statuses(conn, item_ids=held.item_ids)
        assert set(statuses.values()) == {"PENDING"}
        assert create(shop, OTHER_MODEL).status_code == 201

        on = operator.post("/ops/api/models", json={"name": MODEL, "enabled": True})
        assert on.status_code == 200
        for item_id in held.item_ids:
            wait_status(db_schema, item_id, "QUEUED", timeout=5)
        assert create(shop).status_code == 201
    actions = [(a["action"], a["target"]) for a in repo.ops_audit_recent(10)]
    assert ("disable_model", f"model {MODEL}") in actions
    assert ("enable_model", f"model {MODEL}") in actions


def test_the_staged_rollout_admits_a_stable_share_and_the_allowed_stores(
    api: str, repo: Repository, operator: httpx.Client, env: dict[str, str]
) -> None:
    names = [f"shop-{n}" for n in range(200)]
    inside = next(s for s in names if bucket(f"store:{s}") < 25)
    outside = next(s for s in names if bucket(f"store:{s}") >= 50)
    team = next(s for s in names if bucket(f"store:{s}") >= 50 and s != outside)
    clients = {s: store_client(api, repo, s) for s in (inside, outside, team)}

    body = {"percent": 5, "allowStores": [team], "reason": "canary"}
    canary = operator.post("/ops/api/rollout", json=body)
    assert canary.status_code == 200, canary.text
    refused = create(clients[outside])
    assert refused.status_code == 403
    assert error_type(refused) == "not_in_rollout"
    assert create(clients[team]).status_code == 201

    done = imageopt(env, "rollout", "set", "--percent", "25", "--allow-store", team,
                    "--reason", "metrics healthy")  # fmt: skip
    assert done.returncode == 0, done.stderr
    wait_until(
        lambda: create(clients[inside]).status_code == 201 or None,
        SEEN_WITHIN_SECONDS, "the api did not see the rollout at 25 %",
    )  # fmt: skip
    assert create(clients[outside]).status_code == 403
    operator.post("/ops/api/rollout", json={"percent": 100})
    assert create(clients[outside]).status_code == 201
    reasons = [a["reason"] for a in repo.ops_audit_recent(10) if a["action"] == "set_rollout"]
    assert "canary" in reasons
    assert "metrics healthy" in reasons


def test_auth_required_refuses_guests_and_not_stores(
    api: str, repo: Repository, operator: httpx.Client
) -> None:
    shop = store_client(api, repo, "shop-1")
    with httpx.Client(base_url=api, headers={"Origin": api}) as guest:
        guest.get("/")
        guest.headers["X-CSRF-Token"] = guest.cookies["csrf_token"]
        assert create(guest).status_code == 201
        on = operator.post("/ops/api/auth-required", json={"enabled": True, "reason": "phase 4"})
        assert on.status_code == 200
        refused = create(guest)
        assert refused.status_code == 401
        assert error_type(refused) == "auth_required"
        assert httpx.get(f"{api}/api/flags").json()["data"]["authRequired"] is True
        with httpx.Client(base_url=api, headers={"Origin": api}) as newcomer:
            newcomer.get("/")
            newcomer.headers["X-CSRF-Token"] = newcomer.cookies["csrf_token"]
            assert error_type(create(newcomer)) == "auth_required"
        assert create(shop).status_code == 201
        operator.post("/ops/api/auth-required", json={"enabled": False})
        assert create(guest).status_code == 201


def test_levers_are_for_operators_only_and_refuse_bad_values(
    api: str, repo: Repository, operator: httpx.Client
) -> None:
    shop = store_client(api, repo, "shop-1")
    flag = {"name": "ONBOARDING_ENABLED", "enabled": False}
    assert shop.post("/ops/api/flags", json=flag).status_code == 403
    assert httpx.get(f"{api}/ops/api/flags").status_code == 401
    for path, body in {
        "/ops/api/flags": {"name": "NO_SUCH_FLAG", "enabled": True},
        "/ops/api/models": {"name": "someone/else", "enabled": False},
        "/ops/api/rollout": {"percent": 101},
        "/ops/api/auth-required": {"enabled": "maybe"},
    }.items():
        response = operator.post(path, json=body)
        assert response.status_code == 400, (path, response.text)
    levers = operator.get("/ops/api/flags").json()["data"]
    assert levers["rollout"] == {"percent": 100, "allowStores": []}
    assert levers["models"][MODEL] is True


def test_the_cli_switches_a_model_and_guests_and_refuses_unknown_names(
    api: str, repo: Repository, env: dict[str, str]
) -> None:
    off = imageopt(env, "model", "disable", MODEL, "--reason", "provider incident")
    assert off.returncode == 0, off.stderr
    assert imageopt(env, "model", "disable", MODEL, "--reason", "again").stdout.startswith(
        f"model:{MODEL} already"
    )
    assert imageopt(env, "auth-required", "on", "--reason", "phase 4").returncode == 0
    listed = imageopt(env, "flags", "list")
    assert f"model  {MODEL}" in listed.stdout
    assert "disabled" in listed.stdout
    assert "auth-required on" in listed.stdout
    shop = store_client(api, repo, "shop-1")
    wait_until(
        lambda: create(shop).status_code == 400 or None,
        SEEN_WITHIN_SECONDS, "the api did not see the model switched off",
    )  # fmt: skip
    assert imageopt(env, "model", "disable", "someone/else", "--reason", "x").returncode == 2
    assert imageopt(env, "flags", "set", "NO_SUCH_FLAG", "on", "--reason", "x").returncode == 2
    assert imageopt(env, "rollout", "set", "--percent", "101", "--reason", "x").returncode == 2
    assert (
        imageopt(env, "flags", "set", "ONBOARDING_ENABLED", "off", "--reason", "").returncode == 2
    )
    who = {a["action"]: a["actor"] for a in repo.ops_audit_recent(10)}
    assert who["disable_model"] == who["set_auth_required"]  # the OS user and host
