"""Pausing submissions while the pipeline runs (``imageopt submissions pause|resume|status``):
the CLI, run as a process of its own as an operator would, sets the switch in the real
Postgres; a running scheduler leader (real Postgres and Redis, in a thread) stops and resumes
metering without a restart, and its gauge follows."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import MutableMapping, Sequence
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from pipeline import metrics
from pipeline.controls import PauseState, pause_state
from tests.conftest import DATABASE_URL
from tests.integration.test_scheduling_loop import insert_item, run_scheduler, wait_status
from tests.support.cycles import wait_cycles
from tests.support.rows import connect, item_statuses, wait_until

pytestmark = pytest.mark.integration


def _status(schema: str, item_id: int) -> str:
    with connect(schema) as conn:
        return item_statuses(conn, item_ids=[item_id])[item_id]


def _imageopt(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _paused_gauge() -> float | None:
    for family in metrics.SCHEDULER.collect():
        if family.name == "imageopt_submissions_paused":
            return float(family.samples[0].value)
    return None


def _wait_for_event(
    logs: Sequence[MutableMapping[str, Any]], event: str, timeout: float
) -> MutableMapping[str, Any]:
    return wait_until(
        lambda: next((entry for entry in logs if entry["event"] == event), None),
        timeout,
        f"no {event!r} log",
        interval=0.02,
    )


def test_the_switch_pauses_and_resumes_a_running_leader_without_a_restart(
    pipeline_env: dict[str, str], db_schema: str, redis_namespace: str
) -> None:
    # A 5 s tick and a 60 s re-read: only the NOTIFY that the switch sends can make the
    # leader see a change within the waits below.
    with (
        capture_logs() as logs,
        run_scheduler(db_schema, redis_namespace, tick=5.0, control_interval=60.0) as scheduler,
    ):
        first = insert_item(db_schema)
        wait_status(db_schema, first, "QUEUED", timeout=5)
        assert _paused_gauge() == 0.0
        assert _imageopt(pipeline_env, "submissions", "status").returncode == 0

        paused = _imageopt(pipeline_env, "submissions", "pause", "--reason", "provider incident")
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout.startswith("submissions paused since ")
        assert paused.stdout.rstrip().endswith(": provider incident")
        seen = _wait_for_event(logs, "submissions_paused", timeout=2)
        held = insert_item(db_schema)
        wait_cycles(scheduler, 2, db_schema)  # the leader has looked at the item, and held it
        held_status = _status(db_schema, held)
        gauge_while_paused = _paused_gauge()
        again = _imageopt(pipeline_env, "submissions", "pause", "--reason", "other")
        status = _imageopt(pipeline_env, "submissions", "status")

        resumed = _imageopt(pipeline_env, "submissions", "resume")
        assert resumed.returncode == 0, resumed.stderr
        waited = wait_status(db_schema, held, "QUEUED", timeout=3)
        gauge_after = _paused_gauge()

    assert (seen["source"], seen["reason"]) == ("switch", "provider incident")
    assert "@" in seen["changed_by"]  # user@host of whoever ran the CLI
    assert held_status == "PENDING"
    assert gauge_while_paused == 1.0
    assert again.returncode == 0
    assert again.stdout.startswith("submissions already paused")
    assert again.stdout.rstrip().endswith(": provider incident")  # the first reason stays
    assert status.returncode == 3
    assert status.stdout.startswith("submissions paused since ")
    assert waited < 3
    assert gauge_after == 0.0
    assert [e["event"] for e in logs if e["event"].startswith("submissions_")] == [
        "submissions_paused",
        "submissions_resumed",
    ]
    assert _imageopt(pipeline_env, "submissions", "status").returncode == 0


def test_a_switch_changed_without_a_notify_is_read_within_the_interval(
    db_schema: str, redis_namespace: str
) -> None:
    """A row written by hand (no NOTIFY) still takes effect: the leader re-reads it."""
    with (
        capture_logs() as logs,
        run_scheduler(db_schema, redis_namespace, tick=0.1, control_interval=0.3) as scheduler,
    ):
        with psycopg.connect(DATABASE_URL, options=f"-c search_path={db_schema}") as conn:
            conn.execute(
                "INSERT INTO image_optimization_controls (name, enabled) "
                "VALUES ('submissions_paused', true)"
            )
        _wait_for_event(logs, "submissions_paused", timeout=2)
        held = insert_item(db_schema)
        wait_cycles(scheduler, 2, db_schema)
        held_status = _status(db_schema, held)
    assert held_status == "PENDING"


def test_the_setting_or_the_switch_pauses() -> None:
    on = {"enabled": True, "reason": "r", "changed_by": "ops@host", "changed_at": None}
    off = {**on, "enabled": False}
    assert pause_state(False, None) == PauseState(False)
    assert pause_state(False, off) == PauseState(False)
    assert pause_state(True, None) == PauseState(True, "setting")
    assert pause_state(True, off) == PauseState(True, "setting")
    assert pause_state(False, on) == PauseState(True, "switch", "r", "ops@host")
    assert pause_state(True, on).source == "switch"  # the switch's reason is the one to show
