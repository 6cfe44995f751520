"""Provider webhooks over real sockets: the emulator signs and POSTs final predictions, the api
verifies them and queues the prediction on the webhook queue, a polling worker's real services
finish the item with it (Postgres, Redis, the S3 server); a lost webhook's item is polled by the
scheduler's rescuer; forged, stale, replayed and early webhooks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import httpx
import psycopg
import pytest
from dramatiq.brokers.stub import StubBroker

from devstack.emulator import run_emulator
from emulator.config import EmulatorConfig
from pipeline.pollplan import webhook_waits
from pipeline.provider import Prediction
from pipeline.repository import Repository
from pipeline.taskqueue import POLL_QUEUE, WEBHOOK_ACTOR, WEBHOOK_QUEUE, TaskQueue, build_broker
from pipeline.webhooks import new_secret, signed_headers
from scheduler.rescuer import Rescuer, RescuerConfig
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api
from tests.support.worker import put_source, queued_items, services_with_emulator
from workers.services import worker_services

pytestmark = pytest.mark.integration

TOKEN = "r8_webhook-test"
ROUTE = "/api/webhooks/replicate"
SECRET = new_secret()


def _prediction(prediction_id: str = "p1", status: str = "succeeded") -> dict[str, Any]:
    return {
        "id": prediction_id,
        "status": status,
        "output": "http://127.0.0.1:1/files/p1/output.png",
        "error": None,
        "created_at": "2026-01-01T00:00:00.000000Z",
        "completed_at": "2026-01-01T00:00:01.500000Z",
        "metrics": {"predict_time": 1.25},
        "input": {"image": "http://127.0.0.1:1/in.png"},
        "logs": "succeeded\n",
    }


def _post(
    api: str,
    body: bytes,
    *,
    item: str = "7",
    message_id: str = "msg_1",
    secret: str = SECRET,
    now: datetime | None = None,
) -> httpx.Response:
    headers = signed_headers(secret, message_id, body, now=now)
    headers["content-type"] = "application/json"
    return httpx.post(f"{api}{ROUTE}?item={item}", content=body, headers=headers, timeout=10)


def _queued(env: dict[str, str], queue: str = WEBHOOK_QUEUE) -> list[dramatiq.Message[Any]]:
    """The messages waiting in ``queue`` (default: the webhook queue) of ``env``'s namespace."""
    broker = build_broker(env["REDIS_URL"], env["IMAGEOPT_REDIS_NAMESPACE"])
    client: Any = broker.client
    raw = client.hvals(f"{broker.namespace}:{queue}.msgs")
    broker.close()
    return [dramatiq.Message.decode(r) for r in raw]


@contextmanager
def _api(env: dict[str, str], **extra: str) -> Iterator[str]:
    settings = settings_from(
        {
            **env,
            "IMAGEOPT_WEBHOOK_URL": "http://127.0.0.1:9/api/webhooks/replicate",
            "REPLICATE_WEBHOOK_SECRET": SECRET,
            **extra,
        }
    )
    with run_api(settings) as root:
        yield root


def test_a_signed_final_prediction_is_queued_once_with_its_payload(
    pipeline_env: dict[str, str],
) -> None:
    body = json.dumps(_prediction()).encode()
    with _api(pipeline_env) as api:
        first = _post(api, body)
        again = _post(api, body)  # the provider's retry: same webhook-id
    assert (first.status_code, first.json()) == (202, {"status": "accepted"})
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    [message] = _queued(pipeline_env)
    assert (message.queue_name, message.actor_name) == (WEBHOOK_QUEUE, WEBHOOK_ACTOR)
    assert _queued(pipeline_env, POLL_QUEUE) == []  # never behind the polls
    assert message.args == (7,)
    payload = message.kwargs["prediction"]
    assert Prediction.from_json(payload).output_urls == (_prediction()["output"],)
    assert "input" not in payload  # trimmed: finishing does not read it
    assert "logs" not in payload


@pytest.mark.parametrize(
    "case",
    ["wrong_secret", "tampered", "stale", "future", "no_headers", "garbage_signature"],
)
def test_a_forged_or_stale_webhook_is_refused_and_queues_nothing(
    pipeline_env: dict[str, str], case: str
) -> None:
    body = json.dumps(_prediction()).encode()
    with _api(pipeline_env) as api:
        if case == "wrong_secret":
            response = _post(api, body, secret=new_secret())
        elif case == "tampered":
            headers = signed_headers(SECRET, "msg_2", body)
            forged = body.replace(b"p1", b"p2")
            response = httpx.post(f"{api}{ROUTE}?item=7", content=forged, headers=headers)
        elif case == "stale":  # a replay of a captured delivery, 6 minutes later
            response = _post(api, body, now=datetime.now(UTC) - timedelta(minutes=6))
        elif case == "future":
            response = _post(api, body, now=datetime.now(UTC) + timedelta(minutes=6))
        elif case == "no_headers":
            response = httpx.post(
                f"{api}{ROUTE}?item=7", content=body, headers={"content-type": "application/json"}
            )
        else:
            headers = {**signed_headers(SECRET, "msg_3", body), "webhook-signature": "v1garbage"}
            response = httpx.post(f"{api}{ROUTE}?item=7", content=body, headers=headers)
    # without any webhook header it is a plain cross-site POST: the CSRF guard refuses it
    assert response.status_code == (403 if case == "no_headers" else 401), response.text
    assert _queued(pipeline_env) == []


def test_a_webhook_without_a_valid_item_or_prediction_is_a_400(
    pipeline_env: dict[str, str],
) -> None:
    body = json.dumps(_prediction()).encode()
    with _api(pipeline_env) as api:
        no_item = _post(api, body, item="x")
        huge_item = _post(api, body, item="9" * 19)
        not_prediction = _post(api, b'{"hello": "world"}', message_id="msg_4")
        running = _post(api, json.dumps(_prediction(status="processing")).encode(), message_id="m5")
    assert (no_item.status_code, huge_item.status_code, not_prediction.status_code) == (
        400,
        400,
        400,
    )
    assert running.json() == {"status": "ignored"}
    assert _queued(pipeline_env) == []


def test_an_unsigned_hostile_body_is_refused_on_its_signature_before_it_is_parsed(
    pipeline_env: dict[str, str],
) -> None:
    hostile = [b'{"id": NaN}', b"[" * 5000, b'{"id": "\\u0000"}', b"not json"]
    with _api(pipeline_env) as api:  # signed, but with a key that is not ours
        answers = [_post(api, body, secret=new_secret()) for body in hostile]
    assert {(a.status_code, a.json()["error"]["type"]) for a in answers} == {
        (401, "invalid_signature")
    }
    assert _queued(pipeline_env) == []


def test_concurrent_deliveries_of_one_webhook_queue_it_once(
    pipeline_env: dict[str, str],
) -> None:
    body = json.dumps(_prediction()).encode()
    with _api(pipeline_env) as api, ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: _post(api, body).status_code, range(12)))
    assert sorted(statuses) == [200] * 11 + [202]
    assert len(_queued(pipeline_env)) == 1


def test_webhooks_are_off_without_a_webhook_url(pipeline_env: dict[str, str]) -> None:
    with _api(pipeline_env, IMAGEOPT_WEBHOOK_URL="") as api:
        response = _post(api, json.dumps(_prediction()).encode())
    assert response.status_code == 404


@contextmanager
def _services(env: dict[str, str], broker: StubBroker, provider_url: str) -> Iterator[Any]:
    settings = settings_from(
        {**env, "REPLICATE_BASE_URL": provider_url, "REPLICATE_API_TOKEN": TOKEN}
    )
    built = worker_services(settings, TaskQueue(broker), pool_size=2)
    try:
        yield built
    finally:
        built.close()


def _poll_messages(broker: StubBroker) -> list[dramatiq.Message[Any]]:
    queues: Any = broker.queues
    found: list[dramatiq.Message[Any]] = []
    for name in (POLL_QUEUE, f"{POLL_QUEUE}.DQ"):
        queue = queues[name]
        while not queue.empty():
            found.append(dramatiq.Message.decode(queue.get_nowait()))
    return found


def _row(schema: str, item_id: int) -> tuple[str, int, float | None]:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        row = conn.execute(
            "SELECT status, poll_count, predict_time_seconds FROM image_optimization_items "
            "WHERE id = %s",
            (item_id,),
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), row[2]


def _wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not reached")


class _Polls:
    """Stands in for the rescuer's task queue: remembers the polls it sends."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def send(self, item_id: int, delay_seconds: float = 0.0) -> None:
        self.sent.append(item_id)


def _rescuer(services: Any, grace: float, polls: _Polls) -> Rescuer:
    """The scheduler's rescuer on the worker's repository, as with ``IMAGEOPT_WEBHOOK_URL`` set
    (the rescuer's other duties, which use the provider and the bucket, are not run here)."""
    repo: Repository = services.repo
    return Rescuer(
        repo=repo,
        provider=Any,  # type: ignore[arg-type]
        storage=Any,  # type: ignore[arg-type]
        send_create=lambda ids: 0,
        send_poll=polls.send,
        config=RescuerConfig(),
        webhook_waits=lambda: webhook_waits({}, initial=1.0, maximum=30.0, grace=grace),
    )


@pytest.mark.parametrize("fault", [None, "duplicate", "delay", "drop", "corrupt"])
def test_an_item_ends_done_once_through_the_webhook_or_the_rescuers_poll(
    pipeline_env: dict[str, str],
    poll_broker: StubBroker,
    db_schema: str,
    s3_settings: dict[str, str],
    fault: str | None,
) -> None:
    """The emulator's signed webhook reaches the api, which queues it; the polling service
    finishes the item with it, without a GET. No poll message is sent at creation: a dropped
    or corrupted webhook leaves the item to the scheduler's rescuer, which polls it once it is
    PROCESSING for the expected runtime plus the grace (1 s + 45 s here), not before."""
    emulator = EmulatorConfig(
        latency_min=0.05,
        latency_max=0.1,
        token=TOKEN,
        webhook_fault=fault or "drop",
        webhook_fault_rate=1.0 if fault else 0.0,
        webhook_delay_seconds=0.5,
        webhook_retry_seconds=0.05,
        webhook_max_attempts=2,
    )
    with run_emulator(emulator) as provider_url:
        api_env = {
            **pipeline_env,
            "REPLICATE_BASE_URL": provider_url,
            "REPLICATE_API_TOKEN": TOKEN,
        }
        # no REPLICATE_WEBHOOK_SECRET: the api asks the provider for it
        with _api(api_env, REPLICATE_WEBHOOK_SECRET="") as api:
            env = {
                **pipeline_env,
                "IMAGEOPT_WEBHOOK_URL": f"{api}{ROUTE}",
                "IMAGEOPT_WEBHOOK_POLL_GRACE_SECONDS": "45",
                "IMAGEOPT_ADAPTIVE_POLLING": "false",
            }
            with _services(env, poll_broker, provider_url) as services:
                url = provider_url
                source = put_source(services, s3_settings["S3_BUCKET"])
                [item_id] = queued_items(db_schema, source, 1)
                assert services.creation.run(item_id).action == "submitted"
                assert _poll_messages(poll_broker) == []  # no poll message per item
                polls = _Polls()
                rescuer = _rescuer(services, 45.0, polls)
                root = url.removesuffix("/v1")
                stats = lambda: httpx.get(f"{root}/_emulator/stats").json()  # noqa: E731
                if fault in (None, "duplicate", "delay"):
                    delivered = 2 if fault == "duplicate" else 1
                    _wait_for(lambda: stats()["webhooks"].get("delivered") == delivered)
                    messages = _queued(env)
                    assert len(messages) == 1  # a duplicate is answered, not queued
                    known = Prediction.from_json(messages[0].kwargs["prediction"])
                    outcome = services.polling.run(item_id, known=known)
                    after = datetime.now(UTC) + timedelta(seconds=60)
                    assert rescuer.poll_overdue_webhooks(after) == 0  # DONE: nothing overdue
                else:
                    _wait_for(lambda: stats()["webhooks"].get(
                        "dropped" if fault == "drop" else "gave_up"
                    ))  # fmt: skip
                    assert _queued(env) == []
                    soon = datetime.now(UTC) + timedelta(seconds=30)
                    assert rescuer.poll_overdue_webhooks(soon) == 0  # not yet overdue
                    later = datetime.now(UTC) + timedelta(seconds=60)
                    assert rescuer.poll_overdue_webhooks(later) == 1
                    assert polls.sent == [item_id]
                    again_soon = datetime.now(UTC) + timedelta(seconds=30)
                    assert rescuer.poll_overdue_webhooks(again_soon) == 0  # its wait restarted
                    outcome = services.polling.run(item_id)  # the rescuer's poll
                again = services.polling.run(item_id)  # a late poll or webhook: one result
                gets = stats()["requests_by_endpoint"].get("get_prediction", 0)
    assert (outcome.action, again.action) == ("done", "skipped")
    status, polls, predict_time = _row(db_schema, item_id)
    assert status == "DONE"
    assert predict_time is not None
    assert predict_time > 0
    assert (polls, gets) == ((0, 0) if fault in (None, "duplicate", "delay") else (1, 1))


def test_a_webhook_that_overtakes_the_create_answer_is_looked_at_again(
    pipeline_env: dict[str, str],
    poll_broker: StubBroker,
    db_schema: str,
    s3_settings: dict[str, str],
) -> None:
    """The item is still SUBMITTING when the webhook's message is handled: the polling service
    asks to look again (the actor re-sends the message with its payload), and once the create's
    answer is written the same payload finishes the item without a GET."""
    emulator = EmulatorConfig(latency_min=0.05, latency_max=0.1, token=TOKEN)
    with services_with_emulator(pipeline_env, poll_broker, emulator) as (services, url):
        source = put_source(services, s3_settings["S3_BUCKET"])
        [item_id] = queued_items(db_schema, source, 1)
        assert services.creation.run(item_id).action == "submitted"
        [_] = _poll_messages(poll_broker)
        root = url.removesuffix("/v1")
        with psycopg.connect(DATABASE_URL, options=f"-c search_path={db_schema}") as conn:
            prediction_id = conn.execute(
                "UPDATE image_optimization_items SET status = 'SUBMITTING' WHERE id = %s "
                "RETURNING prediction_id",
                (item_id,),
            ).fetchone()
        assert prediction_id is not None
        final = _wait_for(
            lambda: (
                p
                if (p := httpx.get(f"{url}/predictions/{prediction_id[0]}",
                                   headers={"Authorization": f"Bearer {TOKEN}"}).json())[
                    "status"
                ]
                == "succeeded"
                else None
            )
        )  # fmt: skip
        known = Prediction.from_json(final)

        def gets() -> int:
            stats = httpx.get(f"{root}/_emulator/stats").json()
            return int(stats["requests_by_endpoint"].get("get_prediction", 0))

        gets_before = gets()  # the test's own waiting GETs
        early = services.polling.run(item_id, known=known)
        with psycopg.connect(DATABASE_URL, options=f"-c search_path={db_schema}") as conn:
            conn.execute(
                "UPDATE image_optimization_items SET status = 'PROCESSING' WHERE id = %s",
                (item_id,),
            )
        later = services.polling.run(item_id, known=known)
        gets_after = gets()
    assert early.action == "again"
    assert later.action == "done"
    assert _row(db_schema, item_id)[0] == "DONE"
    assert gets_after == gets_before  # finished with the webhook's payload, no GET


def test_a_webhook_for_another_prediction_of_the_item_is_not_accepted(
    pipeline_env: dict[str, str],
    poll_broker: StubBroker,
    db_schema: str,
    s3_settings: dict[str, str],
) -> None:
    """The webhook URL names the item but is not signed: a valid webhook of another
    prediction sent to this item's URL finishes nothing."""
    emulator = EmulatorConfig(latency_min=5, latency_max=6, token=TOKEN)
    with services_with_emulator(pipeline_env, poll_broker, emulator) as (services, _url):
        source = put_source(services, s3_settings["S3_BUCKET"])
        [item_id] = queued_items(db_schema, source, 1)
        assert services.creation.run(item_id).action == "submitted"
        outcome = services.polling.run(item_id, known=Prediction.from_json(_prediction("other")))
    assert outcome.action == "skipped"
    assert _row(db_schema, item_id)[0] == "PROCESSING"
