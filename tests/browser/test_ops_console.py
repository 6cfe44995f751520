"""The operator console (/ops) in a real headless Chromium against running processes
(scheduler, worker, api as processes; emulator in a thread; Postgres, Redis, S3): sign in with
an operator key, read a failed item's detailed message, retry it and watch it reach DONE; pause
one store and see its items stay PENDING while another store's finish; change a weight and see
the share of the next metering pass follow it. Screenshots land in the test's tmp folder
(``IMAGEOPT_OPS_SCREENSHOTS=DIR`` copies them there, for docs/OPERATIONS.md)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.auth import create_api_key
from api.operator_auth import create_operator_key
from devstack.emulator import run_emulator
from devstack.processes import ProcessGroup, free_port, wait_http
from emulator.config import EmulatorConfig
from pipeline.db import create_pool
from pipeline.repository import Repository
from pipeline.storage import ObjectStorage
from pipeline.uploads import new_batch, store_upload
from tests.browser.test_console import CHROMIUM, LAUNCH_ARGS
from tests.conftest import DATABASE_URL, settings_from

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "r8_ops-browser-test-6e2a"
PHOTO = "store-food/kiwi-cutout.webp"
DONE_TIMEOUT_MS = 90_000
IN_FLIGHT = 4
"""The stack's in-flight window (IMAGEOPT_MIN_IN_FLIGHT with a tiny budget): one metering pass
after a resume takes exactly this many items, in weighted round-robin order."""

OPS_ROUTES = {
    "/ops": "GET", "/ops/api/overview": "GET", "/ops/api/failed": "GET",
    "/ops/api/items/1/input": "GET", "/ops/api/items/1/result": "GET",
    "/ops/api/retry": "POST", "/ops/api/cancel": "POST", "/ops/api/submissions": "POST",
    "/ops/api/stores/shop-a": "POST",
}  # fmt: skip
FETCH_ALL = """async ([routes, key]) => {
  const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrf_token=")).slice(11);
  const codes = [];
  for (const [path, method] of routes) {
    const post = method === "POST";
    const headers = {"Content-Type": "application/json", "X-CSRF-Token": csrf};
    if (key) headers.Authorization = `Bearer ${key}`;
    const response = await fetch(path, {method, headers,
      body: post ? JSON.stringify({itemId: 1}) : undefined, redirect: "manual"});
    codes.push(response.status);
  }
  return codes;
}"""
"""Every ops route fetched from a page of the api's origin, with the page's cookies (and a key)."""


@pytest.fixture
def stack(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """Emulator (thread), scheduler, worker and ``imageopt api`` (processes); yields the api URL."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run `make browser-deps`")
    port = free_port()
    with run_emulator(EmulatorConfig(latency_min=0.05, latency_max=0.2, token=TOKEN)) as url:
        env = {
            **os.environ, **pipeline_env,
            "REPLICATE_BASE_URL": url, "REPLICATE_API_TOKEN": TOKEN,
            "IMAGEOPT_POLL_INITIAL_DELAY_SECONDS": "0.2", "IMAGEOPT_POLL_MAX_DELAY_SECONDS": "1.0",
            "IMAGEOPT_SCHEDULER_TICK_SECONDS": "0.2",
            "IMAGEOPT_MIN_IN_FLIGHT": str(IN_FLIGHT), "IMAGEOPT_IN_FLIGHT_BUDGET_SECONDS": "0.1",
        }  # fmt: skip
        group = ProcessGroup(env=env, log_dir=tmp_path / "logs")
        try:
            group.start("scheduler", "scheduler")
            group.start("worker", "worker", "--queues", "create,poll", "--threads", "4")
            group.start("api", "api", "--host", "127.0.0.1", "--port", str(port))
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz", timeout=30)
            yield base
        finally:
            group.stop_all()


class Rows:
    """Direct SQL on the test schema: what upstream inserts, and what the checks read."""

    def __init__(self, env: dict[str, str], photo: bytes) -> None:
        self.schema = env["IMAGEOPT_DB_SCHEMA"]
        self.storage = ObjectStorage.from_settings(settings_from(env))
        self.photo = photo
        self.batch = new_batch()
        self.index = 0

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(DATABASE_URL, options=f"-c search_path={self.schema}") as conn:
            cur = conn.execute(query, params)
            return list(cur.fetchall()) if cur.description else []

    def source(self, store: str) -> str:
        self.index += 1
        return store_upload(
            self.storage, store_id=store, batch=self.batch, index=self.index, name="kiwi.webp",
            data=self.photo, content_type="image/webp",
        )  # fmt: skip

    def add(self, store: str, count: int, *, failed: str | None = None) -> list[int]:
        job = self.sql(
            "INSERT INTO image_optimization_jobs (store_id, model) "
            "VALUES (%s, 'nightmareai/real-esrgan') RETURNING id",
            (store,),
        )[0][0]
        ids = []
        for _ in range(count):
            status, code = ("FAILED", "provider_timeout") if failed else ("PENDING", None)
            ids.append(self.sql(
                "INSERT INTO image_optimization_items (job_id, store_id, source_url, params, "
                "status, error_code, error_message, attempts, completed_at) VALUES "
                "(%s, %s, %s, '{\"scale\": 2}', %s, %s, %s, %s, "
                " CASE WHEN %s = 'FAILED' THEN now() END) RETURNING id",
                (job, store, self.source(store), status, code, failed, 5 if failed else 0, status),
            )[0][0])  # fmt: skip
        return ids

    def statuses(self, store: str) -> dict[str, int]:
        rows = self.sql(
            "SELECT status, count(*) FROM image_optimization_items WHERE store_id = %s "
            "GROUP BY status",
            (store,),
        )
        return {str(s): int(n) for s, n in rows}

    def first_pass(self, stores: tuple[str, ...]) -> list[str]:
        """The stores of the items queued by the first metering pass over ``stores``."""
        rows = self.sql(
            "SELECT store_id FROM image_optimization_items WHERE store_id = ANY(%s) AND "
            "queued_at = (SELECT min(queued_at) FROM image_optimization_items "
            "             WHERE store_id = ANY(%s)) ORDER BY store_id",
            (list(stores), list(stores)),
        )
        return [str(r[0]) for r in rows]


def test_operator_retries_a_failed_item_pauses_a_store_and_changes_a_weight(
    stack: str, pipeline_env: dict[str, str], images_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    rows = Rows(pipeline_env, (images_dir / PHOTO).read_bytes())
    pool = create_pool(DATABASE_URL, rows.schema, max_size=1, name="test-ops-browser")
    try:
        key, _ = create_operator_key(Repository(pool), "ops-alice")
        store_key, _ = create_api_key(Repository(pool), "shop-a")
    finally:
        pool.close()
    (failed_id,) = rows.add("shop-a", 1, failed="create timed out after 30 s (provider busy)")
    shots = tmp_path / "screenshots"
    shots.mkdir()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            # a console guest and a store's key: 403 on every ops route, read or lever
            guest = browser.new_page()
            guest.goto(stack)  # the console: a guest_id session and a csrf_token cookie
            codes = guest.evaluate(FETCH_ALL, [list(OPS_ROUTES.items()), None])
            assert codes == [403] * len(OPS_ROUTES), codes
            codes = guest.evaluate(FETCH_ALL, [list(OPS_ROUTES.items()), store_key])
            assert codes == [403] * len(OPS_ROUTES), codes
            guest.close()

            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda dialog: dialog.accept())
            page.goto(f"{stack}/ops")
            expect(page).to_have_url(f"{stack}/ops/login")
            page.fill("#key", "iok_00000000_not-a-key")
            page.click("#sign-in")
            expect(page.locator("#login-message")).to_have_text("invalid operator key")
            page.screenshot(path=str(shots / "ops-login.png"))
            page.fill("#key", key)
            page.click("#sign-in")
            expect(page).to_have_url(f"{stack}/ops")
            expect(page.locator("#operator")).to_have_text("ops-alice")

            # a failed item with its detailed message; retry it and watch it reach DONE
            failed_row = page.locator(f'#failed tr[data-item="{failed_id}"]')
            expect(failed_row).to_contain_text("provider_timeout")
            expect(failed_row).to_contain_text("create timed out after 30 s (provider busy)")
            expect(page.locator("#leader")).to_contain_text("cycle", timeout=15_000)
            expect(page.locator('#processes tr[data-kind="worker"]')).to_have_count(1)
            page.screenshot(path=str(shots / "ops-failed.png"), full_page=True)
            page.fill("#reason", "provider incident INC-7 over")
            failed_row.locator("button.retry").click()
            expect(page.locator("#message")).to_have_text("1 item(s) retried")
            expect(page.locator('#statuses dd[data-key="DONE"]')).to_have_text(
                "1", timeout=DONE_TIMEOUT_MS
            )
            assert rows.statuses("shop-a") == {"DONE": 1}

            # pause shop-b: its items stay PENDING while shop-c's finish
            page.fill("#store-id", "shop-b")
            page.select_option("#store-paused", "true")
            page.click("#store-apply")
            expect(page.locator('#stores tr[data-store="shop-b"]')).to_have_class("paused")
            rows.add("shop-b", 3)
            rows.add("shop-c", 3)
            expect(page.locator('#stores tr[data-store="shop-c"] td').nth(1)).to_have_text(
                "0", timeout=DONE_TIMEOUT_MS
            )
            expect(page.locator('#stores tr[data-store="shop-c"] td').nth(2)).to_have_text(
                "0", timeout=DONE_TIMEOUT_MS
            )
            expect(page.locator('#stores tr[data-store="shop-b"] td').nth(1)).to_have_text("3")
            assert rows.statuses("shop-b") == {"PENDING": 3}
            assert rows.statuses("shop-c") == {"DONE": 3}
            page.screenshot(path=str(shots / "ops-store-paused.png"), full_page=True)
            page.locator('#stores tr[data-store="shop-b"] button.toggle').click()
            expect(page.locator('#stores tr[data-store="shop-b"]')).not_to_have_class("paused")
            expect(page.locator('#stores tr[data-store="shop-b"] td').nth(2)).to_have_text(
                "0", timeout=DONE_TIMEOUT_MS
            )
            expect(page.locator('#stores tr[data-store="shop-b"] td').nth(1)).to_have_text("0")

            # weights: with all submissions paused, give shop-d weight 3; on resume the first
            # pass (the whole in-flight window) takes 3 of shop-d's items for 1 of shop-e's
            page.click("#pause-all")
            expect(page.locator("#submissions")).to_contain_text("PAUSED")
            rows.add("shop-d", 6)
            rows.add("shop-e", 6)
            page.fill("#store-id", "shop-d")
            page.fill("#store-weight", "3")
            page.select_option("#store-paused", "")
            page.click("#store-apply")
            expect(page.locator('#stores tr[data-store="shop-d"] td').nth(7)).to_have_text("3")
            page.click("#resume-all")
            expect(page.locator("#submissions")).to_have_text("running")
            expect(page.locator('#stores tr[data-store="shop-d"] td').nth(1)).to_have_text(
                "0", timeout=DONE_TIMEOUT_MS
            )
            assert rows.first_pass(("shop-d", "shop-e")) == ["shop-d"] * 3 + ["shop-e"]
            expect(page.locator("#audit li")).to_have_count(7)  # sign-in and six levers
            audit = page.locator("#audit").inner_text()
            assert "ops-alice (operator key" in audit
            assert "retry item" in audit
            assert "provider incident INC-7 over" in audit
            expect(page.locator("#message")).to_have_text("submissions resumed")
            page.screenshot(path=str(shots / "ops-overview.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
    target = os.environ.get("IMAGEOPT_OPS_SCREENSHOTS")
    if target:
        shutil.copytree(shots, target, dirs_exist_ok=True)
