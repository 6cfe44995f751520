"""The console in German, in a real headless Chromium against the whole stack (emulator,
scheduler, worker, api, Postgres, Redis, S3): chosen by ``Accept-Language``, then by the
remembered switch; upload → parameters → progress → before/after → download → history →
retry of a failed item; an API error as a German sentence; the onboarding note shown once.
Screenshots (desktop and 390 px, both languages) land in the test's tmp folder; docs/CONSOLE.md
shows copies of them."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import psycopg
import pytest
from PIL import Image

from tests.browser.test_console import CHROMIUM, DONE_TIMEOUT_MS, LAUNCH_ARGS, PHOTOS, stack
from tests.conftest import DATABASE_URL

pytestmark = [pytest.mark.integration, pytest.mark.slow]
__all__ = ["stack"]  # the fixture, shared with the English run


def test_german_console_from_upload_to_retry_and_the_remembered_switch(
    stack: str, pipeline_env: dict[str, str], images_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    photo = tmp_path / Path(PHOTOS[0]).name
    shutil.copy(images_dir / PHOTOS[0], photo)
    fake = tmp_path / "notiz.jpg"
    fake.write_text("kein Bild\n" * 20)
    schema = pipeline_env["IMAGEOPT_DB_SCHEMA"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(
                locale="de-DE", viewport={"width": 1280, "height": 900}, accept_downloads=True
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(stack)
            expect(page.locator("html")).to_have_attribute("lang", "de")
            expect(page.locator("#upload-title")).to_have_text("1. Bilder wählen")
            expect(page.locator("#usage")).to_contain_text("von 20 Bildern verwendet")
            tour = page.locator("#tour")
            expect(tour).to_be_visible()
            page.screenshot(path=str(tmp_path / "console-de-desktop-start.png"))
            page.click("#tour-close")
            expect(tour).to_be_hidden()
            expect(page.locator("#file-input")).to_be_focused()

            page.select_option("#model", "nightmareai/real-esrgan")
            expect(page.locator("label[for=param-scale]")).to_contain_text(
                "Vergrößerung (1\u20134)"
            )
            page.fill("#param-scale", "2")
            page.set_input_files("#file-input", str(photo))
            page.click("#start")
            item = page.locator("#items li.item")
            expect(item).to_have_count(1, timeout=20_000)
            expect(item.locator(".status")).to_have_text("fertig", timeout=DONE_TIMEOUT_MS)
            expect(page.locator("#job-status")).to_have_text("fertig")
            expect(page.locator("#message")).to_have_text("Alle 1 Bilder fertig")
            expect(item.locator(".tag-before")).to_have_text("vorher")
            item.locator(".slider").fill("30")
            clip = item.locator(".compare img.before").evaluate("i => i.style.clipPath")
            assert clip == "inset(0px 70% 0px 0px)"
            with page.expect_download() as info:
                item.locator("a.download").click()
            saved = tmp_path / "download.bin"
            info.value.save_as(saved)
            with Image.open(io.BytesIO(saved.read_bytes())) as result:
                assert result.width > 0
            expect(page.locator("#history-list li.job")).to_have_count(1)
            entry = page.locator("#history-list li.job").first
            expect(entry.locator(".badge.status").first).to_have_text("fertig")
            when = entry.locator(".when").inner_text()
            assert "." in when, when  # German dates: 6.12.2026, not 12/6/2026
            page.screenshot(path=str(tmp_path / "console-de-desktop.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(tmp_path / "console-de-phone.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 900})

            # The worker's verdict, as a failed prediction would leave it; retry from history.
            item_id = int(item.get_attribute("data-id") or 0)
            with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
                conn.execute(
                    "UPDATE image_optimization_items SET status = 'FAILED', "
                    "error_code = 'prediction_failed', output_key = NULL WHERE id = %s",
                    (item_id,),
                )
            page.reload()
            expect(tour).to_be_hidden()  # dismissed once, not shown again
            thumb = entry.locator(".thumb")
            expect(thumb.locator(".status")).to_have_text("fehlgeschlagen")
            entry.locator(".retry").click()
            expect(item.locator(".status")).to_have_text("fertig", timeout=DONE_TIMEOUT_MS)
            expect(thumb.locator(".status")).to_have_text("fertig")
            expect(entry.locator(".retry")).to_be_hidden()

            page.click("#reset")
            page.set_input_files("#file-input", str(fake))
            page.click("#start")
            expect(page.locator("#message")).to_have_text(
                "notiz.jpg: kein JPEG-, PNG- oder WebP-Bild"
            )

            # The switch wins over Accept-Language, and is remembered.
            page.select_option("#lang", "en")
            expect(page.locator("#upload-title")).to_have_text("1. Choose images")
            page.screenshot(path=str(tmp_path / "console-en-desktop.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})
            page.screenshot(path=str(tmp_path / "console-en-phone.png"), full_page=True)
            again = context.new_page()
            again.goto(stack)
            expect(again.locator("html")).to_have_attribute("lang", "en")
            expect(again.locator("#history-title")).to_have_text("3. History")
            assert errors == []
        finally:
            browser.close()
    print(f"screenshots in {tmp_path}")
