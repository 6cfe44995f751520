"""The api's request metrics, dashboard and alerts on real traffic: labels stay bounded
whatever callers send, and a real Prometheus scraping a running api fires seed 004's
critical and rollback alerts under an injected error rate (Redis gone: throttled routes answer
503) and the database alert when Postgres is cut away (a TCP proxy the test cuts)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from api.http_metrics import METHODS
from devstack.processes import free_port
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api
from tests.support.observability import ALERTS, DASHBOARDS_DIR, panels, selectors, substitute
from tests.support.prometheus import query, run_prometheus, samples
from tests.support.tcp_proxy import tcp_proxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API_GROUP = "imageopt-api"
FIRING_DEADLINE_SECONDS = 90.0


def _samples(text: str, name: str) -> list[dict[str, str]]:
    return [dict(sample.labels) for sample in samples(text, name)]


def test_requests_are_counted_by_route_template_method_and_status_class(
    pipeline_env: dict[str, str],
) -> None:
    with run_api(settings_from(pipeline_env)) as base, httpx.Client(base_url=base) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/ai-image/jobs/918273645").status_code == 401
        assert client.get("/no/such/path/5550123").status_code == 404
        assert client.request("PROPFIND", "/healthz").status_code == 405
        text = client.get("/metrics").text
    counted = _samples(text, "imageopt_api_requests_total")
    seen = {(s["route"], s["method"], s["status_class"]) for s in counted}
    assert ("/healthz", "GET", "2xx") in seen
    assert ("/api/ai-image/jobs/{job_id}", "GET", "4xx") in seen
    assert ("<unmatched>", "GET", "4xx") in seen
    assert ("/healthz", "OTHER", "4xx") in seen
    assert not any("918273645" in s["route"] or "5550123" in s["route"] for s in counted)
    assert {s["method"] for s in counted} <= METHODS | {"OTHER"}
    assert {s["status_class"] for s in counted} <= {"1xx", "2xx", "3xx", "4xx", "5xx"}
    buckets = _samples(text, "imageopt_api_request_duration_seconds_bucket")
    assert {"3.0", "10.0", "15.0"} <= {s["le"] for s in buckets}
    assert _samples(text, "imageopt_api_database_up")


def _rules_for_a_test(path: Path) -> Path:
    """The api's alert group of alerts.yml with each ``for`` shortened to 1 s: the
    expressions are the real ones, only the waiting is left out."""
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    (group,) = [g for g in data["groups"] if g["name"] == API_GROUP]
    for rule in group["rules"]:
        rule["for"] = "1s"
    path.write_text(yaml.safe_dump({"groups": [group]}), encoding="utf-8")
    return path


def _traffic(base: str, stop: threading.Event) -> None:
    """Half the requests fail (503: the throttle's Redis is gone), half succeed."""
    with httpx.Client(base_url=base, timeout=10) as client:
        while not stop.is_set():
            client.get("/api/ai-image/usage")
            client.get("/healthz")
            time.sleep(0.02)


def _firing(client: httpx.Client, base: str) -> set[str]:
    alerts = client.get(f"{base}/api/v1/alerts").json()["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


def _api_dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((DASHBOARDS_DIR / "imageopt-api.json").read_text(encoding="utf-8"))
    return [
        (f"{panel['title']} [{target['refId']}]", substitute(target["expr"]))
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def _wait_for(check: Any, what: str) -> Any:
    deadline = time.monotonic() + FIRING_DEADLINE_SECONDS
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, what
            return result
        time.sleep(1.0)


def test_api_alerts_fire_on_a_real_prometheus_under_injected_faults(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    db = urlsplit(DATABASE_URL)
    with tcp_proxy(db.hostname or "127.0.0.1", db.port or 5432) as proxy:
        env = {
            **pipeline_env,
            "DATABASE_URL": db._replace(netloc=f"{db.username}@127.0.0.1:{proxy.port}").geturl(),
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        }
        stop = threading.Event()
        with (
            run_api(settings_from(env)) as base,
            run_prometheus(
                tmp_path,
                {"imageopt-api": urlsplit(base).port or 0},
                [_rules_for_a_test(tmp_path / "rules.yml")],
            ) as prom,
            httpx.Client(timeout=5) as client,
        ):
            worker = threading.Thread(target=_traffic, args=(base, stop), daemon=True)
            worker.start()
            try:
                errors = {"ImageoptApiErrorRateCritical", "ImageoptApiRollbackErrorRate"}
                _wait_for(lambda: errors <= _firing(client, prom), f"{errors} firing")
                missing = [f"{where}: {expr}" for where, expr in _api_dashboard_queries()
                           if not query(client, prom, expr)]  # fmt: skip
                rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
                (group,) = [g for g in rules if g["name"] == API_GROUP]
                for rule in group["rules"]:
                    missing += [f"alert {rule['alert']}: {s}" for s in selectors(rule["expr"])
                                if not query(client, prom, s)]  # fmt: skip
                assert not missing, "\n".join(missing)

                proxy.cut()  # Postgres is gone for the api
                _wait_for(
                    lambda: "ImageoptApiDatabaseUnreachable" in _firing(client, prom),
                    "ImageoptApiDatabaseUnreachable firing",
                )
                firing = _firing(client, prom)
            finally:
                stop.set()
                worker.join(timeout=15)
    assert "ImageoptApiErrorRateWarning" not in firing  # 50 % is critical, not 1-5 %
    assert not firing & {"ImageoptApiLatencyHigh", "ImageoptApiLatencyCritical",
                         "ImageoptApiRollbackLatency"}  # fmt: skip
