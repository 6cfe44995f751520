"""What callers see of a failed item (real Postgres, Redis, S3, the emulator, over sockets): an
item whose source resolves to loopback, and one whose host does not resolve, fail in a real
creation step; the api's job view, job list and event stream show only the stable sentence of
the error code, while the row and the log keep the detail for ops."""

from __future__ import annotations

import httpx
import psycopg
import pytest
from dramatiq.brokers.stub import StubBroker
from structlog.testing import capture_logs

from api.auth import create_api_key
from emulator.config import EmulatorConfig
from pipeline.db import create_pool
from pipeline.errors import PUBLIC_MESSAGES
from pipeline.repository import Repository
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api
from tests.support.worker import queued_items, services_with_emulator

pytestmark = pytest.mark.integration

SOURCES = {
    "source_blocked": "http://localhost/photo.jpg",  # resolves to loopback: the SSRF guard
    "source_unreachable": "http://no-such-host.invalid/photo.jpg",  # resolves to nothing
}
INTERNALS = ("127.0.0.1", "::1", "loopback", "resolve", "errno", "name or service", "invalid")
"""What the resolver and the SSRF guard say about a host, which no caller may read."""


def _job_of(schema: str, item_id: int) -> tuple[int, str, str]:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        row = conn.execute(
            "SELECT job_id, error_code, error_message FROM image_optimization_items WHERE id = %s",
            (item_id,),
        ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1]), str(row[2])


def test_the_api_shows_the_generic_sentence_not_how_the_host_resolved(
    pipeline_env: dict[str, str], poll_broker: StubBroker, db_schema: str
) -> None:
    env = {
        **pipeline_env,
        "IMAGEOPT_SOURCE_ALLOWLIST": "",  # loopback is refused, as in production
        "IMAGEOPT_MAX_ATTEMPTS": "1",  # an unreachable source fails at its first attempt
        "IMAGEOPT_API_RATE_PER_MINUTE": "1000",
    }
    jobs: dict[str, int] = {}
    with (
        services_with_emulator(env, poll_broker, EmulatorConfig(token="r8_item-errors-test")) as (
            services,
            _,
        ),
        capture_logs() as logs,
    ):
        for code, source in SOURCES.items():
            [item_id] = queued_items(db_schema, source, 1)
            assert services.creation.run(item_id).action == "failed"
            job_id, stored_code, detail = _job_of(db_schema, item_id)
            assert stored_code == code
            jobs[code] = job_id
            # ops keep the detail: the row and the item_failed event name what happened
            assert any(word in detail.lower() for word in ("loopback", "resolve")), detail
            failed = [e for e in logs if e["event"] == "item_failed" and e["item_id"] == item_id]
            assert failed
            assert failed[0]["error_message"] == detail

    pool = create_pool(DATABASE_URL, db_schema, max_size=1, name="test")
    key, _ = create_api_key(Repository(pool), "store-a")
    pool.close()
    headers = {"Authorization": f"Bearer {key}"}
    with run_api(settings_from(env)) as base, httpx.Client(base_url=base, headers=headers) as api:
        for code, job_id in jobs.items():
            view = api.get(f"/api/jobs/{job_id}")
            assert view.status_code == 200, view.text
            [item] = view.json()["data"]["items"]
            assert (item["errorCode"], item["errorMessage"]) == (code, PUBLIC_MESSAGES[code])
            stream = api.get(f"/api/jobs/{job_id}/events", timeout=30)  # final: job, then end
            assert f'"errorMessage":"{PUBLIC_MESSAGES[code]}"' in stream.text
            for text in (view.text, stream.text, api.get("/api/jobs").text):
                assert not [word for word in INTERNALS if word in text.lower()], text
