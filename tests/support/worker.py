"""A worker's services against a real emulator, and QUEUED rows to feed them (integration
tests that call the creation and polling services directly, without dramatiq processes)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from dramatiq.brokers.stub import StubBroker
from PIL import Image

from devstack.emulator import run_emulator
from emulator.config import EmulatorConfig
from pipeline.taskqueue import TaskQueue
from tests.conftest import DATABASE_URL, settings_from
from workers.services import WorkerServices, worker_services

MODEL = "nightmareai/real-esrgan"


@contextmanager
def services_with_emulator(
    env: dict[str, str], broker: StubBroker, emulator: EmulatorConfig
) -> Iterator[tuple[WorkerServices, str]]:
    """A worker's services (``pool_size`` 2) talking to an emulator started with ``emulator``;
    yields them and the emulator's API base URL."""
    with run_emulator(emulator) as url:
        settings = settings_from(
            {**env, "REPLICATE_BASE_URL": url, "REPLICATE_API_TOKEN": emulator.token}
        )
        built = worker_services(settings, TaskQueue(broker), pool_size=2)
        try:
            yield built, url
        finally:
            built.close()


def queued_items(schema: str, source: str, n: int, model: str = MODEL) -> list[int]:
    """Insert one job of ``n`` QUEUED items of ``store-a`` reading ``source``; their ids."""
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        job = conn.execute(
            "INSERT INTO image_optimization_jobs (store_id, model, params) "
            "VALUES ('store-a', %s, '{\"scale\": 1}') RETURNING id",
            (model,),
        ).fetchone()
        assert job is not None
        rows = conn.execute(
            "INSERT INTO image_optimization_items (job_id, store_id, source_url, status) "
            "SELECT %s, 'store-a', %s, 'QUEUED' FROM generate_series(1, %s) "
            "RETURNING id",
            (job[0], source, n),
        ).fetchall()
    return [int(r[0]) for r in rows]


def put_source(services: WorkerServices, bucket: str, name: str = "source.jpg") -> str:
    """A 64 x 48 px JPEG in the bucket; its ``s3://`` URL."""
    image = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(image, "JPEG")
    services.creation._storage.put_bytes(f"sources/{name}", image.getvalue(), "image/jpeg")
    return f"s3://{bucket}/sources/{name}"
