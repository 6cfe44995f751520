"""The console's parameter form in a real headless Chromium against the real api (Postgres,
Redis, S3; no worker needed: the test reads the job the page created). The form is built from
``GET /api/models``' ``parameters``: the browser refuses a value outside the allowlist's
limits before any upload, and the server refuses it again when the page's limits are removed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.browser.test_console import CHROMIUM, LAUNCH_ARGS, PHOTOS
from tests.conftest import settings_from
from tests.support.api import run_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_parameter_form_follows_the_allowlist_in_the_browser_and_on_the_server(
    pipeline_env: dict[str, str], images_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    photo = tmp_path / Path(PHOTOS[0]).name
    shutil.copy(images_dir / PHOTOS[0], photo)
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run `make browser-deps`")
    with run_api(settings_from(pipeline_env)) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base)

            # Real-ESRGAN: scale 1..4 (default 4) and face_enhance (default off).
            page.select_option("#model", "nightmareai/real-esrgan")
            scale = page.locator("#param-scale")
            expect(scale).to_have_attribute("min", "1")
            expect(scale).to_have_attribute("max", "4")
            expect(scale).to_have_value("4")
            expect(page.locator("#param-face_enhance")).not_to_be_checked()
            expect(page.locator("label[for=param-scale]")).to_contain_text("scale (1\u20134)")

            # SDXL: steps at most 20 (the provider cap), and a prompt.
            page.select_option("#model", "stability-ai/sdxl")
            steps = page.locator("#param-num_inference_steps")
            expect(steps).to_have_attribute("max", "20")
            expect(steps).to_have_value("20")
            expect(page.locator("#prompt-row")).to_be_visible()
            page.set_input_files("#file-input", str(photo))
            page.fill("#prompt", "a brighter kitchen")
            steps.fill("25")
            page.click("#start")
            message = page.locator("#message")
            expect(message).to_contain_text("steps (1\u201320)")
            expect(steps).to_be_focused()
            expect(page.locator("#results")).to_be_hidden()  # nothing was sent

            # Without the page's limits the server still refuses the value.
            steps.evaluate("i => i.removeAttribute('max')")
            page.click("#start")
            expect(message).to_contain_text("must be between 1 and 20")
            expect(page.locator("#results")).to_be_hidden()

            # The prompt-edit model: aspect ratio from the allowlist's choices.
            page.select_option("#model", "google/nano-banana")
            ratio = page.locator("#param-aspect_ratio")
            expect(ratio.locator("option")).to_have_count(11)
            expect(ratio).to_have_value("1:1")

            # Accepted values reach the job as its params.
            page.select_option("#model", "nightmareai/real-esrgan")
            scale.fill("2")
            page.check("#param-face_enhance")
            page.click("#start")
            expect(page.locator("#items li.item")).to_have_count(1, timeout=20_000)
            job_id = page.evaluate(
                "async () => (await (await fetch('/api/jobs')).json()).data.jobs[0].id"
            )
            job = page.evaluate(f"async () => (await (await fetch('/api/jobs/{job_id}')).json())")
            assert job["data"]["params"] == {"scale": 2, "face_enhance": True}
            assert errors == []
        finally:
            browser.close()
