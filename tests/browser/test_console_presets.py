"""The presets panel of the console in a real headless Chromium against the real stack: a store
(its API key on every request, as a store's own system in front of the console sends it)
creates a preset by keyboard, meets a browser-side and a server-side field error, edits it,
uses it for a job that the scheduler, worker and emulator finish at the preset's size, and
deletes it; in German, a guest sees the list and a note instead of the form, a store reads a
refusal in German, and the panel goes away when ``CUSTOM_PRESETS_ENABLED`` is turned off.
Screenshots (desktop and 390 px) land in the test's tmp folder, and in
``IMAGEOPT_CONSOLE_SCREENSHOTS`` when set (for docs/CONSOLE.md)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from api.auth import create_api_key
from pipeline.db import create_pool
from pipeline.golive import CUSTOM_PRESETS, set_flag
from pipeline.presets import add_custom_preset
from pipeline.repository import Repository
from tests.browser.test_console import CHROMIUM, DONE_TIMEOUT_MS, LAUNCH_ARGS, PHOTOS, stack
from tests.browser.test_console_access import LOW_CONTRAST, UNNAMED
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]
__all__ = ["stack"]  # the fixture, shared with test_console.py

FORM_ORDER = [
    "preset-name", "preset-format", "preset-fit", "preset-width", "preset-height",
    "preset-quality", "preset-background", "preset-description", "preset-upscale",
    "preset-lossless", "preset-save",
]  # fmt: skip


def _store_key(env: dict[str, str], store_id: str, preset: dict[str, Any] | None = None) -> str:
    pool = create_pool(DATABASE_URL, env["IMAGEOPT_DB_SCHEMA"], max_size=1, name="test")
    try:
        repo = Repository(pool)
        key, _ = create_api_key(repo, store_id, "console")
        if preset is not None:
            add_custom_preset(repo, store_id, "mine", preset)
        return key
    finally:
        pool.close()


def _keep(page: Any, tmp_path: Path, name: str) -> None:
    """Screenshots of the page and of the presets panel in the tmp folder; the panel's copied
    to ``IMAGEOPT_CONSOLE_SCREENSHOTS`` if set."""
    page.screenshot(path=str(tmp_path / f"page-{name}"), full_page=True)
    page.locator("#presets-panel").screenshot(path=str(tmp_path / name))
    target = os.environ.get("IMAGEOPT_CONSOLE_SCREENSHOTS")
    if target:
        shutil.copy(tmp_path / name, Path(target) / name)


def test_a_store_creates_edits_uses_and_deletes_a_preset_in_the_console(
    stack: str, pipeline_env: dict[str, str], images_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    photo = tmp_path / Path(PHOTOS[0]).name
    shutil.copy(images_dir / PHOTOS[0], photo)
    key = _store_key(pipeline_env, "shop-console")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 900},
                extra_http_headers={"Authorization": f"Bearer {key}"},
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda dialog: dialog.accept())
            page.goto(stack)
            panel = page.locator("#presets-panel")
            expect(panel.locator("#presets-title")).to_have_text("Your presets")
            expect(page.locator("#presets-empty")).to_be_visible()

            # By keyboard: Tab walks the form in reading order.
            page.bring_to_front()
            page.focus("#preset-name")
            order = ["preset-name"]
            for _ in FORM_ORDER[1:]:
                page.keyboard.press("Tab")
                order.append(page.evaluate("document.activeElement.id"))
            assert order == FORM_ORDER
            page.focus("#preset-name")
            page.keyboard.type("square-600")
            page.keyboard.press("Tab")  # format: jpeg -> webp
            page.keyboard.press("ArrowDown")
            page.keyboard.press("Tab")  # fit: contain -> cover
            page.keyboard.press("ArrowDown")
            page.keyboard.press("Tab")
            page.keyboard.type("8")  # below 16: the browser refuses it
            page.keyboard.press("Enter")
            message = page.locator("#preset-message")
            expect(message).to_contain_text("Width (16\u20138192 px):")
            expect(page.locator("#preset-width")).to_have_attribute("aria-invalid", "true")
            expect(page.locator("#preset-width")).to_be_focused()

            page.fill("#preset-width", "600")  # cover without a height: the server names it
            page.keyboard.press("Enter")
            expect(message).to_contain_text("Please check Height (16\u20138192 px): fit 'cover'")
            expect(page.locator("#preset-height")).to_be_focused()
            page.keyboard.type("600")
            page.fill("#preset-quality", "80")
            page.keyboard.press("Enter")
            expect(message).to_contain_text("Preset square-600 created")
            row = panel.locator('li.preset-row[data-name="square-600"]')
            expect(row.locator(".preset-summary")).to_have_text(
                "WEBP · 600\u00d7600 px · fill and crop · quality 80"
            )
            expect(page.locator('#preset option[value="square-600"]')).to_have_count(1)

            row.locator(".preset-edit").click()
            expect(page.locator("#preset-form-title")).to_have_text("Change preset square-600")
            expect(page.locator("#preset-name")).to_be_disabled()
            expect(page.locator("#preset-format")).to_have_value("webp")
            page.fill("#preset-quality", "70")
            page.click("#preset-save")
            expect(message).to_contain_text("Preset square-600 saved.")
            expect(row.locator(".preset-summary")).to_contain_text("quality 70")
            assert page.evaluate(UNNAMED) == []
            assert page.evaluate(LOW_CONTRAST) == []
            _keep(page, tmp_path, "console-presets-desktop.png")
            page.set_viewport_size({"width": 390, "height": 844})
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            _keep(page, tmp_path, "console-presets-phone.png")
            page.set_viewport_size({"width": 1280, "height": 900})

            # The new preset on a job: the result has the preset's size and format.
            page.select_option("#model", "nightmareai/real-esrgan")
            page.fill("#param-scale", "2")
            page.select_option("#preset", "square-600")
            page.set_input_files("#file-input", str(photo))
            page.click("#start")
            item = page.locator("#items li.item").first
            expect(item).to_have_attribute("data-status", "DONE", timeout=DONE_TIMEOUT_MS)
            expect(item.locator(".facts")).to_contain_text("600\u00d7600 px")
            expect(item.locator(".facts")).to_contain_text("image/webp")

            row.locator(".preset-delete").click()
            expect(message).to_contain_text("Preset square-600 deleted.")
            expect(row).to_have_count(0)
            expect(page.locator("#presets-empty")).to_be_visible()
            expect(page.locator('#preset option[value="square-600"]')).to_have_count(0)
            assert errors == []
        finally:
            browser.close()


def test_in_german_a_guest_sees_a_note_a_store_a_german_refusal_and_the_flag_hides_it(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    key = _store_key(pipeline_env, "shop-de", preset={"format": "png", "width": 300})
    with run_api(settings_from(pipeline_env)) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            guest = browser.new_page(locale="de-DE", viewport={"width": 390, "height": 844})
            guest.goto(base)
            expect(guest.locator("#presets-title")).to_have_text("Ihre Vorlagen")
            expect(guest.locator("#presets-guest")).to_contain_text(
                "Eigene Vorlagen gehören zu einem Shop"
            )
            expect(guest.locator("#preset-form")).to_have_count(0)

            store = browser.new_context(
                locale="de-DE", viewport={"width": 390, "height": 844},
                extra_http_headers={"Authorization": f"Bearer {key}"},
            ).new_page()  # fmt: skip
            store.goto(base)
            row = store.locator('li.preset-row[data-name="mine"]')
            expect(row.locator(".preset-summary")).to_have_text("PNG · 300 px breit · hineinpassen")
            expect(row.locator(".preset-edit")).to_have_attribute(
                "aria-label", "Vorlage mine bearbeiten"
            )
            store.fill("#preset-name", "mine")
            store.click("#preset-save")
            expect(store.locator("#preset-message")).to_have_text(
                "Eine Vorlage dieses Namens gibt es schon: anderen Namen wählen oder sie bearbeiten"
            )
            assert store.evaluate("document.documentElement.scrollWidth") <= 390
            _keep(store, tmp_path, "console-presets-de-phone.png")

            pool = create_pool(DATABASE_URL, pipeline_env["IMAGEOPT_DB_SCHEMA"], max_size=1)
            try:
                set_flag(Repository(pool), CUSTOM_PRESETS, False, reason="test", actor="test")
            finally:
                pool.close()
            deadline = time.monotonic() + 5.0  # the api re-reads the levers every second
            while store.locator("#presets-panel").count() and time.monotonic() < deadline:
                time.sleep(0.3)
                store.reload()
            expect(store.locator("#presets-panel")).to_have_count(0)
        finally:
            browser.close()
