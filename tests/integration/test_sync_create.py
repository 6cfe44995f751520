"""Sync-mode creates (``REPLICATE_MAX_WAIT_MS``, Replicate's ``Prefer: wait=N``) through a
worker's real services (Postgres, Redis, the S3 server and the emulator over sockets): a
prediction that finishes within the wait is completed by the creation step itself, with no poll
message and no GET; one that does not goes on to be polled as in async mode."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
from dramatiq.brokers.stub import StubBroker
from psycopg_pool import ConnectionPool
from structlog.testing import capture_logs

from devstack.processes import free_port
from emulator.config import EmulatorConfig
from pipeline.repository import Repository
from pipeline.taskqueue import POLL_QUEUE
from pipeline.wiring import limiters, provider_client, redis_client, storage
from tests.conftest import DATABASE_URL, settings_from
from tests.support.worker import MODEL, put_source, queued_items, services_with_emulator
from workers.polling import PollingPolicy, PollingService

pytestmark = pytest.mark.integration

TOKEN = "r8_sync-create-test"


def _polls_queued(broker: StubBroker) -> int:
    queues: Any = broker.queues
    return int(queues[POLL_QUEUE].qsize() + queues[f"{POLL_QUEUE}.DQ"].qsize())


def _emulator_stats(api_url: str) -> dict[str, Any]:
    root = api_url.removesuffix("/v1")
    return dict(httpx.get(f"{root}/_emulator/stats", timeout=5).raise_for_status().json())


@pytest.mark.parametrize(
    "case",
    [
        ("3000", (0.05, 0.1), "DONE"),  # finishes within the wait: completed by creation
        # held longer than the provider timeout (1 s): the read timeout grows by the wait
        ("3000", (1.3, 1.5), "DONE"),
        ("1000", (2.0, 2.5), "PROCESSING"),  # outlasts the wait: polled as usual
        ("0", (0.05, 0.1), "PROCESSING"),  # async (default): always polled
    ],
)
def test_a_create_that_finishes_within_the_wait_is_completed_without_a_poll(
    pipeline_env: dict[str, str],
    poll_broker: StubBroker,
    db_schema: str,
    s3_settings: dict[str, str],
    case: tuple[str, tuple[float, float], str],
) -> None:
    wait_ms, latency, expected = case
    env = {
        **pipeline_env,
        "REPLICATE_MAX_WAIT_MS": wait_ms,
        "IMAGEOPT_PROVIDER_TIMEOUT_SECONDS": "1",
    }
    emulator = EmulatorConfig(latency_min=latency[0], latency_max=latency[1], token=TOKEN)
    with services_with_emulator(env, poll_broker, emulator) as (services, api_url):
        source = put_source(services, s3_settings["S3_BUCKET"])
        items = queued_items(db_schema, source, 3)
        for item_id in items:
            assert services.creation.run(item_id).action == "submitted"
        rows = _rows(db_schema, items)
        stored = [services.creation._storage.exists(key) for _, key, _ in rows if key]
        stats = _emulator_stats(api_url)

    assert [status for status, _, _ in rows] == [expected] * 3
    assert [polls for _, _, polls in rows] == [0] * 3  # the create's answer is no poll
    assert stats["predictions_created"] == 3
    assert stats["requests_by_endpoint"].get("get_prediction", 0) == 0  # nobody polled
    if expected == "DONE":
        assert _polls_queued(poll_broker) == 0
        assert stored == [True] * 3  # results/store-a/... in the bucket
    else:
        assert _polls_queued(poll_broker) == 3
        assert stored == []


def _rows(schema: str, items: list[int]) -> list[tuple[str, str | None, int]]:
    """(status, output_key, poll_count) of each item, in the order of ``items``."""
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        found = {
            row[0]: (row[1], row[2], row[3])
            for row in conn.execute(
                "SELECT id, status, output_key, poll_count FROM image_optimization_items "
                "WHERE id = ANY(%s)",
                (items,),
            )
        }
    return [found[item_id] for item_id in items]


def test_a_final_sync_answer_that_cannot_be_finished_now_is_left_to_the_poll_path(
    pipeline_env: dict[str, str],
    poll_broker: StubBroker,
    db_schema: str,
    s3_settings: dict[str, str],
) -> None:
    """The creation step finishes a final sync answer itself; when it cannot (here: Postgres
    refuses connections), ``after_create`` gives back the first poll's delay, so the caller
    sends a poll message and the poll path finishes the item later. Nothing is downloaded."""
    env = {**pipeline_env, "REPLICATE_MAX_WAIT_MS": "3000"}
    emulator = EmulatorConfig(latency_min=0.05, latency_max=0.1, token=TOKEN)
    with services_with_emulator(env, poll_broker, emulator) as (services, api_url):
        source = put_source(services, s3_settings["S3_BUCKET"])
        [item_id] = queued_items(db_schema, source, 1)
        created = services.creation.run(item_id)
        assert created.action == "submitted"
        assert created.prediction_id is not None
        settings = settings_from(
            {**env, "REPLICATE_BASE_URL": api_url, "REPLICATE_API_TOKEN": TOKEN}
        )
        provider = provider_client(settings)
        answer = provider.get_prediction(created.prediction_id)
        files_before = _emulator_stats(api_url)["requests_by_endpoint"].get("files", 0)
        # A pool on a port where nothing listens: each checkout ends in PoolTimeout (an
        # OperationalError), which the repository turns into DatabaseUnavailable.
        refused = ConnectionPool(
            f"postgresql://127.0.0.1:{free_port()}/none", open=False, timeout=0.5
        )
        refused.open(wait=False)
        client = redis_client(settings)
        polling = PollingService(
            repo=Repository(refused),
            storage=storage(settings),
            provider=provider,
            read_limiter=limiters(settings, client)[1],
            first_delay=lambda model: 7.5 if model == MODEL else 0.0,
            policy=PollingPolicy(
                initial_delay=1.0,
                max_delay=10.0,
                acquire_timeout=1.0,
                max_output_bytes=10_000_000,
                max_output_pixels=50_000_000,
            ),
        )
        try:
            with capture_logs() as logs:
                delay = polling.after_create(item_id, MODEL, answer)
        finally:
            refused.close()
            client.close()
            provider.close()
        files_after = _emulator_stats(api_url)["requests_by_endpoint"].get("files", 0)

    assert answer.terminal
    assert answer.status == "succeeded"
    assert delay == 7.5  # the model's first-poll delay: the caller sends the poll message
    deferred = [e for e in logs if e["event"] == "sync_completion_deferred"]
    assert deferred
    assert deferred[0]["error_code"] == "database_unavailable"
    assert files_after == files_before  # the output is fetched by the poll, not twice
