"""The main job end to end: real photos and bad inputs through scheduler and worker processes,
the emulator, Redis, Postgres and the S3 server, all over sockets."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from devstack.emulator import run_emulator, serve_directory
from devstack.processes import free_port
from devstack.stack import running_stack
from emulator.config import EmulatorConfig
from pipeline.storage import ObjectStorage
from tests.conftest import settings_from
from tests.support.rows import FINAL, connect, insert_job, wait_for_status, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "r8_e2e-test-token-7f3a9c"
GOOD = [
    "store-portraits/portrait-hopper-tiny-exif6.jpg",
    "store-food/kiwi-cutout.webp",
    "store-food/coffee-cup.png",
    "store-portraits/portrait-cameraman-gray.png",
]


@pytest.fixture
def sources(tmp_path: Path, images_dir: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server with good photos and bad files (a text file named .jpg, a truncated
    JPEG, a zero-byte file)."""
    for name in GOOD:
        shutil.copy(images_dir / name, tmp_path / Path(name).name)
    (tmp_path / "notes.jpg").write_text("this is not an image\n" * 20)
    full = (images_dir / "store-fashion/beanie-green.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    with serve_directory(tmp_path) as base:
        yield base, tmp_path


@pytest.fixture
def emulator_url() -> Iterator[str]:
    with run_emulator(EmulatorConfig(latency_min=0.05, latency_max=0.3, token=TOKEN)) as url:
        yield url


def _final_rows(schema: str, job_id: int, timeout: float) -> list[tuple[object, ...]]:
    """Every item of the job once all are final, with their results."""
    wait_for_status(schema, job_ids=[job_id], timeout=timeout)
    with connect(schema) as conn:
        return conn.execute(
            "SELECT source_url, status, error_code, output_key, output_width, output_height, "
            "output_bytes, output_content_type FROM image_optimization_items "
            "WHERE job_id = %s ORDER BY id",
            (job_id,),
        ).fetchall()


def _final_job(schema: str, job_id: int, timeout: float) -> tuple[object, ...]:
    """The job's status and counters once the scheduler has caught up with its items."""
    with connect(schema) as conn:

        def job() -> tuple[object, ...] | None:
            row = conn.execute(
                "SELECT status, total_items, done_items, failed_items "
                "FROM image_optimization_jobs WHERE id = %s",
                (job_id,),
            ).fetchone()
            assert row is not None
            return tuple(row) if row[0] in FINAL else None

        return wait_until(job, timeout, f"job {job_id} not final", interval=0.2)


def test_real_photos_become_upscaled_results_and_bad_inputs_fail_with_distinct_codes(
    pipeline_env: dict[str, str], sources: tuple[str, Path], emulator_url: str, tmp_path: Path
) -> None:
    base, folder = sources
    env = {
        **os.environ,
        **pipeline_env,
        "REPLICATE_BASE_URL": emulator_url,
        "REPLICATE_API_TOKEN": TOKEN,
        "IMAGEOPT_MAX_ATTEMPTS": "2",
        "IMAGEOPT_BACKOFF_BASE_SECONDS": "0.2",
        "IMAGEOPT_POLL_INITIAL_DELAY_SECONDS": "0.2",
        "IMAGEOPT_POLL_MAX_DELAY_SECONDS": "1.0",
        "IMAGEOPT_SCHEDULER_TICK_SECONDS": "0.2",
        "IMAGEOPT_FETCH_TIMEOUT_SECONDS": "3",
    }
    closed_port = free_port()
    urls = [f"{base}/{Path(name).name}" for name in GOOD] + [
        f"http://127.0.0.1:{closed_port}/gone.jpg",
        f"{base}/notes.jpg",
        f"{base}/truncated.jpg",
        f"{base}/empty.jpg",
    ]
    schema = pipeline_env["IMAGEOPT_DB_SCHEMA"]
    job_id = insert_job(schema, "store-e2e", urls, params={"scale": 4}).job_id
    with running_stack(env, tmp_path / "logs") as stack:
        stack.start_scheduler()
        stack.start_workers(processes=1, threads=4)
        rows = _final_rows(schema, job_id, timeout=120)
        job = _final_job(schema, job_id, timeout=15)

    by_url = {r[0]: r for r in rows}
    settings = settings_from(env)
    storage = ObjectStorage.from_settings(settings)
    for name in GOOD:
        url, status, code, key, width, height, size, ctype = by_url[f"{base}/{Path(name).name}"]
        assert status == "DONE", (name, code)
        assert key == f"results/store-e2e/{job_id}/{key.rsplit('/', 1)[1]}"
        data = storage.get_bytes(str(key), max_bytes=200_000_000)
        assert len(data) == size
        with Image.open(io.BytesIO(data)) as result:
            result.load()
            assert (result.width, result.height) == (width, height)
            assert Image.MIME[result.format] == ctype
        with Image.open(folder / Path(name).name) as source:
            upright = ImageOps.exif_transpose(source)
            assert (width, height) == (upright.width * 4, upright.height * 4), name
    codes = {
        "gone.jpg": "source_unreachable",
        "notes.jpg": "not_an_image",
        "truncated.jpg": "image_truncated",
        "empty.jpg": "empty_source",
    }
    for url, row in by_url.items():
        name = url.rsplit("/", 1)[1]
        if name in codes:
            assert (row[1], row[2]) == ("FAILED", codes[name]), url
    for log in (tmp_path / "logs").iterdir():
        assert TOKEN not in log.read_text(errors="replace"), f"token leaked into {log.name}"
    assert job == ("DONE", 8, 4, 4)
