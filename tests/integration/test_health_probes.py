"""Liveness that sees a stuck loop: each process kind's ``/livez`` fails within its threshold
when its work loop is frozen, while ``/metrics`` (served by another thread or process) still
answers; it recovers when the loop runs again.

* scheduler (a real ``imageopt scheduler``): its leader cycle blocks on a Postgres lock that the
  test holds on the items table;
* worker group (a real ``imageopt worker``): its one dramatiq worker process is SIGSTOPped; or
  its one worker thread hangs on a source that never answers while its queue holds more;
* api (uvicorn in a thread): its event loop is blocked by a synchronous sleep.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api import create_app
from api.app import uvicorn_options
from devstack.processes import ProcessGroup, free_port, serve_asgi_in_thread
from pipeline.taskqueue import TaskQueue, build_broker
from tests.conftest import DATABASE_URL, REDIS_URL, settings_from
from tests.support.probes import MARGIN_SECONDS, status, wait_failing, wait_for, wait_live

pytestmark = [pytest.mark.integration]

THRESHOLD_SECONDS = 2.0


def _env(pipeline_env: dict[str, str], tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **pipeline_env,
        "PATH": "/usr/bin:/bin",
        "IMAGEOPT_METRICS_HOST": "127.0.0.1",
        "IMAGEOPT_METRICS_MULTIPROC_DIR": str(tmp_path / "multiproc"),
        "IMAGEOPT_SCHEDULER_TICK_SECONDS": "0.2",
        **extra,
    }


def test_scheduler_liveness_fails_while_its_cycle_is_blocked_and_metrics_still_answer(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = _env(
        pipeline_env,
        tmp_path,
        IMAGEOPT_SCHEDULER_METRICS_PORT=str(port),
        IMAGEOPT_SCHEDULER_LIVENESS_SECONDS=str(THRESHOLD_SECONDS),
    )
    base = f"http://127.0.0.1:{port}"
    group = ProcessGroup(env=env, log_dir=tmp_path / "logs")
    schema = pipeline_env["IMAGEOPT_DB_SCHEMA"]
    try:
        group.start("scheduler", "scheduler")
        wait_for(lambda: status(f"{base}/readyz") == 200, 30, "scheduler ready")
        assert status(f"{base}/livez") == 200
        with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
            # The leader's next metering pass waits for this lock: its loop stops going round.
            conn.execute("LOCK TABLE image_optimization_items IN ACCESS EXCLUSIVE MODE")
            wait_failing(base, THRESHOLD_SECONDS, "scheduler /livez failing")
            assert status(f"{base}/readyz") == 503
            conn.rollback()
        wait_live(base, MARGIN_SECONDS, "scheduler recovers")
    finally:
        group.stop_all()


def _worker_pids(directory: Path) -> list[int]:
    return [int(p.stem.removeprefix("health-")) for p in directory.glob("health-*.json")]


def test_worker_liveness_fails_while_its_process_is_stopped_and_metrics_still_answer(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = _env(
        pipeline_env,
        tmp_path,
        IMAGEOPT_WORKER_METRICS_PORT=str(port),
        IMAGEOPT_WORKER_LIVENESS_SECONDS=str(THRESHOLD_SECONDS),
    )
    base = f"http://127.0.0.1:{port}"
    directory = tmp_path / "multiproc"
    group = ProcessGroup(env=env, log_dir=tmp_path / "logs")
    stopped: list[int] = []
    try:
        group.start("worker", "worker", "--queues", "create", "--processes", "1",
                    "--threads", "2")  # fmt: skip
        wait_live(base, 60, "worker group live")
        assert status(f"{base}/readyz") == 200
        pids = _worker_pids(directory)
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGSTOP)  # the consumer and worker threads freeze with it
        stopped.append(pids[0])
        body = wait_failing(base, THRESHOLD_SECONDS, "worker /livez failing")
        assert "no heartbeat" in body["problems"][0]
        os.kill(stopped.pop(), signal.SIGCONT)
        wait_live(base, MARGIN_SECONDS, "worker recovers")
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        group.stop_all()


def _queued_items(schema: str, url: str, count: int) -> list[int]:
    """A job of ``count`` QUEUED items whose source is ``url`` (as the scheduler leaves them)."""
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        row = conn.execute(
            "INSERT INTO image_optimization_jobs (store_id, model, params) "
            "VALUES ('store-stall', 'nightmareai/real-esrgan', '{\"scale\": 2}') RETURNING id"
        ).fetchone()
        assert row is not None
        return [
            int(item[0])
            for item in conn.execute(
                "INSERT INTO image_optimization_items (job_id, store_id, source_url, status) "
                "SELECT %s, 'store-stall', %s, 'QUEUED' FROM generate_series(1, %s) "
                "RETURNING id",
                (row[0], url, count),
            ).fetchall()
        ]


def test_worker_liveness_fails_when_it_handles_nothing_while_its_queue_holds_messages(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = _env(
        pipeline_env,
        tmp_path,
        IMAGEOPT_WORKER_METRICS_PORT=str(port),
        IMAGEOPT_WORKER_LIVENESS_SECONDS="30",
        IMAGEOPT_WORKER_STALL_SECONDS=str(THRESHOLD_SECONDS),
        IMAGEOPT_FETCH_TIMEOUT_SECONDS="300",
    )
    base = f"http://127.0.0.1:{port}"
    group = ProcessGroup(env=env, log_dir=tmp_path / "logs")
    # A source that accepts connections and never answers: the one worker thread hangs on it.
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/photo.jpg"
        items = _queued_items(pipeline_env["IMAGEOPT_DB_SCHEMA"], url, 8)
        try:
            group.start("worker", "worker", "--queues", "create", "--processes", "1",
                        "--threads", "1")  # fmt: skip
            wait_live(base, 60, "worker group live")
            broker = build_broker(REDIS_URL, pipeline_env["IMAGEOPT_REDIS_NAMESPACE"])
            TaskQueue(broker).send_create(items)  # more than the worker prefetches (2 x 1)
            body = wait_failing(base, THRESHOLD_SECONDS, "worker /livez failing on a stall")
            assert "ready, none handled" in body["problems"][0]
        finally:
            group.stop_all()


class _LoopCapture:
    """ASGI wrapper that remembers the event loop the server runs the app on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)


def test_api_liveness_fails_after_its_event_loop_was_blocked(
    pipeline_env: dict[str, str],
) -> None:
    settings = settings_from({**pipeline_env, "IMAGEOPT_API_LIVENESS_SECONDS": "0.5"})
    capture = _LoopCapture(create_app(settings))
    with serve_asgi_in_thread(
        lambda _root: capture, name="api", graceful_seconds=2, options=uvicorn_options(settings)
    ) as base:
        wait_live(base, 15, "api live")
        assert capture.loop is not None
        capture.loop.call_soon_threadsafe(time.sleep, 2.0)  # a synchronous call on the loop
        time.sleep(0.2)
        assert status(f"{base}/livez") is None  # a blocked loop answers nothing: probe timeout
        response = httpx.get(f"{base}/livez", timeout=10)  # answered once the loop runs again
        assert response.status_code == 503
        assert response.json()["loop_lag_seconds"] > 0.5
        wait_live(base, 15, "api recovers")
