"""Real processes (``imageopt api``, ``imageopt worker``) against the real Postgres, Redis and S3
server: every line they write is one JSON object with the process kind, uvicorn's and
dramatiq's own lines included; the api logs one access event per request (request id, route
template, status) and answers with ``X-Request-ID``; the token never shows."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.processes import ProcessGroup, free_port, wait_http

pytestmark = pytest.mark.integration

TOKEN = "r8_process-logs-token-7d1f"
STARTUP_SECONDS = 30.0


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` as a JSON object (fails naming the first line that is not)."""
    events = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert isinstance(event, dict), line
        events.append(event)
    return events


@pytest.fixture
def group(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[ProcessGroup]:
    processes = ProcessGroup(
        env={**pipeline_env, "REPLICATE_API_TOKEN": TOKEN}, log_dir=tmp_path / "logs"
    )
    yield processes
    processes.stop_all()


def test_every_api_line_is_json_and_each_request_has_an_access_event_with_its_id(
    group: ProcessGroup, tmp_path: Path
) -> None:
    port = free_port()
    group.start("api", "api", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz", timeout=STARTUP_SECONDS)
    with httpx.Client(base_url=base, timeout=10) as client:
        health = client.get("/healthz", headers={"X-Request-ID": "probe-1a2b"})
        job = client.get("/api/jobs/4242", headers={"Authorization": f"Bearer {TOKEN}"})
        unknown = client.get(f"/no/such/page?token={TOKEN}", headers={"X-Request-ID": "a b"})
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")  # uvicorn logs it on uvicorn.error
        raw.recv(1024)
    assert health.headers["x-request-id"] == "probe-1a2b"
    assert re.fullmatch(r"[0-9a-f]{32}", unknown.headers["x-request-id"])
    group.stop("api")  # uvicorn ends on SIGTERM by re-raising it: no exit code to check

    log = tmp_path / "logs" / "api.log"
    events = json_lines(log)
    assert {event["process"] for event in events} == {"api"}
    access = {event["request_id"]: event for event in events if event["event"] == "http_request"}
    assert access["probe-1a2b"]["route"] == "/healthz"
    assert access["probe-1a2b"]["status"] == 200
    assert access["probe-1a2b"]["method"] == "GET"
    assert access["probe-1a2b"]["client"] == "127.0.0.1"
    assert isinstance(access["probe-1a2b"]["duration_seconds"], float)
    assert access[job.headers["x-request-id"]]["route"] == "/api/jobs/{job_id}"
    assert access[job.headers["x-request-id"]]["status"] == job.status_code
    assert access[unknown.headers["x-request-id"]]["route"] == "<unmatched>"
    assert access[unknown.headers["x-request-id"]]["status"] == 404
    assert any(event["logger"] == "uvicorn.error" for event in events)  # uvicorn's own line
    assert TOKEN not in log.read_text()


def test_every_worker_line_is_json_from_dramatiqs_main_process_to_its_workers(
    group: ProcessGroup, tmp_path: Path
) -> None:
    group.start("worker", "worker", "--queues", "create", "--processes", "1", "--threads", "1")
    log = tmp_path / "logs" / "worker.log"
    deadline = time.monotonic() + STARTUP_SECONDS
    while "ready for action" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, group.log_tail("worker")
        time.sleep(0.2)
    assert group.stop("worker") == 0

    events = json_lines(log)
    assert {event["process"] for event in events} == {"worker"}
    loggers = {event["logger"] for event in events}
    assert "dramatiq.MainProcess" in loggers  # "booting up", written by dramatiq's main process
    assert "dramatiq.WorkerProcess(0)" in loggers
    assert len({event["pid"] for event in events}) >= 2  # main and worker process
    assert TOKEN not in log.read_text()
