"""The console's job history in a real headless Chromium against the real api, Postgres,
Redis and S3. No worker runs: the test finishes items by SQL as a worker would (one DONE, one
FAILED) and runs retention, then reads the history as a guest sees it: newest first, paged,
thumbnails, a download, "expired" once retention deleted a result, cancel and retry.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from pipeline.db import create_pool
from pipeline.repository import Repository
from pipeline.storage import ObjectStorage
from scheduler.retention import Retention, RetentionConfig
from tests.browser.test_console import CHROMIUM, LAUNCH_ARGS, PHOTOS
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = 6
"""One more than the console's history page (5), so that "Show older jobs" appears."""


def _sql(schema: str, statement: str, args: tuple[object, ...]) -> None:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        conn.execute(statement, args)


def test_history_pages_shows_results_and_expiry_and_cancels_and_retries(
    pipeline_env: dict[str, str], images_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    photo = tmp_path / Path(PHOTOS[0]).name
    shutil.copy(images_dir / PHOTOS[0], photo)
    settings = settings_from(pipeline_env)  # the default request limits
    schema = settings.db_schema
    storage = ObjectStorage.from_settings(settings)
    pool = create_pool(DATABASE_URL, schema, max_size=1, name="test")
    with run_api(settings) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base)
            expect(page.locator("#history-empty")).to_be_visible()
            page.select_option("#model", "nightmareai/real-esrgan")
            page.set_input_files("#file-input", str(photo))
            history = page.locator("#history-list li.job")
            for count in range(1, JOBS + 1):  # a fresh schema: job ids 1, 2, ...
                page.click("#start")
                expect(history.first).to_have_attribute("data-id", str(count), timeout=20_000)
            expect(history).to_have_count(5)
            ids = history.evaluate_all("rows => rows.map(r => Number(r.dataset.id))")
            assert ids == [6, 5, 4, 3, 2]  # newest first, one page
            newest, failed, done = ids[0], ids[1], ids[2]

            key = f"results/console/x/{done}.png"
            storage.put_bytes(key, photo.read_bytes(), "image/png")
            _sql(schema, "UPDATE image_optimization_items SET status = 'DONE', output_key = %s, "
                 "output_width = 64, output_height = 64, output_bytes = 100, "
                 "output_content_type = 'image/png', completed_at = now() WHERE job_id = %s",
                 (key, done))  # fmt: skip
            _sql(schema, "UPDATE image_optimization_items SET status = 'FAILED', "
                 "error_code = 'source_unreachable', completed_at = now() WHERE job_id = %s",
                 (failed,))  # fmt: skip
            page.reload()
            expect(history).to_have_count(5)
            more = page.locator("#history-more")
            more.click()
            expect(history).to_have_count(JOBS)
            expect(more).to_be_hidden()

            done_entry = page.locator(f'#history-list li.job[data-id="{done}"]')
            expect(done_entry.locator(".badge.status").first).to_have_text("done")
            thumb = done_entry.locator(".thumb img")
            expect(thumb).to_have_js_property("complete", True)
            assert thumb.evaluate("i => i.naturalWidth") > 0
            expect(done_entry.locator("a.download")).to_be_visible()
            expect(done_entry.locator(".cancel")).to_be_hidden()
            expect(done_entry.locator(".expired-tag")).to_be_hidden()
            page.screenshot(path=str(tmp_path / "console-history.png"), full_page=True)

            failed_entry = page.locator(f'#history-list li.job[data-id="{failed}"]')
            expect(failed_entry.locator(".thumb .status")).to_have_text("failed")
            failed_entry.locator(".retry").click()
            expect(failed_entry.locator(".thumb .status")).to_have_text("pending")
            expect(failed_entry.locator(".retry")).to_be_hidden()
            expect(page.locator('#items li.item[data-status="PENDING"]')).to_have_count(1)

            newest_entry = page.locator(f'#history-list li.job[data-id="{newest}"]')
            newest_entry.locator(".cancel").click()
            expect(newest_entry.locator(".badge.status").first).to_have_text("canceled")
            expect(newest_entry.locator(".cancel")).to_be_hidden()

            retention = RetentionConfig(inputs_seconds=0, outputs_seconds=0)
            Retention(repo=Repository(pool), storage=storage, config=retention).run_once(
                datetime.now(UTC)
            )
            page.reload()
            expect(done_entry.locator(".expired-tag")).to_be_visible()
            expect(done_entry.locator("a.download")).to_be_hidden()
            assert errors == []
        finally:
            browser.close()
            pool.close()
            storage.close()
