"""The console says which analysis check could not run, in English and German, in a real
headless Chromium against an ``imageopt api`` process without OpenCV (the ``faces`` extra
missing, as in a plain ``pip install``; the Docker image ships it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.browser.test_console import CHROMIUM, LAUNCH_ARGS
from tests.integration.test_analysis_deployed import PORTRAIT, api_without_opencv

pytestmark = [pytest.mark.integration, pytest.mark.slow]
__all__ = ["api_without_opencv"]  # the fixture, used below

EXPECTED = {
    "en": ("Not checked here: faces (no face detector installed).", "faces not checked"),
    "de": ("Hier nicht geprüft: Gesichter (kein Gesichtsdetektor installiert).",
           "faces not checked"),
}  # fmt: skip


@pytest.mark.parametrize("lang", sorted(EXPECTED))
def test_hint_names_the_check_that_could_not_run(
    api_without_opencv: str, images_dir: Path, tmp_path: Path, lang: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run `make browser-deps`")
    photo = tmp_path / Path(PORTRAIT).name
    shutil.copy(images_dir / PORTRAIT, photo)
    sentence, reason = EXPECTED[lang]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies(
                [{"name": "console_lang", "value": lang, "url": api_without_opencv}]
            )
            page = context.new_page()
            page.goto(api_without_opencv)
            page.set_input_files("#file-input", str(photo))
            hint = page.locator("#hint")
            expect(hint).to_contain_text(sentence, timeout=20_000)
            expect(hint).to_contain_text(reason)
            page.screenshot(path=str(tmp_path / f"console-analysis-{lang}.png"))
        finally:
            browser.close()
