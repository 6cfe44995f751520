"""The web console in a real headless Chromium (Debian's ``chromium``, driven by Playwright):
pick two real photos, read the analysis hint and the chosen preset's size preview, watch them
reach DONE through the whole pipeline (scheduler, worker, emulator, Postgres, Redis, S3), move
the before/after slider, download a result and decode it; then upload a text file named ``.jpg``
and read the error. Screenshots at desktop and phone width land in the test's tmp folder."""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from PIL import Image

from devstack.emulator import run_emulator
from devstack.stack import running_stack
from emulator.config import EmulatorConfig
from pipeline.db import create_pool
from pipeline.repository import Repository
from pipeline.storage import ObjectStorage
from scheduler.retention import Retention, RetentionConfig
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
PHOTOS = ["store-portraits/portrait-hopper-tiny-exif6.jpg", "store-food/kiwi-cutout.webp"]
TOKEN = "r8_browser-test-token-5c1d"
DONE_TIMEOUT_MS = 90_000
PREVIEW_TEXT = (
    r"≈ \d+(\.\d)? [KM]B as web-2048 · \d+\u00d7\d+ JPEG after nightmareai/real-esrgan \(upload "
)
"""The console's size preview line (between width and height: the multiplication sign)."""


@pytest.fixture
def stack(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """Emulator (thread), scheduler, worker and ``imageopt api`` (processes); yields the api URL."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run `make browser-deps`")
    with run_emulator(EmulatorConfig(latency_min=0.05, latency_max=0.3, token=TOKEN)) as url:
        env = {
            **os.environ, **pipeline_env,
            "REPLICATE_BASE_URL": url, "REPLICATE_API_TOKEN": TOKEN,
            "IMAGEOPT_POLL_INITIAL_DELAY_SECONDS": "0.2", "IMAGEOPT_POLL_MAX_DELAY_SECONDS": "1.0",
            "IMAGEOPT_SCHEDULER_TICK_SECONDS": "0.2",
        }  # fmt: skip
        with running_stack(env, tmp_path / "logs") as processes:
            processes.start_scheduler()
            processes.start_workers(threads=4)
            yield processes.start_api()


def test_console_enhances_two_photos_and_explains_a_bad_file(
    stack: str, images_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    files = []
    for name in PHOTOS:
        files.append(tmp_path / Path(name).name)
        shutil.copy(images_dir / name, files[-1])
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not an image\n" * 20)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(stack)
            expect(page.locator("#usage")).to_contain_text("of 20 images used")
            page.select_option("#model", "nightmareai/real-esrgan")
            page.set_input_files("#file-input", [str(f) for f in files])
            expect(page.locator("#chosen li")).to_have_count(2)
            estimates = page.locator("#chosen li .estimate")
            # No preset: the model's own file (Real-ESRGAN x4 writes a PNG) is what is stored.
            expect(estimates.first).to_contain_text(
                "as nightmareai/real-esrgan's PNG", timeout=15_000
            )
            hint = page.locator("#hint")
            # The api's first analysis loads OpenCV's face detector: allow it some seconds.
            expect(hint).to_contain_text("Suggested: ", timeout=20_000)
            expect(hint).to_contain_text("preset ")
            page.select_option("#preset", "web-2048")
            for index in range(2):
                expect(estimates.nth(index)).to_contain_text("as web-2048", timeout=15_000)
                text = estimates.nth(index).inner_text()
                assert re.match(PREVIEW_TEXT, text), text
            page.set_viewport_size({"width": 390, "height": 844})
            page.screenshot(path=str(tmp_path / "console-preview-phone.png"), full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.set_viewport_size({"width": 1280, "height": 900})
            page.click("#start")

            items = page.locator("#items li.item")
            # Upload + job creation (two photos into S3) can take seconds on a busy host.
            expect(items).to_have_count(2, timeout=20_000)
            expect(page.locator('#items li.item[data-status="DONE"]')).to_have_count(
                2, timeout=DONE_TIMEOUT_MS
            )
            expect(page.locator("#job-status")).to_have_text("done")
            first = items.first
            expect(first.locator(".compare img.after")).to_have_js_property("complete", True)
            assert first.locator(".compare img.after").evaluate("i => i.naturalWidth") > 0
            assert first.locator(".compare img.before").evaluate("i => i.naturalWidth") > 0

            slider = first.locator(".slider")
            slider.fill("20")
            clip = first.locator(".compare img.before").evaluate("i => i.style.clipPath")
            assert clip == "inset(0px 80% 0px 0px)"

            with page.expect_download() as info:
                first.locator("a.download").click()
            saved = tmp_path / "download.bin"
            info.value.save_as(saved)
            with Image.open(io.BytesIO(saved.read_bytes())) as result:
                result.load()
                assert result.width >= 128
            expect(page.locator("#usage")).to_contain_text("2 of 20 images used")
            page.screenshot(path=str(tmp_path / "console-desktop.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})
            page.screenshot(path=str(tmp_path / "console-phone.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 900})

            page.click("#reset")
            expect(page.locator("#results")).to_be_hidden()
            page.set_input_files("#file-input", str(fake))
            expect(hint).to_contain_text("notes.jpg: not a JPEG, PNG or WebP image")
            page.click("#start")
            message = page.locator("#message")
            expect(message).to_contain_text("notes.jpg: not a JPEG, PNG or WebP image")
            page.screenshot(path=str(tmp_path / "console-error.png"), full_page=True)
            unexpected = [e for e in errors if "415" not in e]
            assert unexpected == []
        finally:
            browser.close()
    print(f"screenshots in {tmp_path}")


def test_console_says_expired_once_retention_deleted_an_items_files(
    pipeline_env: dict[str, str], images_dir: Path, tmp_path: Path
) -> None:
    """Only the api runs (no worker): the test finishes one of two items by SQL, as a worker
    would, and runs retention; the page, still following the job, must say "expired"."""
    from playwright.sync_api import expect, sync_playwright

    photos = []
    for name in PHOTOS:
        photos.append(tmp_path / Path(name).name)
        shutil.copy(images_dir / name, photos[-1])
    settings = settings_from(pipeline_env)
    storage = ObjectStorage.from_settings(settings)
    pool = create_pool(DATABASE_URL, settings.db_schema, max_size=1, name="test")
    repo = Repository(pool)
    with run_api(settings) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base)
            page.select_option("#model", "nightmareai/real-esrgan")
            page.set_input_files("#file-input", [str(p) for p in photos])
            page.click("#start")
            items = page.locator("#items li.item")
            expect(items).to_have_count(2, timeout=20_000)
            item_id = int(items.first.get_attribute("data-id") or 0)
            key = f"results/console/x/{item_id}.png"
            storage.put_bytes(key, photos[0].read_bytes(), "image/png")
            with psycopg.connect(
                DATABASE_URL, options=f"-c search_path={settings.db_schema}"
            ) as conn:  # the second item stays PENDING, so the page keeps following the job
                conn.execute(
                    "UPDATE image_optimization_items SET status = 'DONE', output_key = %s, "
                    "output_width = 64, output_height = 64, output_bytes = 100, "
                    "output_content_type = 'image/png', completed_at = now() - interval '1 minute' "
                    "WHERE id = %s",
                    (key, item_id),
                )
            first = items.first
            retention = RetentionConfig(inputs_seconds=0, outputs_seconds=10**9)
            Retention(repo=repo, storage=storage, config=retention).run_once(datetime.now(UTC))
            expect(first.locator(".facts")).to_contain_text("original expired", timeout=10_000)
            expect(first.locator(".compare img.before")).to_be_hidden()
            expect(first.locator("a.download")).to_be_visible()

            retention = RetentionConfig(inputs_seconds=0, outputs_seconds=0)
            Retention(repo=repo, storage=storage, config=retention).run_once(datetime.now(UTC))
            expect(first.locator(".facts")).to_have_text(
                "expired: original and result deleted after the retention period", timeout=10_000
            )
            expect(first.locator(".compare")).to_be_hidden()
            expect(first.locator("a.download")).to_be_hidden()
            page.screenshot(path=str(tmp_path / "console-expired.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
            pool.close()
            storage.close()
