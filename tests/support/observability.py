"""What the observability tests share: where the dashboards and rules are, the PromQL they use,
and the metric selectors inside it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
PROVISIONING_DIR = ROOT / "grafana" / "provisioning"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"

GRAFANA_VARIABLES = {
    "$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m",
    "$job": ".*", "$namespace": ".*", "$instance": ".*", "$model": ".*", "$store": ".*",
}  # fmt: skip
"""Grafana's built-in variables (1 s scrapes) and the dashboards' own ones set to "All" (their
``allValue``, grafana/build.py), as a test evaluates them."""

DRAMATIQ_METRICS = frozenset({
    "dramatiq_messages_total",
    "dramatiq_message_errors_total",
    "dramatiq_message_retries_total",
    "dramatiq_message_rejects_total",
    "dramatiq_messages_inprogress",
    "dramatiq_delayed_messages_inprogress",
    "dramatiq_message_duration_milliseconds_bucket",
    "dramatiq_message_duration_milliseconds_sum",
    "dramatiq_message_duration_milliseconds_count",
})  # fmt: skip
"""Series of dramatiq's Prometheus middleware (dramatiq/middleware/prometheus.py, 2.x)."""

PROMETHEUS_METRICS = frozenset({"up"})
"""Series Prometheus itself adds to every scrape that the rules use."""

_KEYWORDS = frozenset({
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "rate", "irate", "increase", "delta", "idelta", "deriv",
    "histogram_quantile", "vector", "scalar", "time", "abs", "ceil", "floor", "round", "clamp",
    "clamp_min", "clamp_max", "absent", "absent_over_time", "max_over_time", "min_over_time",
    "avg_over_time", "sum_over_time", "count_over_time", "last_over_time", "changes", "resets",
    "label_replace", "label_join", "sort", "sort_desc", "timestamp", "and", "or", "unless",
    "offset", "bool", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan",
})  # fmt: skip
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SELECTOR = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def load_dashboards() -> dict[Path, dict[str, Any]]:
    """Every dashboard JSON file, parsed."""
    return {
        path: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """All panels of a dashboard, including those nested in collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    """``(where, expr)`` of every panel query, Grafana variables substituted."""
    queries = []
    for path, dashboard in load_dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                where = f"{path.name}: {panel['title']} [{target['refId']}]"
                queries.append((where, substitute(target["expr"])))
    return queries


def load_rules() -> list[dict[str, Any]]:
    """Every rule of ``alerts.yml``."""
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def substitute(expr: str) -> str:
    """``expr`` with Grafana's built-in variables replaced by fixed values."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def selectors(expr: str) -> list[str]:
    """The metric selectors (name and label matchers) used in a PromQL expression."""
    strings: list[str] = []

    def keep(match: re.Match[str]) -> str:
        strings.append(match.group(0))
        return f"\x00{len(strings) - 1}\x00"

    masked = _STRING.sub(keep, expr)
    masked = _GROUPING.sub(" ", masked)
    found = []
    for match in _SELECTOR.finditer(masked):
        name, matchers = match.group(1), match.group(2) or ""
        if name in _KEYWORDS:
            continue
        restored = re.sub(r"\x00(\d+)\x00", lambda m: strings[int(m.group(1))], matchers)
        found.append(f"{name}{restored}")
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names used in a PromQL expression."""
    return {selector.split("{", 1)[0] for selector in selectors(expr)}


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading (``## Queue backlog`` -> ``queue-backlog``)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    """Anchors of every heading in ``docs/runbooks.md``."""
    return {
        slug(line.lstrip("#"))
        for line in RUNBOOKS.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
