"""A worker's services against a real emulator, and QUEUED rows to feed them (integration
tests that call the creation and polling services directly, without dramatiq processes)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

from dramatiq.brokers.stub import StubBroker
from PIL import Image

from devstack.emulator import run_emulator
from emulator.config import EmulatorConfig
from pipeline.taskqueue import TaskQueue
from tests.conftest import settings_from
from tests.support.rows import insert_job
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
    items = [{"source_url": source, "status": "QUEUED"} for _ in range(n)]
    return insert_job(schema, "store-a", items, model=model, params={"scale": 1}).item_ids


def put_source(services: WorkerServices, bucket: str, name: str = "source.jpg") -> str:
    """A 64 x 48 px JPEG in the bucket; its ``s3://`` URL."""
    image = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(image, "JPEG")
    services.creation._storage.put_bytes(f"sources/{name}", image.getvalue(), "image/jpeg")
    return f"s3://{bucket}/sources/{name}"
