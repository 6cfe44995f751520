"""A real Prometheus scrapes a running pipeline (scheduler and worker processes, the emulator,
real photos) and every expression of the dashboards and alert rules returns data."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from devstack import rows
from devstack.emulator import run_emulator, serve_directory
from devstack.processes import free_port
from devstack.stack import running_stack
from emulator.config import EmulatorConfig
from tests.support.observability import ALERTS, dashboard_queries, load_rules, selectors
from tests.support.prometheus import query, run_prometheus
from tests.support.rows import insert_job, wait_for_status

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "r8_obs-test-token-5c1e"
PHOTOS = [
    "store-food/coffee-cup.png",
    "store-food/kiwi-cutout.webp",
    "store-portraits/portrait-hopper-tiny-exif6.jpg",
    "store-portraits/portrait-cameraman-gray.png",
    "store-fashion/beanie-green.jpg",
    "store-fashion/tshirt-women-rust.webp",
]
PROMETHEUS_DEADLINE_SECONDS = 60.0


@pytest.fixture
def sources(tmp_path: Path, images_dir: Path) -> Iterator[str]:
    """Real photos (and one text file named .jpg) over HTTP."""
    folder = tmp_path / "sources"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(images_dir / name, folder / Path(name).name)
    (folder / "notes.jpg").write_text("not an image\n" * 10)
    with serve_directory(folder) as base:
        yield base


@pytest.fixture
def emulator_url() -> Iterator[str]:
    """An emulator that throttles (3 creations per 2 s) and answers some requests 503, so the
    429 and error series the alerts use exist."""
    config = EmulatorConfig(
        latency_min=0.05, latency_max=0.3, token=TOKEN, create_rpm=3, window_seconds=2.0,
        http_5xx_rate=0.2, rng_seed=5,
    )  # fmt: skip
    with run_emulator(config) as url:
        yield url


def _insert(schema: str, store: str, urls: list[str], *, deferred: bool = False) -> int:
    """Insert a job as docs/UPSTREAM.md says; ``deferred`` items are due only in an hour."""
    later = datetime.now(UTC) + timedelta(hours=1) if deferred else None
    items = [{"source_url": url, "next_attempt_at": later} for url in urls]
    return insert_job(schema, store, items, params={"scale": 2}).job_id


def _counts(statuses: dict[int, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int, int]]:
    """A Prometheus scraping the scheduler's and the workers' ports it yields, with the alert
    rules loaded."""
    scheduler_port, worker_port = free_port(), free_port()
    targets = {"imageopt-scheduler": scheduler_port, "imageopt-workers": worker_port}
    with run_prometheus(tmp_path, targets, [ALERTS]) as url:
        yield url, scheduler_port, worker_port


def _expressions() -> list[tuple[str, str]]:
    """Every dashboard query, and every metric selector of every alert rule, except those on
    the api's metrics (no api runs here: test_api_observability.py checks them against one)."""
    checks = list(dashboard_queries())
    for rule in load_rules():
        for selector in dict.fromkeys(selectors(rule["expr"])):
            checks.append((f"alert {rule['alert']}: {selector}", selector))
    api = ("imageopt_api_", "imageopt-api.json")
    return [(where, expr) for where, expr in checks if not any(a in where + expr for a in api)]


def test_every_dashboard_and_alert_expression_returns_data_from_a_running_pipeline(
    pipeline_env: dict[str, str],
    sources: str,
    emulator_url: str,
    prometheus: tuple[str, int, int],
    tmp_path: Path,
) -> None:
    base, scheduler_port, worker_port = prometheus
    schema = pipeline_env["IMAGEOPT_DB_SCHEMA"]
    env = {
        **pipeline_env,
        "PATH": "/usr/bin:/bin",
        "REPLICATE_BASE_URL": emulator_url,
        "REPLICATE_API_TOKEN": TOKEN,
        "IMAGEOPT_SCHEDULER_METRICS_PORT": str(scheduler_port),
        "IMAGEOPT_WORKER_METRICS_PORT": str(worker_port),
        "IMAGEOPT_METRICS_HOST": "127.0.0.1",
        "IMAGEOPT_METRICS_MULTIPROC_DIR": str(tmp_path / "multiproc"),
        "IMAGEOPT_METRICS_REFRESH_SECONDS": "0.5",
        "IMAGEOPT_RESCUE_INTERVAL_SECONDS": "2",
        "IMAGEOPT_BACKOFF_BASE_SECONDS": "0.2",
        "IMAGEOPT_POLL_INITIAL_DELAY_SECONDS": "0.2",
        "IMAGEOPT_POLL_MAX_DELAY_SECONDS": "1.0",
        "IMAGEOPT_SCHEDULER_TICK_SECONDS": "0.2",
        "IMAGEOPT_LOG_LEVEL": "INFO",
    }
    names = [Path(name).name for name in PHOTOS]
    jobs = [
        _insert(
            schema, "store-obs-a", [f"{sources}/{n}" for n in names[:4]] + [f"{sources}/notes.jpg"]
        ),
        _insert(schema, "store-obs-b", [f"{sources}/{n}" for n in names[4:]]),
    ]
    _insert(schema, "store-obs-later", [f"{sources}/{names[0]}"], deferred=True)
    with running_stack(env, tmp_path / "logs") as stack:
        stack.start_scheduler()
        stack.start_workers(processes=2, threads=4)
        counts = _counts(wait_for_status(schema, job_ids=jobs, timeout=90))
        assert counts.get("DONE", 0) >= len(PHOTOS) - 1, counts
        assert counts.get("FAILED", 0) >= 1, counts

        worker_text = httpx.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=5).text
        assert "dramatiq_messages_total{" in worker_text  # dramatiq's, and ...
        assert "imageopt_item_transitions_total{" in worker_text  # ... ours, in one scrape
        assert 'pid="' not in worker_text  # aggregated over the 2 worker processes

        missing: list[str] = []
        with httpx.Client(timeout=5) as client:

            def all_answered() -> bool:
                nonlocal missing
                missing = [f"{where}: {expr}" for where, expr in _expressions()
                           if not query(client, base, expr)]  # fmt: skip
                return not missing

            with contextlib.suppress(TimeoutError):  # what is still missing is asserted below
                rows.wait_until(all_answered, PROMETHEUS_DEADLINE_SECONDS, "", interval=1.0)
            rules = client.get(f"{base}/api/v1/rules").json()["data"]["groups"]
            labels = set(client.get(f"{base}/api/v1/labels").json()["data"])
            up = query(client, base, 'up{job=~"imageopt-.*"} == 1')

    assert not missing, "expressions without data:\n" + "\n".join(missing)
    unhealthy = [(r["name"], r.get("lastError")) for g in rules for r in g["rules"]
                 if r["health"] != "ok"]  # fmt: skip
    assert not unhealthy
    assert sum(len(g["rules"]) for g in rules) == len(load_rules())
    assert {s["metric"]["job"] for s in up} == {"imageopt-scheduler", "imageopt-workers"}
    assert not labels & {"item_id", "job_id", "prediction_id", "pid"}
