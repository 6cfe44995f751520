"""The Grafana dashboards and provisioning files are well formed, and every query uses only
metrics the code exports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.core import Metric

from api import http_metrics  # noqa: F401 - registers the api's metrics
from pipeline import metrics
from tests.support.observability import (
    DRAMATIQ_METRICS,
    PROMETHEUS_METRICS,
    PROVISIONING_DIR,
    load_dashboards,
    load_rules,
    metric_names,
    panels,
    selectors,
)

DASHBOARDS = load_dashboards()


class _Stats:
    budget, limit, window_seconds, granted_in_window, waiting = "create", 450, 60.0, 10, 0
    usage_percent, paused_until, now = 2.0, None, 0.0


class _Limiter:
    def stats(self) -> _Stats:
        return _Stats()


def _sample_names(families: list[Metric]) -> set[str]:
    names = set()
    for family in families:
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
        else:
            names.add(family.name)
    return names


def exported_names() -> set[str]:
    """Every series name the pipeline's processes export, plus dramatiq's and Prometheus'."""
    scheduler = metrics.SchedulerCollector()
    scheduler.set_leader(True)
    scheduler.beat()
    scheduler.update(metrics.BacklogSnapshot({"PENDING": 1}, 1, [("s", 1)], {"q": 0}))
    families = [
        *REGISTRY.collect(),
        *scheduler.collect(),
        *metrics.LimiterCollector([_Limiter()]).collect(),
    ]
    return _sample_names(families) | DRAMATIQ_METRICS | PROMETHEUS_METRICS


def _datasource_uid() -> str:
    data = yaml.safe_load((PROVISIONING_DIR / "datasources" / "prometheus.yml").read_text())
    (source,) = data["datasources"]
    assert source["type"] == "prometheus"
    return str(source["uid"])


def test_there_are_overview_workers_and_api_dashboards_with_unique_uids() -> None:
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert sorted(uids) == ["imageopt-api", "imageopt-overview", "imageopt-workers"]
    assert all(d["title"] and d["schemaVersion"] for d in DASHBOARDS.values())


@pytest.mark.parametrize("path", list(DASHBOARDS), ids=lambda p: Path(p).name)
def test_panel_ids_are_unique_and_panels_fit_the_grid_without_overlap(path: Path) -> None:
    found = panels(DASHBOARDS[path])
    ids = [p["id"] for p in found]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in found:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert 0 < pos["w"] <= 24 - pos["x"], panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


@pytest.mark.parametrize("path", list(DASHBOARDS), ids=lambda p: Path(p).name)
def test_every_datasource_reference_resolves_to_the_provisioned_prometheus(path: Path) -> None:
    dashboard = DASHBOARDS[path]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    uid = _datasource_uid()
    choice = variables["datasource"]
    assert (choice["type"], choice["query"]) == ("datasource", "prometheus")
    assert choice["current"]["value"] == uid

    def resolves(ref: dict[str, Any]) -> bool:
        if ref.get("type") != "prometheus":
            return False
        value = str(ref.get("uid"))
        return value == uid or value.strip("${}") in variables

    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert resolves(panel["datasource"]), panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert resolves(target["datasource"]), panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_dashboard_links_point_at_existing_dashboards() -> None:
    uids = {d["uid"] for d in DASHBOARDS.values()}
    for dashboard in DASHBOARDS.values():
        for link in dashboard.get("links", []):
            assert link["url"].removeprefix("/d/") in uids


def test_every_query_and_alert_uses_only_metrics_the_code_exports() -> None:
    known = exported_names()
    used: dict[str, set[str]] = {}
    for path, dashboard in DASHBOARDS.items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                for name in metric_names(target["expr"]):
                    used.setdefault(name, set()).add(f"{path.name}: {panel['title']}")
    for rule in load_rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")
    unknown = {name: where for name, where in used.items() if name not in known}
    assert not unknown


def test_the_overview_shows_what_ops_watch() -> None:
    overview = next(d for d in DASHBOARDS.values() if d["uid"] == "imageopt-overview")
    titles = {p["title"] for p in panels(overview)}
    expected = {"Throughput by model and outcome", "Status distribution",
                "Queue depth vs thresholds", "RPM usage vs budget",
                "End-to-end latency (insert to DONE)", "Errors by code",
                "Backlog by store (top N)"}  # fmt: skip
    assert expected <= titles


def test_the_dashboards_provider_loads_files_into_an_imageopt_folder() -> None:
    data = yaml.safe_load((PROVISIONING_DIR / "dashboards" / "imageopt.yml").read_text())
    (provider,) = data["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "imageopt"
    assert provider["options"]["path"]


# ----------------------------------------------------------------------------- dashboards as code

BUILD = PROVISIONING_DIR.parent / "build.py"
SCOPE_LABELS = ("job", "namespace", "instance")


def test_the_committed_dashboards_are_what_grafana_build_py_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(BUILD), "--check"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", list(DASHBOARDS), ids=lambda p: Path(p).name)
def test_every_dashboard_offers_deployment_process_model_and_store_variables(path: Path) -> None:
    variables = {v["name"]: v for v in DASHBOARDS[path]["templating"]["list"]}
    assert list(variables) == ["datasource", *SCOPE_LABELS, "model", "store"]
    for name in (*SCOPE_LABELS, "model", "store"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == "${datasource}"
        assert variable["includeAll"] is True
        assert variable["allValue"] == ".*"
        assert f", {name})" in variable["query"]  # label_values(..., name)


@pytest.mark.parametrize("path", list(DASHBOARDS), ids=lambda p: Path(p).name)
def test_every_selector_of_every_panel_query_is_scoped_by_the_variables(path: Path) -> None:
    per_label = {"model": "imageopt_item_", "store": "imageopt_store_pending_items"}
    for panel in panels(DASHBOARDS[path]):
        for target in panel.get("targets", []):
            found = selectors(target["expr"])
            assert found, panel["title"]
            for selector in found:
                for label in SCOPE_LABELS:
                    assert f'{label}=~"${label}"' in selector, (panel["title"], selector)
                for label, prefix in per_label.items():
                    carries = selector.startswith(prefix) and not selector.startswith(
                        "imageopt_item_errors"
                    )
                    assert (f'{label}=~"${label}"' in selector) == carries, selector


def test_scoping_keeps_a_query_s_own_matchers_and_skips_strings() -> None:
    from grafana.build import scoped  # type: ignore[import-not-found]  # dev-time tool

    expr = 'sum by (model) (rate(imageopt_item_transitions_total{to_status="DONE"}[5m]))'
    assert scoped(expr) == (
        'sum by (model) (rate(imageopt_item_transitions_total{job=~"$job", '
        'namespace=~"$namespace", instance=~"$instance", model=~"$model", to_status="DONE"}[5m]))'
    )
    assert scoped('up{job=~"imageopt-.*"} == 1').startswith('up{job=~"$job"')
    assert scoped('label_replace(vector(1), "x", "imageopt_a", "", "")') == (
        'label_replace(vector(1), "x", "imageopt_a", "", "")'
    )


@pytest.mark.parametrize("path", list(DASHBOARDS), ids=lambda p: Path(p).name)
def test_annotations_mark_pauses_deploys_and_firing_alerts(path: Path) -> None:
    found = {a["name"]: a for a in DASHBOARDS[path]["annotations"]["list"]}
    assert {"Submissions paused", "Deploys", "Alerts firing"} <= set(found)
    assert "imageopt_submissions_paused" in found["Submissions paused"]["expr"]
    assert "imageopt_build_info" in found["Deploys"]["expr"]
    assert 'alertstate="firing"' in found["Alerts firing"]["expr"]
    for name in ("Submissions paused", "Deploys"):
        assert 'job=~"$job"' in found[name]["expr"]
