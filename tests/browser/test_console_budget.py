"""The console at the DEFAULT per-caller limits, in a real headless Chromium against the whole
stack (emulator, scheduler, worker, api, Postgres, Redis, S3): a person loads the page, reloads
it, picks a photo, watches a job to the end over server-sent events and another one by polling
(a browser without ``EventSource``), makes a page and a half of history and pages it, then signs
in as a store; the api never answers 429.

The requests each step costs are read off the api's own counter
(``imageopt_api_requests_total``, every request the api answered, by route and method), so a
file the browser takes from its cache is not counted; they are written to ``budget.json`` in the
test's tmp folder and printed (docs/CONSOLE.md, "Requests and limits", quotes them).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from api.auth import create_api_key
from api.throttle import is_read
from devstack.emulator import run_emulator
from devstack.stack import running_stack
from emulator.config import EmulatorConfig
from pipeline.db import create_pool
from pipeline.repository import Repository
from tests.browser.test_console import CHROMIUM, LAUNCH_ARGS, PHOTOS, TOKEN
from tests.conftest import DATABASE_URL, settings_from
from tests.support.prometheus import samples

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORE = "shop-budget"
DONE_TIMEOUT_MS = 90_000
NO_EVENT_SOURCE = "Object.defineProperty(window, 'EventSource', {value: undefined});"
"""Makes the console fall back to polling (console.js ``watch``)."""


@pytest.fixture
def stack(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """Emulator (thread), scheduler, worker and ``imageopt api`` (processes) with every request
    limit at its default; yields the api URL. Predictions take 4-6 s: longer than one of the
    console's 2.5 s polls."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run `make browser-deps`")
    with run_emulator(EmulatorConfig(latency_min=4.0, latency_max=6.0, token=TOKEN)) as url:
        env = {
            **os.environ, **pipeline_env,
            "REPLICATE_BASE_URL": url, "REPLICATE_API_TOKEN": TOKEN,
            "IMAGEOPT_POLL_INITIAL_DELAY_SECONDS": "0.2", "IMAGEOPT_POLL_MAX_DELAY_SECONDS": "1.0",
            "IMAGEOPT_SCHEDULER_TICK_SECONDS": "0.2",
        }  # fmt: skip
        limits = [name for name in env if name.startswith("IMAGEOPT_API_") and "PER_" in name]
        assert limits == [], limits  # the defaults are under test
        with running_stack(env, tmp_path / "logs") as processes:
            processes.start_scheduler()
            processes.start_workers(threads=4)
            yield processes.start_api()


class Meter:
    """Requests the api answered on throttled paths (the page ``/`` and ``/api/*``), by step."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.steps: dict[str, dict[str, int]] = {}
        self._last = self._now()

    def _now(self) -> Counter[str]:
        text = httpx.get(f"{self.base}/metrics", timeout=20).text
        counts: Counter[str] = Counter()
        for sample in samples(text, "imageopt_api_requests_total"):
            route = sample.labels["route"]
            if route == "/" or route.startswith("/api/"):
                kind = "reads" if is_read(sample.labels["method"]) else "writes"
                counts[kind] += int(sample.value)
        return counts

    def step(self, name: str) -> dict[str, int]:
        """The reads and writes since the previous step, recorded as ``name``."""
        now = self._now()
        self.steps[name] = {kind: now[kind] - self._last[kind] for kind in ("reads", "writes")}
        self._last = now
        return self.steps[name]


def test_a_person_uses_the_console_at_the_default_limits_and_never_meets_a_429(
    stack: str, pipeline_env: dict[str, str], images_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import Page, expect, sync_playwright

    photo = tmp_path / Path(PHOTOS[0]).name
    shutil.copy(images_dir / PHOTOS[0], photo)
    settings = settings_from(pipeline_env)
    pool = create_pool(DATABASE_URL, settings.db_schema, max_size=1, name="test")
    try:
        key, _ = create_api_key(Repository(pool), STORE, "console")
    finally:
        pool.close()
    refused: list[str] = []
    answered: list[str] = []

    def seen(response: Any) -> None:
        path = urlsplit(response.url).path
        answered.append(path)
        if response.status == 429:
            refused.append(f"{response.request.method} {path}")

    def settle(page: Page) -> None:
        page.wait_for_load_state("networkidle")

    def load(page: Page, *, reload: bool = False) -> None:
        page.reload() if reload else page.goto(stack)
        expect(page.locator("#usage")).to_contain_text("images")
        settle(page)

    def watch_to_the_end(page: Page, job_id: int) -> None:
        page.click("#start")
        # The history lists the new job once the console rendered it: its status from then on.
        newest = page.locator("#history-list li.job").first
        expect(newest).to_have_attribute("data-id", str(job_id), timeout=20_000)
        expect(page.locator("#job-status")).to_have_text("done", timeout=DONE_TIMEOUT_MS)
        expect(page.locator('#items li.item[data-status="DONE"] img.after')).to_have_js_property(
            "complete", True
        )
        settle(page)

    meter = Meter(stack)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.on("response", seen)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            load(page)
            expect(page.locator("#history-empty")).to_be_visible()
            meter.step("page load, guest, first visit")
            for _ in range(3):
                load(page, reload=True)
            meter.step("3 reloads")

            page.select_option("#model", "nightmareai/real-esrgan")
            page.set_input_files("#file-input", str(photo))
            # The api's first analysis loads OpenCV's face detector: allow it some seconds.
            expect(page.locator("#hint")).to_contain_text("Suggested: ", timeout=20_000)
            settle(page)
            meter.step("pick a photo (analysis, size preview)")
            watch_to_the_end(page, 1)
            meter.step("start and watch a 1-image job (events)")

            context.add_init_script(NO_EVENT_SOURCE)
            load(page, reload=True)
            assert page.evaluate("window.EventSource") is None
            meter.step("reload (a browser without EventSource)")
            page.select_option("#model", "nightmareai/real-esrgan")
            page.set_input_files("#file-input", str(photo))
            expect(page.locator("#hint")).to_contain_text("Suggested: ", timeout=20_000)
            settle(page)
            meter.step("pick a photo again")
            watch_to_the_end(page, 2)
            meter.step("start and watch a 1-image job (polling)")

            history = page.locator("#history-list li.job")
            for count in range(3, 7):  # one history page (5) and one job more
                page.click("#start")
                expect(history.first).to_have_attribute("data-id", str(count), timeout=20_000)
            settle(page)
            meter.step("4 more jobs started")
            load(page, reload=True)
            expect(history).to_have_count(5)
            meter.step("page load, guest, full history page")
            page.click("#history-more")
            expect(history).to_have_count(6)
            settle(page)
            meter.step("show older jobs")

            page.click("#signin-open")
            page.fill("#signin-key", key)
            with page.expect_navigation():
                page.keyboard.press("Enter")
            expect(page.locator("#who")).to_have_text(f"Store {STORE}")
            expect(page.locator("#usage")).to_contain_text("images")
            settle(page)
            meter.step("sign in as a store (page load, store)")
            load(page, reload=True)
            meter.step("page load, store")
            assert errors == []
        finally:
            browser.close()
    report = json.dumps(meter.steps, indent=1)
    (tmp_path / "budget.json").write_text(report)
    print(report)
    assert refused == []
    assert "/api/jobs/1/events" in answered  # the first job was followed over the stream,
    assert "/api/jobs/2/events" not in answered  # the second by polling: more than one poll
    assert answered.count("/api/jobs/2") >= 2
    reads = sum(step["reads"] for step in meter.steps.values())
    writes = sum(step["writes"] for step in meter.steps.values())
    # Together over seed 002's 30 per minute: one shared limit would have refused some.
    assert reads + writes > settings.api_rate_per_minute
    assert writes < settings.api_rate_per_minute
    assert meter.steps["3 reloads"]["writes"] == 0
