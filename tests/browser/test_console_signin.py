"""Signing in to the console with a store's API key, in a real headless Chromium against the real
api, Postgres, Redis and S3 (no worker: the store's job is one its upstream system inserted).
By keyboard, a wrong key is refused in words and the field marked; the right key turns the page
into the store's: the store in the header, its history, its presets panel (a preset is
created); at 390 px nothing overflows; signing out turns it back into the guest's. The form in
German. Screenshots land in the test's tmp folder, and in ``IMAGEOPT_CONSOLE_SCREENSHOTS`` when
set (for docs/CONSOLE.md)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from api.auth import create_api_key
from pipeline.db import create_pool
from pipeline.repository import Repository
from tests.browser.test_console import CHROMIUM, LAUNCH_ARGS
from tests.browser.test_console_access import LOW_CONTRAST, UNNAMED
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORE = "shop-signin"


def _keep(page: Any, tmp_path: Path, name: str, *, full_page: bool = False) -> None:
    """A screenshot from the top of the page in the tmp folder, copied to
    ``IMAGEOPT_CONSOLE_SCREENSHOTS`` if set."""
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(tmp_path / name), full_page=full_page)
    target = os.environ.get("IMAGEOPT_CONSOLE_SCREENSHOTS")
    if target:
        shutil.copy(tmp_path / name, Path(target) / name)


def test_a_person_signs_in_with_the_stores_key_uses_its_history_and_presets_and_signs_out(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    env = {**pipeline_env, "IMAGEOPT_API_STORE_DAILY_ITEMS": "500"}
    settings = settings_from(env)
    pool = create_pool(DATABASE_URL, settings.db_schema, max_size=1, name="test")
    try:
        repo = Repository(pool)
        key, _ = create_api_key(repo, STORE, "console")
        job_id = repo.insert_job(store_id=STORE, model="nightmareai/real-esrgan", prompt=None,
                                 params={}, preset=None,
                                 items=[{"source_url": "https://example.com/a.jpg"}])  # fmt: skip
    finally:
        pool.close()
    with run_api(settings) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base)
            expect(page.locator("#history-empty")).to_be_visible()  # a guest: no history yet
            expect(page.locator("#presets-guest")).to_be_visible()

            # By keyboard: the summary opens the form and puts the cursor in the key field.
            page.bring_to_front()
            page.focus("#signin-open")
            expect(page.locator("#signin-open")).to_have_text("Sign in with your store's API key")
            page.keyboard.press("Enter")
            key_field = page.locator("#signin-key")
            expect(key_field).to_be_focused()
            expect(key_field).to_have_attribute("type", "password")
            assert page.evaluate(UNNAMED) == []
            assert page.evaluate(LOW_CONTRAST) == []
            page.keyboard.press("Enter")  # empty: said in words, nothing sent
            expect(page.locator("#signin-message")).to_have_text("Paste your store's API key first")
            page.keyboard.type("iok_00000000_not-a-key")
            page.keyboard.press("Tab")
            expect(page.locator("#signin-submit")).to_be_focused()
            page.keyboard.press("Enter")
            expect(page.locator("#signin-message")).to_have_text(
                "This key does not open a store: check it and try again"
            )
            expect(key_field).to_have_attribute("aria-invalid", "true")
            expect(key_field).to_be_focused()
            page.set_viewport_size({"width": 390, "height": 844})
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            _keep(page, tmp_path, "console-signin-phone.png")
            page.set_viewport_size({"width": 1280, "height": 900})

            key_field.fill(key)
            with page.expect_navigation():
                page.keyboard.press("Enter")
            expect(page.locator("#who")).to_have_text(f"Store {STORE}")
            expect(page.locator("#signout")).to_be_visible()
            expect(page.locator("#signin")).to_have_count(0)
            session = [c for c in context.cookies() if c["name"] == "store_session"]
            assert len(session) == 1
            assert session[0]["httpOnly"] is True
            assert session[0]["sameSite"] == "Strict"
            assert key not in session[0]["value"]
            expect(page.locator(f'#history-list li.job[data-id="{job_id}"]')).to_be_visible()
            expect(page.locator("#usage")).to_contain_text("of 500")  # the store's quota

            page.fill("#preset-name", "signed-in")
            page.select_option("#preset-format", "png")
            page.fill("#preset-width", "640")
            page.click("#preset-save")
            expect(page.locator("#preset-message")).to_contain_text("Preset signed-in created")
            expect(page.locator('#preset option[value="signed-in"]')).to_have_count(1)
            assert page.evaluate(UNNAMED) == []
            assert page.evaluate(LOW_CONTRAST) == []
            _keep(page, tmp_path, "console-signed-in-desktop.png", full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            _keep(page, tmp_path, "console-signed-in-phone.png")

            with page.expect_navigation():
                page.click("#signout")
            expect(page.locator("#signin-open")).to_be_visible()
            expect(page.locator("#who")).to_have_count(0)
            expect(page.locator("#history-empty")).to_be_visible()
            expect(page.locator("#presets-guest")).to_be_visible()
            assert [c for c in context.cookies() if c["name"] == "store_session"] == []
            assert errors == []

            german = browser.new_page(locale="de-DE", viewport={"width": 390, "height": 844})
            german.goto(base)
            german.click("#signin-open")
            expect(german.locator("#signin-open")).to_have_text(
                "Mit dem API-Schlüssel Ihres Shops anmelden"
            )
            expect(german.locator('label[for="signin-key"]')).to_contain_text(
                "API-Schlüssel des Shops"
            )
            german.fill("#signin-key", "iok_00000000_not-a-key")
            german.click("#signin-submit")
            expect(german.locator("#signin-message")).to_have_text(
                "Dieser Schlüssel öffnet keinen Shop: bitte prüfen und erneut versuchen"
            )
        finally:
            browser.close()
