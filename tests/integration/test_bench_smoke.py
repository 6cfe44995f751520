"""Every benchmark under ``bench/`` runs at a tiny size, so that none can rot unseen.

Each test runs ``python -m bench.X`` with tiny arguments as a subprocess, as a person would,
against the real Postgres, Redis, S3 server and emulator, and checks that it exited 0 and
printed its figures (not what they are: that is the benchmark's job on a quiet host,
docs/BENCHMARKS.md). The benchmarks make their run's own schema or database, Redis namespace
and bucket and remove them afterwards (``bench/_harness.py``); the tests give them this
session's S3 server and this test's run directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATABASE_URL, REDIS_URL

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_SECONDS = 300


def _bench(
    s3_settings: dict[str, str], tmp_path: Path, module: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bench.MODULE ARGS`` from the repository; fail the test unless it exits 0."""
    env = {
        **os.environ,
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "S3_ENDPOINT": s3_settings["S3_ENDPOINT"],
        "S3_ACCESS_KEY": s3_settings["S3_ACCESS_KEY"],
        "S3_SECRET_KEY": s3_settings["S3_SECRET_KEY"],
        "IMAGEOPT_RUN_DIR": str(tmp_path / "run"),
    }
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def test_bench_scheduling(s3_settings: dict[str, str], tmp_path: Path) -> None:
    out = _bench(
        s3_settings, tmp_path, "bench_scheduling", "--variants", "fair", "--idle-samples", "2",
        "--late-samples", "1", "--scenario-seconds", "2", "--ticks", "3",
        "--tick-scale", "2000,500,20",
    ).stdout  # fmt: skip
    assert "fair: in-flight limit" in out
    assert "idle insert -> submitted: p50" in out
    assert "polling backoff 1 s x1.5" in out
    assert "3 passes: p50" in out


def test_scheduling_data(s3_settings: dict[str, str], tmp_path: Path) -> None:
    out = _bench(
        s3_settings, tmp_path, "scheduling_data", "--finished", "200", "--pending", "50",
        "--stores", "5", "--explain",
    ).stdout  # fmt: skip
    assert "built bench_" in out
    assert "Execution Time" in out


def test_bench_e2e_capacity(s3_settings: dict[str, str], tmp_path: Path) -> None:
    out = _bench(
        s3_settings, tmp_path, "bench_e2e", "capacity", "--items", "20", "--stores", "2",
        "--threads", "2", "--noop-messages", "200", "--timeout", "120",
    ).stdout  # fmt: skip
    assert "items: 20 (" in out
    assert "transactions:" in out
    assert "| **total** |" in out


def test_bench_requests(s3_settings: dict[str, str], tmp_path: Path) -> None:
    out = _bench(s3_settings, tmp_path, "bench_requests", "--requests", "5", "--threads", "2")
    assert "| operation | client ms |" in out.stdout


def test_bench_ratelimit(s3_settings: dict[str, str], tmp_path: Path) -> None:
    out = _bench(
        s3_settings, tmp_path, "bench_ratelimit", "--rpm", "120", "--window", "2",
        "--seconds", "4", "--warmup", "1", "--processes", "1", "--kinds", "gcra", "window",
        "--redis-url", REDIS_URL, "--plot", str(tmp_path / "grants.png"),
    ).stdout  # fmt: skip
    assert "| gcra" in out
    assert "| window" in out
    assert (tmp_path / "grants.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_preview(s3_settings: dict[str, str], tmp_path: Path, images_dir: Path) -> None:
    corpus = tmp_path / "images"
    corpus.mkdir()
    for name in ("store-food/coffee-cup.png", "store-portraits/portrait-hopper-tiny-exif6.jpg"):
        shutil.copy(images_dir / name, corpus / Path(name).name)
    out = _bench(
        s3_settings, tmp_path, "bench_preview", str(corpus),
        "--combos", "real-esrgan:scale=2:thumb-400", "--timeout", "120",
    ).stdout  # fmt: skip
    assert out.startswith(f"2 images under {corpus}")
    assert "web-2048" in out
    assert "pipeline: 2 images x 1 combinations" in out
    # both items DONE through the pipeline, the predicted size and type the stored ones
    assert "| real-esrgan:scale=2:thumb-400 | 2/2 | 2/2 | 2/2 |" in out


def test_bench_faults(s3_settings: dict[str, str], tmp_path: Path) -> None:
    out = _bench(
        s3_settings, tmp_path, "bench_faults", "--repeats", "1", "-k", "bad_upstream_rows"
    ).stdout
    assert "| scenario | runs | items |" in out
    assert "| 6. bad upstream rows (14 kinds) | 1 |" in out
