"""``scripts/smoke.sh`` (seed 001's production smoke tests) against a local stack: the api,
a scheduler, a worker group and the emulator, over sockets. It passes there, and fails (exit
1, naming the check) against an api whose generate cannot finish."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import settings_from
from tests.support.api import run_api
from tests.support.stack import run_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "smoke.sh"
PHOTO = "store-portraits/portrait-hopper-tiny-exif6.jpg"
LIMITS = {"IMAGEOPT_API_CREATE_RATE_PER_MINUTE": "100"}


def _smoke(base: str, image: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), base],
        env={"PATH": "/usr/bin:/bin", "SMOKE_IMAGE": str(image)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_seeds_smoke_tests_pass_against_a_local_stack(
    pipeline_env: dict[str, str], images_dir: Path, tmp_path: Path
) -> None:
    env = {**pipeline_env, **LIMITS}
    with run_stack(env, tmp_path / "logs") as base:
        result = _smoke(base, images_dir / PHOTO)
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("generate: HTTP 200", "generate: usage.used incremented",
                  "result: 200 with the owner's cookie",
                  "result: 403 without cookie", "CSRF negative: 403", "SDXL steps=20: HTTP 200",
                  "SDXL steps=21: 400", "header X-Content-Type-Options: nosniff"):  # fmt: skip
        assert f"PASS  {check}" in result.stdout, result.stdout
    assert "FAIL" not in result.stdout


def test_the_smoke_tests_fail_when_generate_cannot_finish(
    pipeline_env: dict[str, str], images_dir: Path
) -> None:
    env = {**pipeline_env, **LIMITS, "IMAGEOPT_API_GENERATE_WAIT_SECONDS": "0.3"}
    with run_api(settings_from(env)) as base:  # no workers: every generate answers 202
        result = _smoke(base, images_dir / PHOTO)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL  generate: HTTP 202" in result.stdout
    assert "PASS  CSRF negative: 403" in result.stdout
