"""Completion callbacks to upstream against the real Postgres and a real HTTP receiver: signed
like the provider's webhooks, retried with backoff, sent once by racing senders, refused by the
SSRF guard for a private address that is not allowlisted."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from pipeline.callbacks import CallbackPolicy, CallbackSender
from pipeline.db import create_pool
from pipeline.repository import Repository
from pipeline.ssrf import AddressPolicy
from pipeline.webhooks import WebhookVerifier, new_secret
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.integration

SECRET = new_secret()
FAST = CallbackPolicy(backoff_base=0.01, backoff_cap=0.02, timeout=5)


class Receiver:
    """An HTTP server that records each POST and answers the next status of ``answers``."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@contextmanager
def receiver(answers: list[int]) -> Iterator[Receiver]:
    found = Receiver(answers)
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()


@pytest.fixture
def repo(db_schema: str) -> Iterator[Repository]:
    pool = create_pool(DATABASE_URL, db_schema, max_size=4, name="test")
    yield Repository(pool)
    pool.close()


def _final_job(schema: str, repo: Repository, url: str) -> int:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}", autocommit=True) as c:
        row = c.execute(
            "INSERT INTO image_optimization_jobs (store_id, model, callback_url) "
            "VALUES ('store-c', 'nightmareai/real-esrgan', %s) RETURNING id",
            (url,),
        ).fetchone()
        assert row is not None
        c.execute(
            "INSERT INTO image_optimization_items (job_id, store_id, source_url, status) "
            "VALUES (%s, 'store-c', 'http://example.com/a.png', 'DONE')",
            (row[0],),
        )
    repo.refresh_active_jobs()  # the job becomes DONE: its callback is due
    return int(row[0])


def _state(schema: str, job_id: int) -> tuple[str | None, int, str | None]:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as c:
        row = c.execute(
            "SELECT callback_state, callback_attempts, callback_error "
            "FROM image_optimization_jobs WHERE id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None
    return row[0], int(row[1]), row[2]


def _sender(repo: Repository, allowlist: str = "127.0.0.0/8") -> CallbackSender:
    return CallbackSender(
        repo, secret=SECRET, policy=FAST, address_policy=AddressPolicy.from_setting(allowlist)
    )


def test_a_final_job_gets_one_signed_callback_retried_until_it_is_accepted(
    db_schema: str, repo: Repository
) -> None:
    with receiver([500, 503]) as hook, _sender(repo) as sender:
        job = _final_job(db_schema, repo, hook.url)
        runs = []
        for _ in range(20):
            runs.append(sender.run_once())
            if _state(db_schema, job)[0] == "sent":
                break
            threading.Event().wait(0.05)  # past the backoff (at most 0.02 s)
        again = sender.run_once()
    assert [r for r in runs if any(r.values())] == [
        {"sent": 0, "retry": 1, "failed": 0},
        {"sent": 0, "retry": 1, "failed": 0},
        {"sent": 1, "retry": 0, "failed": 0},
    ]
    assert again == {"sent": 0, "retry": 0, "failed": 0}
    assert _state(db_schema, job)[:2] == ("sent", 3)
    ids = {headers["webhook-id"] for headers, _ in hook.received}
    assert len(ids) == 1  # one message, retried
    headers, body = hook.received[-1]
    event = WebhookVerifier(SECRET).verify(body, headers)
    assert event["type"] == "job.completed"
    assert (event["job_id"], event["status"], event["done_items"]) == (job, "DONE", 1)


def test_racing_senders_post_a_callback_once(db_schema: str, repo: Repository) -> None:
    with receiver([]) as hook:
        job = _final_job(db_schema, repo, hook.url)
        senders = [_sender(repo) for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda s: s.run_once()["sent"], senders))
        for sender in senders:
            sender.close()
    assert sum(results) == 1
    assert len(hook.received) == 1
    assert _state(db_schema, job)[0] == "sent"


def test_a_callback_to_a_private_address_fails_at_the_ssrf_guard(
    db_schema: str, repo: Repository
) -> None:
    with receiver([]) as hook, _sender(repo, allowlist="") as sender:
        job = _final_job(db_schema, repo, hook.url)
        result = sender.run_once()
    assert result == {"sent": 0, "retry": 0, "failed": 1}
    state, attempts, error = _state(db_schema, job)
    assert (state, attempts) == ("failed", 1)
    assert error is not None
    assert "SSRF" in error
    assert hook.received == []


def test_a_job_without_a_callback_url_is_never_called(db_schema: str, repo: Repository) -> None:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={db_schema}", autocommit=True) as c:
        row = c.execute(
            "INSERT INTO image_optimization_jobs (store_id, model) VALUES ('s', 'm') RETURNING id"
        ).fetchone()
        assert row is not None
        c.execute(
            "INSERT INTO image_optimization_items (job_id, store_id, source_url, status) "
            "VALUES (%s, 's', 'http://example.com/a.png', 'FAILED')",
            (row[0],),
        )
    repo.refresh_active_jobs()
    with _sender(repo) as sender:
        assert sender.run_once() == {"sent": 0, "retry": 0, "failed": 0}
    assert _state(db_schema, int(row[0]))[0] is None
