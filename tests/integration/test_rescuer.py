"""The rescuer's duties, each on a crafted database state (real Postgres, the S3 server and the
emulator over HTTP), and each run twice: the second run finds nothing to do."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from PIL import Image
from psycopg_pool import ConnectionPool

from devstack.emulator import run_emulator
from emulator.config import EmulatorConfig
from pipeline.allowlist import build_allowlist
from pipeline.db import create_pool
from pipeline.pollplan import webhook_waits
from pipeline.provider import ProviderClient
from pipeline.repository import Repository
from pipeline.storage import ObjectStorage
from scheduler.rescuer import Rescuer, RescuerConfig
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.integration

MODEL = "nightmareai/real-esrgan"
CONFIG = RescuerConfig(
    queued_timeout=120, processing_timeout=90, submitting_timeout=300, max_age=3600
)


class Recorder:
    """Stands in for the task queue: remembers every creation and poll message."""

    def __init__(self) -> None:
        self.created: list[int] = []
        self.polled: list[int] = []

    def send_create(self, ids: Any) -> int:
        batch = [int(i) for i in ids]
        self.created.extend(batch)
        return len(batch)

    def send_poll(self, item_id: int, delay_seconds: float = 0.0) -> None:
        self.polled.append(int(item_id))


@pytest.fixture
def pool(db_schema: str) -> Iterator[ConnectionPool[Any]]:
    pool = create_pool(DATABASE_URL, db_schema, max_size=2, name="test-rescuer")
    yield pool
    pool.close()


@pytest.fixture
def provider() -> Iterator[ProviderClient]:
    config = EmulatorConfig(latency_min=30, latency_max=30)  # predictions stay running
    with run_emulator(config) as url, ProviderClient(url, "") as client:
        yield client


def make_rescuer(
    pool: ConnectionPool[Any], provider: ProviderClient, storage: ObjectStorage, **extra: Any
) -> tuple[Rescuer, Recorder]:
    """A rescuer on the test's schema whose messages a :class:`Recorder` keeps."""
    queue = Recorder()
    rescuer = Rescuer(
        repo=Repository(pool),
        provider=provider,
        storage=storage,
        send_create=queue.send_create,
        send_poll=queue.send_poll,
        config=CONFIG,
        **extra,
    )
    return rescuer, queue


@pytest.fixture
def rescuer_and_queue(
    pool: ConnectionPool[Any], provider: ProviderClient, storage: ObjectStorage
) -> tuple[Rescuer, Recorder]:
    return make_rescuer(pool, provider, storage)


def sql(schema: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        cur = conn.execute(query, params)
        return list(cur.fetchall()) if cur.description else []


def crafted_item(
    schema: str,
    status: str,
    *,
    idle_seconds: float,
    age_seconds: float = 600,
    prediction_id: str | None = None,
    input_key: str | None = None,
) -> int:
    """One item in ``status``, untouched (and not polled) for ``idle_seconds``."""
    job = sql(
        schema,
        "INSERT INTO image_optimization_jobs (store_id, model) VALUES ('s', %s) RETURNING id",
        (MODEL,),
    )[0][0]
    return int(
        sql(
            schema,
            "INSERT INTO image_optimization_items (job_id, store_id, source_url, status, attempts, "
            " prediction_id, input_key, created_at, updated_at, last_polled_at) "
            "VALUES (%s, 's', 'https://img.example/a.jpg', %s, 1, %s, %s, "
            " now() - make_interval(secs => %s), now() - make_interval(secs => %s), "
            " now() - make_interval(secs => %s)) RETURNING id",
            (job, status, prediction_id, input_key, age_seconds, idle_seconds, idle_seconds),
        )[0][0]
    )


def status(schema: str, item_id: int) -> tuple[Any, ...]:
    return sql(
        schema,
        "SELECT status, prediction_id, error_code FROM image_optimization_items WHERE id = %s",
        (item_id,),
    )[0]


def stored_input(storage: ObjectStorage, name: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "PNG")
    key = f"inputs/s/1/{name}.png"
    storage.put_bytes(key, buffer.getvalue(), "image/png")
    return key


def now() -> datetime:
    return datetime.now(UTC)


def test_a_queued_item_whose_message_was_lost_is_sent_again_once(
    db_schema: str, rescuer_and_queue: tuple[Rescuer, Recorder]
) -> None:
    rescuer, queue = rescuer_and_queue
    lost = crafted_item(db_schema, "QUEUED", idle_seconds=600)
    fresh = crafted_item(db_schema, "QUEUED", idle_seconds=5)
    assert rescuer.requeue_lost_queued(now()) == 1
    assert queue.created == [lost]
    assert fresh not in queue.created
    assert rescuer.requeue_lost_queued(now()) == 0
    assert status(db_schema, lost)[0] == "QUEUED"


def test_a_processing_item_not_polled_recently_gets_one_poll(
    db_schema: str, rescuer_and_queue: tuple[Rescuer, Recorder]
) -> None:
    rescuer, queue = rescuer_and_queue
    stale = crafted_item(db_schema, "PROCESSING", idle_seconds=600, prediction_id="p-stale")
    crafted_item(db_schema, "PROCESSING", idle_seconds=5, prediction_id="p-fresh")
    assert rescuer.repoll_stale_processing(now()) == 1
    assert queue.polled == [stale]
    assert rescuer.repoll_stale_processing(now()) == 0
    assert queue.polled == [stale]


def set_item(schema: str, item_id: int, *, model: str | None = None, polls: int = 0) -> None:
    """Give a crafted item its own ``model`` (None: the job's) and ``polls`` polls made."""
    sql(
        schema,
        "UPDATE image_optimization_items SET model = %s, poll_count = %s WHERE id = %s",
        (model, polls, item_id),
    )


def test_with_webhooks_an_item_whose_webhook_is_overdue_gets_one_poll(
    db_schema: str, pool: ConnectionPool[Any], provider: ProviderClient, storage: ObjectStorage
) -> None:
    """Overdue: not polled yet, and PROCESSING for longer than its model's expected runtime
    plus the grace (here 20 s + 30 s for the job's model, 1 s + 30 s for a model without an
    estimate); a second pass sends nothing."""
    rescuer, queue = make_rescuer(
        pool,
        provider,
        storage,
        webhook_waits=lambda: webhook_waits({MODEL: 20.0}, initial=1.0, maximum=30.0, grace=30.0),
    )
    late = crafted_item(db_schema, "PROCESSING", idle_seconds=60, prediction_id="p-late")
    within = crafted_item(db_schema, "PROCESSING", idle_seconds=40, prediction_id="p-within")
    other = crafted_item(db_schema, "PROCESSING", idle_seconds=40, prediction_id="p-other")
    polled = crafted_item(db_schema, "PROCESSING", idle_seconds=60, prediction_id="p-polled")
    set_item(db_schema, other, model="other/model")  # the default wait, 31 s
    set_item(db_schema, polled, polls=1)
    assert rescuer.poll_overdue_webhooks(now()) == 2
    assert sorted(queue.polled) == sorted([late, other])
    assert within not in queue.polled
    assert polled not in queue.polled  # polled before: repoll_stale_processing's case
    assert rescuer.poll_overdue_webhooks(now()) == 0
    assert rescuer.run_once(now()).webhook_overdue == 0


def test_without_webhooks_the_rescuer_does_not_look_for_overdue_webhooks(
    db_schema: str, rescuer_and_queue: tuple[Rescuer, Recorder]
) -> None:
    rescuer, queue = rescuer_and_queue
    crafted_item(db_schema, "PROCESSING", idle_seconds=30, prediction_id="p-x")
    assert rescuer.poll_overdue_webhooks(now()) == 0
    assert queue.polled == []


def test_expired_items_are_canceled_at_the_provider_and_fail_with_timeout(
    db_schema: str,
    rescuer_and_queue: tuple[Rescuer, Recorder],
    provider: ProviderClient,
    storage: ObjectStorage,
) -> None:
    rescuer, _ = rescuer_and_queue
    spec = build_allowlist("1:1")[MODEL]
    url = storage.presigned_get_url(stored_input(storage, "expired"))
    prediction = provider.create_prediction(spec, spec.build_input(url, None, {}))
    running = crafted_item(
        db_schema, "PROCESSING", idle_seconds=5, age_seconds=7200, prediction_id=prediction.id
    )
    queued = crafted_item(db_schema, "QUEUED", idle_seconds=5, age_seconds=7200)
    young = crafted_item(db_schema, "QUEUED", idle_seconds=5, age_seconds=60)
    assert rescuer.expire_old_items(now()) == 2
    assert status(db_schema, running) == ("FAILED", prediction.id, "timeout")
    assert status(db_schema, queued) == ("FAILED", None, "timeout")
    assert status(db_schema, young)[0] == "QUEUED"
    assert provider.get_prediction(prediction.id).status == "canceled"
    assert rescuer.expire_old_items(now()) == 0


def test_a_half_done_submission_adopts_the_prediction_the_provider_lists(
    db_schema: str,
    rescuer_and_queue: tuple[Rescuer, Recorder],
    provider: ProviderClient,
    storage: ObjectStorage,
) -> None:
    rescuer, queue = rescuer_and_queue
    key = stored_input(storage, "adopt")
    spec = build_allowlist("1:1")[MODEL]
    # The dead worker's POST reached the provider; its answer never reached the row.
    created = provider.create_prediction(
        spec, spec.build_input(storage.presigned_get_url(key), None, {})
    )
    other = stored_input(storage, "other")
    provider.create_prediction(spec, spec.build_input(storage.presigned_get_url(other), None, {}))
    item = crafted_item(db_schema, "SUBMITTING", idle_seconds=600, input_key=key)
    assert rescuer.resolve_stale_submitting(now()) == (1, 0)
    assert status(db_schema, item) == ("PROCESSING", created.id, None)
    assert queue.polled == [item]
    assert queue.created == []
    assert rescuer.resolve_stale_submitting(now()) == (0, 0)


def test_a_half_done_submission_the_provider_never_saw_is_queued_again(
    db_schema: str, rescuer_and_queue: tuple[Rescuer, Recorder], storage: ObjectStorage
) -> None:
    rescuer, queue = rescuer_and_queue
    with_input = crafted_item(
        db_schema, "SUBMITTING", idle_seconds=600, input_key=stored_input(storage, "never-posted")
    )
    without_input = crafted_item(db_schema, "SUBMITTING", idle_seconds=600)
    live = crafted_item(db_schema, "SUBMITTING", idle_seconds=5)
    assert rescuer.resolve_stale_submitting(now()) == (0, 2)
    assert sorted(queue.created) == sorted([with_input, without_input])
    assert status(db_schema, with_input)[0] == status(db_schema, without_input)[0] == "QUEUED"
    assert status(db_schema, live)[0] == "SUBMITTING"
    assert rescuer.resolve_stale_submitting(now()) == (0, 0)
    assert rescuer.requeue_lost_queued(now()) == 0  # just re-queued: not stale


def test_a_half_done_submission_whose_prediction_never_got_its_input_is_queued_again(
    db_schema: str, pool: ConnectionPool[Any], storage: ObjectStorage
) -> None:
    key = "inputs/s/1/never-stored.png"  # the provider's download of it answers 404
    with run_emulator(EmulatorConfig()) as url, ProviderClient(url, "") as provider:
        spec = build_allowlist("1:1")[MODEL]
        created = provider.create_prediction(
            spec, spec.build_input(storage.presigned_get_url(key), None, {})
        )
        deadline = time.monotonic() + 20
        while (failed := provider.get_prediction(created.id)).status != "failed":
            assert time.monotonic() < deadline, failed.status
            time.sleep(0.1)
        assert "could not be fetched" in (failed.error or "")
        rescuer, queue = make_rescuer(pool, provider, storage)
        item = crafted_item(db_schema, "SUBMITTING", idle_seconds=600, input_key=key)
        # That prediction is the item's, but adopting it would end the item FAILED for an
        # input the model never saw: a new prediction instead.
        assert rescuer.resolve_stale_submitting(now()) == (0, 1)
    assert status(db_schema, item) == ("QUEUED", None, None)
    assert queue.created == [item]
    assert queue.polled == []


def test_run_once_reports_each_duty_and_a_second_run_does_nothing(
    db_schema: str, rescuer_and_queue: tuple[Rescuer, Recorder]
) -> None:
    rescuer, _ = rescuer_and_queue
    crafted_item(db_schema, "QUEUED", idle_seconds=600)
    crafted_item(db_schema, "PROCESSING", idle_seconds=600, prediction_id="p-x")
    crafted_item(db_schema, "SUBMITTING", idle_seconds=600)
    crafted_item(db_schema, "QUEUED", idle_seconds=5, age_seconds=7200)
    first = rescuer.run_once(now())
    assert (first.requeued, first.repolled, first.adopted, first.resubmitted, first.expired) == (
        1,
        1,
        0,
        1,
        1,
    )
    assert rescuer.run_once(now()).total == 0
