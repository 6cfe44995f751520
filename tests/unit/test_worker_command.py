"""``imageopt worker``: the queues each name stands for, and dramatiq's fetch wait (no process
is started: ``os.execv`` is replaced by a recorder)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.app import app
from pipeline.taskqueue import CREATE_QUEUE, POLL_QUEUE, WEBHOOK_QUEUE

TIMEOUT_VAR = "dramatiq_worker_timeout"
"""dramatiq's own (lower-case) variable for its worker timeout (dramatiq/worker.py)."""


class Exec(Exception):
    """Raised instead of becoming dramatiq's CLI, with what it would have run."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__("execv")
        self.argv = argv
        self.timeout = os.environ.get(TIMEOUT_VAR)


def run_worker(monkeypatch: pytest.MonkeyPatch, *args: str, **env: str) -> Exec:
    def execv(path: str, argv: list[str]) -> Any:
        raise Exec(argv)

    monkeypatch.setattr(os, "execv", execv)
    monkeypatch.setenv("IMAGEOPT_WORKER_METRICS_PORT", "0")
    # the command writes these into os.environ for dramatiq: set first, so they are restored
    monkeypatch.setenv("IMAGEOPT_WORKER_THREADS", os.environ.get("IMAGEOPT_WORKER_THREADS", "8"))
    monkeypatch.setenv(TIMEOUT_VAR, "")
    monkeypatch.delenv(TIMEOUT_VAR)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["worker", *args])
    assert isinstance(result.exception, Exec), result.output
    return result.exception


def queues_of(argv: list[str]) -> list[str]:
    return argv[argv.index("--queues") + 1 :]


@pytest.mark.parametrize(
    ("names", "queues"),
    [
        ("create", [CREATE_QUEUE]),
        ("poll", [POLL_QUEUE, WEBHOOK_QUEUE]),  # polling workers finish webhooks too
        ("webhook", [WEBHOOK_QUEUE]),
        ("create,poll", [CREATE_QUEUE, POLL_QUEUE, WEBHOOK_QUEUE]),
        ("poll,webhook", [POLL_QUEUE, WEBHOOK_QUEUE]),  # each queue once
    ],
)
def test_each_queue_name_runs_its_dramatiq_queues(
    monkeypatch: pytest.MonkeyPatch, names: str, queues: list[str]
) -> None:
    assert queues_of(run_worker(monkeypatch, "--queues", names).argv) == queues


def test_an_unknown_queue_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEOPT_WORKER_METRICS_PORT", "0")
    result = CliRunner().invoke(app, ["worker", "--queues", "poll,webhooks"])
    assert result.exit_code != 0
    assert "--queues must name create, poll and/or webhook" in result.output


def test_dramatiqs_worker_timeout_is_the_idle_fetch_wait_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run_worker(monkeypatch).timeout == "1000"
    # the latency-path queues' shorter pause is the broker's, not dramatiq's timeout
    assert run_worker(monkeypatch, IMAGEOPT_WORKER_FETCH_WAIT_MS="250").timeout == "1000"
    assert run_worker(monkeypatch, IMAGEOPT_WORKER_IDLE_FETCH_WAIT_MS="2500").timeout == "2500"
