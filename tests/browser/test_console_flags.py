"""The console follows the feature flags of ``GET /api/flags`` in a real headless Chromium:
the first-visit tour only while ``ONBOARDING_ENABLED`` is on, the size preview only with
``SIZE_PREVIEW_ENABLED`` and the analysis hint only with ``IMAGE_ANALYSIS_ENABLED``; and the
preview line shows what the api estimates for a model, its parameters and a preset.

Flags are switched with the go-live lever (a row in this test's own schema), as an operator
would, against the real api, Postgres, Redis and S3."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import golive
from pipeline.db import create_pool
from pipeline.repository import Repository
from tests.browser.test_console import CHROMIUM, LAUNCH_ARGS
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PHOTO = "store-food/coffee-cup.png"  # 600x400, opaque
FLAG_WAIT_MS = 5_000
"""The api re-reads the levers every second."""


@pytest.fixture
def repo(pipeline_env: dict[str, str]) -> Iterator[Repository]:
    pool = create_pool(DATABASE_URL, pipeline_env["IMAGEOPT_DB_SCHEMA"], max_size=2, name="t")
    yield Repository(pool)
    pool.close()


@pytest.fixture
def api(pipeline_env: dict[str, str]) -> Iterator[str]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run `make browser-deps`")
    with run_api(settings_from(pipeline_env)) as base:
        yield base


def _set(repo: Repository, **flags: bool) -> None:
    for name, enabled in flags.items():
        golive.set_flag(repo, name, enabled, reason="browser test", actor="test")


def _kb(size: int) -> str:
    """The console's size text (``kb`` in console.js, English number format)."""
    if size >= 1048576:
        return f"{size / 1048576:.1f}".removesuffix(".0") + " MB"
    return f"{max(1, round(size / 1024)):,} KB"


def _open(browser: Any, api: str, flags: dict[str, bool]) -> Any:
    """A fresh page (new storage: a first visit) once it has read flags equal to ``flags``."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    deadline = FLAG_WAIT_MS
    while True:
        with page.expect_response(lambda r: r.url.endswith("/api/flags")) as answer:
            page.goto(api)
        seen = answer.value.json()["data"]["flags"]
        if all(seen[name] == value for name, value in flags.items()) or deadline <= 0:
            assert all(seen[name] == value for name, value in flags.items()), seen
            return page
        page.wait_for_timeout(500)  # the api's view of the levers is up to a second old
        deadline -= 500


def test_tour_is_shown_only_while_onboarding_is_on(api: str, repo: Repository) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            _set(repo, ONBOARDING_ENABLED=False)
            off = _open(browser, api, {"ONBOARDING_ENABLED": False})
            expect(off.locator("#file-input")).to_be_attached()
            off.wait_for_timeout(300)  # the flags answer is in; give the script its turn
            expect(off.locator("#tour")).to_be_hidden()
            off.close()

            _set(repo, ONBOARDING_ENABLED=True)
            on = _open(browser, api, {"ONBOARDING_ENABLED": True})
            expect(on.locator("#tour")).to_be_visible()
            on.click("#tour-close")
            expect(on.locator("#tour")).to_be_hidden()
            on.reload()
            on.wait_for_timeout(300)
            expect(on.locator("#tour")).to_be_hidden()  # dismissed: not shown again
        finally:
            browser.close()


def test_preview_shows_the_estimate_for_a_model_and_preset_and_hides_when_off(
    api: str, repo: Repository, images_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    photo = tmp_path / Path(PHOTO).name
    shutil.copy(images_dir / PHOTO, photo)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            _set(repo, SIZE_PREVIEW_ENABLED=True, IMAGE_ANALYSIS_ENABLED=False)
            page = _open(browser, api, {"SIZE_PREVIEW_ENABLED": True})
            sent: list[str] = []
            page.on("request", lambda r: sent.append(r.url) if "/api/analyze" in r.url else None)
            page.select_option("#model", "nightmareai/real-esrgan")
            page.fill("#param-scale", "2")
            page.select_option("#preset", "web-2048")
            with page.expect_response(lambda r: r.url.endswith("/api/preview")) as answer:
                page.set_input_files("#file-input", str(photo))
            estimate = answer.value.json()["data"]  # the form's model and scale reached the api
            assert estimate["model"]["name"] == "nightmareai/real-esrgan"
            assert estimate["model"]["params"]["scale"] == 2
            assert (estimate["width"], estimate["height"]) == (1200, 800)
            line = page.locator("#chosen li .estimate").first
            expect(line).to_have_text(
                f"≈ {_kb(estimate['estimatedBytes'])} as web-2048 · 1200\u00d7800 JPEG after "
                f"nightmareai/real-esrgan (upload {_kb(photo.stat().st_size)})"
            )
            page.screenshot(path=str(tmp_path / "console-preview-model-preset.png"))
            assert sent == []  # analysis is off: no request
            expect(page.locator("#hint")).to_be_hidden()

            # A new scale is a new estimate: x4 without a preset is the model's own PNG.
            with page.expect_response(lambda r: r.url.endswith("/api/preview")) as no_preset:
                page.select_option("#preset", "")
            assert no_preset.value.json()["data"]["preset"] is None
            with page.expect_response(lambda r: r.url.endswith("/api/preview")) as bigger:
                page.fill("#param-scale", "4")
                page.locator("#param-scale").dispatch_event("change")
            raw = bigger.value.json()["data"]
            assert (raw["width"], raw["height"], raw["contentType"]) == (2400, 1600, "image/png")
            expect(line).to_contain_text(f"≈ {_kb(raw['estimatedBytes'])} as nightmareai/")
            page.close()

            _set(repo, SIZE_PREVIEW_ENABLED=False, IMAGE_ANALYSIS_ENABLED=True)
            off = _open(browser, api, {"SIZE_PREVIEW_ENABLED": False})
            calls: list[str] = []
            off.on("request", lambda r: calls.append(r.url) if "/api/" in r.url else None)
            off.select_option("#preset", "web-2048")
            off.set_input_files("#file-input", str(photo))
            expect(off.locator("#hint")).to_contain_text("coffee-cup.png", timeout=20_000)
            expect(off.locator("#chosen li .estimate")).to_have_text("")
            assert not [url for url in calls if url.endswith("/api/preview")], calls
        finally:
            browser.close()
            _set(repo, SIZE_PREVIEW_ENABLED=True, IMAGE_ANALYSIS_ENABLED=True)
