"""The Grafana dashboards as code: ``make dashboards`` writes ``grafana/dashboards/*.json``.

Written with Grafana's own typed SDK (PyPI ``grafana-foundation-sdk``, the release for Grafana
11.6), dev-time only: Grafana loads the generated JSON (``grafana/provisioning``), the runtime
packages never import this. Edit the panels here, run ``make dashboards``, commit both;
``tests/unit/test_dashboards.py`` fails when the committed JSON is not what this file writes.

Every dashboard has the variables ``datasource``, ``job``, ``namespace`` and ``instance`` (two
deployments on one Prometheus are told apart by job and namespace), plus ``model`` and
``store``; :func:`scoped` adds their matchers to every metric selector of every panel query, so
no query can forget one (``model``/``store`` only on the series that carry that label). The
annotations mark submission pauses, deploys (a new ``imageopt_build_info`` version) and firing
imageopt alerts.

Usage: ``python grafana/build.py [--check]``.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE_UID = "imageopt-prometheus"
"""The provisioned Prometheus (grafana/provisioning/datasources/prometheus.yml)."""
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")

SCOPE = 'job=~"$job", namespace=~"$namespace", instance=~"$instance"'
"""Matchers every selector gets: one deployment (job, namespace), optionally one process."""
LABELLED = {
    "model": ("imageopt_item_transitions_total", "imageopt_item_end_to_end_seconds",
              "imageopt_item_stage_seconds"),
    "store": ("imageopt_store_pending_items",),
}  # fmt: skip
"""Series (name prefixes) that carry a ``model`` or ``store`` label (pipeline/metrics.py)."""
_SELECTOR = re.compile(r'(?<![\w:.$"])((?:imageopt|dramatiq)_[\w:]*|up)\b(\{[^}]*\})?')


def scoped(expr: str) -> str:
    """``expr`` with the dashboard's variables as matchers on every imageopt, dramatiq and
    ``up`` selector (``foo{a="b"}`` -> ``foo{job=~"$job", ..., a="b"}``)."""

    def scope(match: re.Match[str]) -> str:
        name, labels = match.group(1), (match.group(2) or "{}")[1:-1]
        matchers = [SCOPE]
        for label, prefixes in LABELLED.items():
            if name.startswith(prefixes):
                matchers.append(f'{label}=~"${label}"')
        if labels.strip():
            matchers.append(labels)
        return f"{name}{{{', '.join(matchers)}}}"

    return _SELECTOR.sub(scope, expr)


# --- panel specifications -------------------------------------------------------------------

Steps = list[tuple[str, float | None]]
Grid = tuple[int, int, int, int]
"""``(x, y, w, h)`` on Grafana's 24-column grid."""


@dataclass(frozen=True)
class Q:
    """One PromQL query (before :func:`scoped`) and its legend."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Row:
    """A row header at grid line ``y``."""

    title: str
    y: int


@dataclass(frozen=True)
class Panel:
    """What every panel has: title, description, place, queries, unit and thresholds."""

    title: str
    description: str
    grid: Grid
    queries: list[Q]
    unit: str | None = None
    decimals: float | None = None
    min: float | None = None
    max: float | None = None
    steps: Steps | None = None


@dataclass(frozen=True)
class Stat(Panel):
    """A single value. ``name_only`` shows the series name (the version);
    ``paused_series`` colours and names the ``paused`` series (0 submitting, 1 PAUSED)."""

    name_only: bool = False
    paused_series: bool = False


@dataclass(frozen=True)
class Series(Panel):
    """A time series (lines from 0 unless ``min`` says otherwise); ``stacked`` areas;
    ``threshold_area`` draws the thresholds as lines and areas."""

    min: float | None = 0
    stacked: bool = False
    threshold_area: bool = False


@dataclass(frozen=True)
class Bars(Panel):
    """Horizontal gradient bars, one per series (top-N lists)."""


Item = Row | Stat | Series | Bars


@dataclass
class _Ids:
    next: int = 1
    used: list[int] = field(default_factory=list)

    def take(self) -> int:
        self.used.append(self.next)
        self.next += 1
        return self.used[-1]


def _thresholds(steps: Steps) -> builders.ThresholdsConfig:
    return (
        builders.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=value, color=color) for color, value in steps])
    )


def _targets(queries: list[Q]) -> list[prometheus.Dataquery]:
    return [
        prometheus.Dataquery()
        .expr(scoped(q.expr))
        .legend_format(q.legend)
        .ref_id(chr(ord("A") + i))
        .range()
        .datasource(DATASOURCE)
        for i, q in enumerate(queries)
    ]


def _common(
    builder: stat.Panel | timeseries.Panel | bargauge.Panel, spec: Panel, ids: _Ids
) -> None:
    x, y, w, h = spec.grid
    builder.id(ids.take()).title(spec.title).description(spec.description)
    builder.datasource(DATASOURCE).grid_pos(models.GridPos(h=h, w=w, x=x, y=y))
    builder.targets(_targets(spec.queries))  # type: ignore[arg-type]
    if spec.unit is not None:
        builder.unit(spec.unit)
    if spec.decimals is not None:
        builder.decimals(spec.decimals)
    if spec.min is not None:
        builder.min(spec.min)
    if spec.max is not None:
        builder.max(spec.max)
    if spec.steps is not None:
        builder.thresholds(_thresholds(spec.steps))


def _last_value() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("")


def _stat(spec: Stat, ids: _Ids) -> stat.Panel:
    panel = stat.Panel()
    _common(panel, spec, ids)
    panel.reduce_options(_last_value()).justify_mode(common.BigValueJustifyMode.AUTO)
    panel.orientation(common.VizOrientation.AUTO)
    if spec.name_only:
        panel.color_mode(common.BigValueColorMode.NONE).graph_mode(common.BigValueGraphMode.NONE)
        panel.text_mode(common.BigValueTextMode.NAME)
    else:
        panel.color_mode(common.BigValueColorMode.VALUE).graph_mode(common.BigValueGraphMode.AREA)
        panel.text_mode(common.BigValueTextMode.AUTO)
    if spec.paused_series:
        paused = models.ThresholdsConfig(
            mode=models.ThresholdsMode.ABSOLUTE,
            steps=[models.Threshold(value=None, color="green"),
                   models.Threshold(value=1, color="orange")],
        )  # fmt: skip
        names = {"0": {"text": "submitting", "index": 0}, "1": {"text": "PAUSED", "index": 1}}
        panel.override_by_name("paused", [
            models.DynamicConfigValue(id_val="thresholds", value=paused),
            models.DynamicConfigValue(id_val="mappings", value=[{"type": "value", "options": names}]),
        ])  # fmt: skip
    return panel


def _series(spec: Series, ids: _Ids) -> timeseries.Panel:
    panel = timeseries.Panel()
    _common(panel, spec, ids)
    panel.draw_style(common.GraphDrawStyle.LINE).line_width(1).show_points(
        common.VisibilityMode.NEVER
    )
    panel.span_nulls(True).fill_opacity(60 if spec.stacked else 10)
    if spec.stacked:
        panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL).group("A"))
    if spec.threshold_area:
        panel.thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.LINE_AND_AREA
            )
        )
    panel.legend(
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )
    panel.tooltip(
        common_builders.VizTooltipOptions()
        .mode(common.TooltipDisplayMode.MULTI)
        .sort(common.SortOrder.DESCENDING)
    )
    return panel


def _bars(spec: Bars, ids: _Ids) -> bargauge.Panel:
    panel = bargauge.Panel()
    _common(panel, spec, ids)
    panel.reduce_options(_last_value()).display_mode(common.BarGaugeDisplayMode.GRADIENT)
    panel.orientation(common.VizOrientation.HORIZONTAL).show_unfilled(True)
    return panel


# --- variables and annotations ---------------------------------------------------------------


def _label_variable(name: str, label: str, query: str) -> builders.QueryVariable:
    """A multi-select variable over a label's values, "All" meaning any (``.*``)."""
    return (
        builders.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(models.VariableOption(selected=True, text="All", value="$__all"))
    )


def variables() -> list[builders.QueryVariable | builders.DatasourceVariable]:
    """datasource, job, namespace, instance, model, store (in the order they filter)."""
    deployment = 'job=~"$job", namespace=~"$namespace"'
    return [
        builders.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(
            models.VariableOption(selected=True, text="imageopt Prometheus", value=DATASOURCE_UID)
        ),
        _label_variable("job", "Job", "label_values(imageopt_build_info, job)"),
        _label_variable(
            "namespace", "Namespace", 'label_values(imageopt_build_info{job=~"$job"}, namespace)'
        ),
        _label_variable(
            "instance", "Instance", f"label_values(imageopt_build_info{{{deployment}}}, instance)"
        ),
        _label_variable(
            "model",
            "Model",
            f"label_values(imageopt_item_transitions_total{{{deployment}}}, model)",
        ),
        _label_variable(
            "store", "Store", f"label_values(imageopt_store_pending_items{{{deployment}}}, store)"
        ),
    ]


ANNOTATIONS = {
    "Submissions paused": (
        "orange",
        'max(imageopt_submissions_paused{job=~"$job", namespace=~"$namespace"}) == 1',
    ),
    "Deploys": (
        "blue",
        'count by (version) (imageopt_build_info{job=~"$job", namespace=~"$namespace"}) unless '
        'count by (version) (imageopt_build_info{job=~"$job", namespace=~"$namespace"} offset 10m)',
    ),
    "Alerts firing": ("red", 'ALERTS{alertstate="firing", alertname=~"Imageopt.*"}'),
}
"""Annotation name -> (colour, PromQL): a pause as a region while the leader reports it, a deploy
when a version appears that was not there 10 minutes before, each firing imageopt alert."""


def annotation_queries() -> list[builders.AnnotationQuery]:
    """Grafana's own annotations and alerts, then :data:`ANNOTATIONS`."""
    built_in = (
        builders.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(models.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
    )
    ours = [
        builders.AnnotationQuery()
        .name(name)
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color(colour)
        .expr(expr)
        for name, (colour, expr) in ANNOTATIONS.items()
    ]
    return [built_in, *ours]


# --- dashboards -------------------------------------------------------------------------------


def build(
    uid: str, title: str, description: str, links: list[tuple[str, str]], items: list[Item]
) -> dict[str, object]:
    """One dashboard as Grafana's JSON model (a dict ready for ``json.dumps``); ``links`` are
    ``(uid, title)`` of the dashboards its header links to (variables and time kept)."""
    ids = _Ids()
    board = (
        builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["imageopt"])
        .timezone("browser")
        .editable()
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .time("now-3h", "now")
        .refresh("30s")
        .annotations(annotation_queries())  # type: ignore[arg-type]
    )
    for link_uid, link_title in links:
        board.link(
            builders.DashboardLink(link_title)
            .type(models.DashboardLinkType.LINK)
            .url(f"/d/{link_uid}")
            .icon("dashboard")
            .include_vars(True)
            .keep_time(True)
        )
    for variable in variables():
        board.with_variable(variable)
    for item in items:
        if isinstance(item, Row):
            row = builders.Row(item.title).grid_pos(models.GridPos(h=1, w=24, x=0, y=item.y))
            board.with_row(row.id(ids.take()))
        elif isinstance(item, Stat):
            board.with_panel(_stat(item, ids))
        elif isinstance(item, Series):
            board.with_panel(_series(item, ids))
        else:
            board.with_panel(_bars(item, ids))
    model: dict[str, object] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return model


def overview_panels() -> list[Item]:
    """The panels of 'imageopt / Overview', top to bottom."""
    return [
        Row("Now", y=0),
        Stat(
            "Throughput",
            "Items reaching DONE per minute (imageopt_item_transitions_total). Seeds' target: 400-450/min at 450 RPM.",
            (0, 1, 3, 4),
            [
                Q(
                    'sum(rate(imageopt_item_transitions_total{to_status="DONE"}[$__rate_interval])) * 60',
                    "DONE / min",
                ),
            ],
            unit="short",
            decimals=1,
        ),
        Stat(
            "Waiting items",
            "Items waiting to be submitted, from Postgres via the scheduler leader. Alerts: > 500 warning, > 1000 critical (runbook: queue-backlog).",
            (3, 1, 3, 4),
            [
                Q(
                    'sum(max by (status) (imageopt_queue_depth{status=~"PENDING|QUEUED"}))',
                    "PENDING + QUEUED",
                ),
            ],
            unit="short",
            steps=[("green", None), ("orange", 500), ("red", 1000)],
        ),
        Stat(
            "Create budget used",
            "Create requests granted in the last window / limit (the seeds' rpmUsagePercent). > 95 % warns; designed to reach ~100 % while a backlog drains.",
            (6, 1, 3, 4),
            [
                Q('max(imageopt_rate_limit_usage_ratio{budget="create"})', "create"),
            ],
            unit="percentunit",
            decimals=1,
            steps=[("green", None), ("orange", 0.95)],
        ),
        Stat(
            "End-to-end p95",
            "95th percentile of insert to DONE (imageopt_item_end_to_end_seconds).",
            (9, 1, 3, 4),
            [
                Q(
                    "histogram_quantile(0.95, sum by (le) (rate(imageopt_item_end_to_end_seconds_bucket[$__rate_interval])))",
                    "p95",
                ),
            ],
            unit="s",
            decimals=1,
        ),
        Stat(
            "Failed (1 h)",
            "Items that became FAILED in the last hour (dead letters; `imageopt retry`).",
            (12, 1, 3, 4),
            [
                Q(
                    'sum(increase(imageopt_item_transitions_total{to_status="FAILED"}[1h]))',
                    "FAILED",
                ),
            ],
            unit="short",
            decimals=0,
            steps=[("green", None), ("orange", 1)],
        ),
        Stat(
            "Stores with pending work",
            "Stores with PENDING items, served round-robin by the scheduler.",
            (15, 1, 3, 4),
            [
                Q("max(imageopt_stores_pending)", "stores"),
            ],
            unit="short",
        ),
        Stat(
            "Scheduler leaders / submissions",
            "Scheduler processes holding the leader lock: must be 1 (runbook: scheduler-no-leader). PAUSED while the leader holds submissions back (imageopt submissions pause or IMAGEOPT_SUBMISSIONS_PAUSED; runbook: submissions-paused).",
            (18, 1, 3, 4),
            [
                Q("sum(imageopt_scheduler_is_leader)", "leaders"),
                Q("max(imageopt_submissions_paused)", "paused"),
            ],
            unit="short",
            steps=[("red", None), ("green", 1), ("red", 2)],
            paused_series=True,
        ),
        Stat(
            "Version",
            "Running imageopt versions (imageopt_build_info); more than one during a rollout.",
            (21, 1, 3, 4),
            [
                Q("max by (version) (imageopt_build_info)", "{{version}}"),
            ],
            name_only=True,
        ),
        Row("Throughput and backlog", y=5),
        Series(
            "Throughput by model and outcome",
            "Items finishing per minute, by model and final status.",
            (0, 6, 12, 8),
            [
                Q(
                    'sum by (model, to_status) (rate(imageopt_item_transitions_total{to_status=~"DONE|FAILED"}[$__rate_interval])) * 60',
                    "{{model}} {{to_status}}",
                ),
            ],
            unit="short",
        ),
        Series(
            "Status distribution",
            "Unfinished items by status (the seeds' `SELECT status, count(*)`), from the scheduler leader.",
            (12, 6, 12, 8),
            [
                Q("max by (status) (imageopt_queue_depth)", "{{status}}"),
            ],
            unit="short",
            stacked=True,
        ),
        Series(
            "Queue depth vs thresholds",
            "Waiting items against the seeds' thresholds: 500 warning, 1000 critical.",
            (0, 14, 12, 8),
            [
                Q(
                    'sum(max by (status) (imageopt_queue_depth{status=~"PENDING|QUEUED"}))',
                    "waiting (PENDING + QUEUED)",
                ),
            ],
            unit="short",
            steps=[("green", None), ("orange", 500), ("red", 1000)],
            threshold_area=True,
        ),
        Series(
            "RPM usage vs budget",
            "Requests per minute granted by the global limiter against each budget (IMAGEOPT_CREATE_RPM, IMAGEOPT_READ_RPM).",
            (12, 14, 12, 8),
            [
                Q(
                    "max by (budget) (imageopt_rate_limit_window_requests * 60 / imageopt_rate_limit_window_seconds)",
                    "{{budget}} used (RPM)",
                ),
                Q(
                    "max by (budget) (imageopt_rate_limit_limit * 60 / imageopt_rate_limit_window_seconds)",
                    "{{budget}} budget (RPM)",
                ),
                Q(
                    "sum by (budget) (rate(imageopt_rate_limit_grants_total[$__rate_interval])) * 60",
                    "{{budget}} granted (rate)",
                ),
            ],
            unit="reqpm",
        ),
        Row("Latency", y=22),
        Series(
            "End-to-end latency (insert to DONE)",
            "P50/P95/P99 of imageopt_item_end_to_end_seconds (seed 004).",
            (0, 23, 12, 8),
            [
                Q(
                    "histogram_quantile(0.5, sum by (le) (rate(imageopt_item_end_to_end_seconds_bucket[$__rate_interval])))",
                    "p50",
                ),
                Q(
                    "histogram_quantile(0.95, sum by (le) (rate(imageopt_item_end_to_end_seconds_bucket[$__rate_interval])))",
                    "p95",
                ),
                Q(
                    "histogram_quantile(0.99, sum by (le) (rate(imageopt_item_end_to_end_seconds_bucket[$__rate_interval])))",
                    "p99",
                ),
            ],
            unit="s",
        ),
        Series(
            "Stage latency p95",
            "P95 per stage: queue_wait (insert to first claim), submission (claim to PROCESSING), provider_run, result_store.",
            (12, 23, 12, 8),
            [
                Q(
                    "histogram_quantile(0.95, sum by (le, stage) (rate(imageopt_item_stage_seconds_bucket[$__rate_interval])))",
                    "{{stage}}",
                ),
            ],
            unit="s",
        ),
        Row("Errors and backlog by store", y=31),
        Series(
            "Errors by code",
            "Item errors per minute by stable error code (docs/LIFECYCLE.md) and what followed: retry, released, failed.",
            (0, 32, 12, 8),
            [
                Q(
                    "sum by (error_code, outcome) (rate(imageopt_item_errors_total[$__rate_interval])) * 60",
                    "{{error_code}} ({{outcome}})",
                ),
            ],
            unit="short",
        ),
        Bars(
            "Backlog by store (top N)",
            "PENDING items of the stores with the largest backlog (IMAGEOPT_METRICS_TOP_STORES).",
            (12, 32, 12, 8),
            [
                Q("max by (store) (imageopt_store_pending_items)", "{{store}}"),
            ],
            unit="short",
        ),
        Series(
            "Rescuer actions",
            "Items recovered by the scheduler's rescuer (lost messages, stale polls, overdue webhooks, dead submitters, expired items).",
            (0, 40, 12, 8),
            [
                Q(
                    "sum by (action) (increase(imageopt_rescuer_actions_total[$__rate_interval]))",
                    "{{action}}",
                ),
            ],
            unit="short",
        ),
        Series(
            "Bytes in and out",
            "Source images and provider outputs read; inputs and results written to object storage.",
            (12, 40, 12, 8),
            [
                Q(
                    "sum by (kind) (rate(imageopt_fetched_bytes_total[$__rate_interval]))",
                    "in: {{kind}}",
                ),
                Q(
                    "sum by (kind) (rate(imageopt_stored_bytes_total[$__rate_interval]))",
                    "stored: {{kind}}",
                ),
            ],
            unit="Bps",
        ),
    ]


def workers_panels() -> list[Item]:
    """The panels of 'imageopt / Workers and provider', top to bottom."""
    return [
        Row("Now", y=0),
        Stat(
            "Messages processed",
            "dramatiq messages processed per second, all actors.",
            (0, 1, 6, 4),
            [
                Q("sum(rate(dramatiq_messages_total[$__rate_interval]))", "messages/s"),
            ],
            unit="short",
            decimals=2,
        ),
        Stat(
            "In progress",
            "Messages being processed right now (dramatiq_messages_inprogress).",
            (6, 1, 6, 4),
            [
                Q("sum(dramatiq_messages_inprogress)", "in progress"),
            ],
            unit="short",
        ),
        Stat(
            "Provider 429s (1 h)",
            "429 answers from the provider in the last hour: should be 0 (runbook: provider-429).",
            (12, 1, 6, 4),
            [
                Q('sum(increase(imageopt_provider_requests_total{status_code="429"}[1h]))', "429"),
            ],
            unit="short",
            decimals=0,
            steps=[("green", None), ("orange", 1)],
        ),
        Stat(
            "Budget paused",
            "1 while a budget is paused after a provider 429 (Retry-After).",
            (18, 1, 6, 4),
            [
                Q("max by (budget) (imageopt_rate_limit_paused)", "{{budget}}"),
            ],
            unit="short",
            steps=[("green", None), ("orange", 1)],
        ),
        Row("dramatiq", y=5),
        Series(
            "Message rate by actor",
            "Messages processed per second by actor (dramatiq's Prometheus middleware).",
            (0, 6, 12, 8),
            [
                Q(
                    "sum by (actor_name) (rate(dramatiq_messages_total[$__rate_interval]))",
                    "{{actor_name}}",
                ),
            ],
            unit="short",
        ),
        Series(
            "Errors, retries and dead letters",
            "Actor exceptions, broker retries and dead-lettered messages per second. Item-level errors are on the overview (Errors by code).",
            (12, 6, 12, 8),
            [
                Q(
                    "sum by (actor_name) (rate(dramatiq_message_errors_total[$__rate_interval]))",
                    "errors {{actor_name}}",
                ),
                Q(
                    "sum by (actor_name) (rate(dramatiq_message_retries_total[$__rate_interval]))",
                    "retries {{actor_name}}",
                ),
                Q(
                    "sum by (actor_name) (rate(dramatiq_message_rejects_total[$__rate_interval]))",
                    "dead-lettered {{actor_name}}",
                ),
            ],
            unit="short",
        ),
        Series(
            "In-progress messages",
            "Messages being processed right now, by actor (at most processes x threads).",
            (0, 14, 12, 8),
            [
                Q(
                    "sum by (actor_name) (dramatiq_messages_inprogress)",
                    "in progress {{actor_name}}",
                ),
            ],
            unit="short",
        ),
        Series(
            "Message duration p95",
            "95th percentile of the time an actor spends on one message.",
            (12, 14, 12, 8),
            [
                Q(
                    "histogram_quantile(0.95, sum by (le, actor_name) (rate(dramatiq_message_duration_milliseconds_bucket[$__rate_interval])))",
                    "{{actor_name}}",
                ),
            ],
            unit="ms",
        ),
        Series(
            "Broker queue length",
            "Messages waiting in each dramatiq queue (ready + delayed), from the scheduler leader.",
            (0, 22, 12, 8),
            [
                Q("max by (queue) (imageopt_broker_messages)", "{{queue}}"),
            ],
            unit="short",
        ),
        Series(
            "Scheduler heartbeat age",
            "Seconds since the scheduler leader's last cycle; above 120 s pages (runbook: scheduler-stalled).",
            (12, 22, 12, 8),
            [
                Q(
                    "time() - max(imageopt_scheduler_last_cycle_timestamp_seconds)",
                    "seconds since the leader's last cycle",
                ),
            ],
            unit="s",
            steps=[("green", None), ("red", 120)],
            threshold_area=True,
        ),
        Row("Provider", y=30),
        Series(
            "Provider requests by endpoint and status",
            "Requests per second to the provider by endpoint and HTTP status (timeout/error: no answer).",
            (0, 31, 12, 8),
            [
                Q(
                    "sum by (endpoint, status_code) (rate(imageopt_provider_requests_total[$__rate_interval]))",
                    "{{endpoint}} {{status_code}}",
                ),
            ],
            unit="reqps",
        ),
        Series(
            "Provider error ratio",
            "Share of provider requests that failed; > 1 % warns, > 5 % pages (seed 004).",
            (12, 31, 12, 8),
            [
                Q(
                    '(sum(rate(imageopt_provider_requests_total{status_code=~"5..|timeout|error"}[$__rate_interval])) or on () vector(0)) / sum(rate(imageopt_provider_requests_total[$__rate_interval]))',
                    "5xx + timeouts + no answer",
                ),
            ],
            unit="percentunit",
            steps=[("green", None), ("orange", 0.01), ("red", 0.05)],
            threshold_area=True,
        ),
        Series(
            "Provider latency p95 by endpoint",
            "P95/P99 provider request latency by endpoint.",
            (0, 39, 12, 8),
            [
                Q(
                    "histogram_quantile(0.95, sum by (le, endpoint) (rate(imageopt_provider_request_seconds_bucket[$__rate_interval])))",
                    "p95 {{endpoint}}",
                ),
                Q(
                    "histogram_quantile(0.99, sum by (le, endpoint) (rate(imageopt_provider_request_seconds_bucket[$__rate_interval])))",
                    "p99 {{endpoint}}",
                ),
            ],
            unit="s",
        ),
        Series(
            "429 pauses",
            "Global pauses of a budget after a provider 429 (for its Retry-After).",
            (12, 39, 12, 8),
            [
                Q(
                    "sum by (budget, reason) (increase(imageopt_rate_limit_pauses_total[$__rate_interval]))",
                    "pauses {{budget}} ({{reason}})",
                ),
                Q("max by (budget) (imageopt_rate_limit_paused)", "paused now {{budget}}"),
            ],
            unit="short",
        ),
        Row("Rate limiter", y=47),
        Series(
            "Grants and waiting callers",
            "Grants per minute, and reservations waiting for their slot (the seeds' queueLength).",
            (0, 48, 12, 8),
            [
                Q(
                    "sum by (budget) (rate(imageopt_rate_limit_grants_total[$__rate_interval])) * 60",
                    "granted/min {{budget}}",
                ),
                Q("max by (budget) (imageopt_rate_limit_waiting)", "waiting {{budget}}"),
            ],
            unit="short",
        ),
        Series(
            "Rate-limit wait p95 and timeouts",
            "How long callers wait for a grant, and acquire calls that gave up.",
            (12, 48, 12, 8),
            [
                Q(
                    "histogram_quantile(0.95, sum by (le, budget) (rate(imageopt_rate_limit_wait_seconds_bucket[$__rate_interval])))",
                    "wait p95 {{budget}}",
                ),
                Q(
                    "sum by (budget) (rate(imageopt_rate_limit_timeouts_total[$__rate_interval]))",
                    "timeouts/s {{budget}}",
                ),
            ],
            unit="s",
        ),
        Series(
            "Scrape targets up",
            "1 when Prometheus can scrape the process (runbook: target-down).",
            (0, 56, 24, 6),
            [
                Q('up{job=~"imageopt-.*"}', "{{job}} {{instance}}"),
            ],
            unit="short",
        ),
    ]


API_TIMED_ROUTES = 'route!~"/api/ai-image/generate|.*/events"'
"""The routes whose latency counts against the KPIs: not the synchronous generate nor the event
streams, which wait on purpose (alerts.yml, group imageopt-api)."""
API_5XX_RATIO = (
    'sum(rate(imageopt_api_requests_total{status_class="5xx"}[$__rate_interval]))'
    " / sum(rate(imageopt_api_requests_total[$__rate_interval]))"
)


def _api_latency(quantile: float) -> str:
    return (
        f"histogram_quantile({quantile}, sum by (le) (rate("
        f"imageopt_api_request_duration_seconds_bucket{{{API_TIMED_ROUTES}}}[$__rate_interval])))"
    )


def api_panels() -> list[Item]:
    """The panels of 'imageopt / API', top to bottom. Thresholds are seed 004's KPIs and the
    alert tiers of alerts.yml (group imageopt-api)."""
    return [
        Row("API (seed 004 KPIs: P95 < 3 s, 5xx < 1 %)", y=0),
        Stat(
            "Requests",
            "Requests per second the api answered, all routes.",
            (0, 1, 6, 4),
            [Q("sum(rate(imageopt_api_requests_total[$__rate_interval]))", "req/s")],
            unit="reqps",
            decimals=2,
            steps=[("green", None)],
        ),
        Stat(
            "5xx ratio",
            "Share of requests answered 5xx. Warning above 1 %, critical above 5 %, rollback above 10 % for 5 min (alerts.yml, imageopt-api).",
            (6, 1, 6, 4),
            [Q(API_5XX_RATIO, "5xx")],
            unit="percentunit",
            decimals=2,
            steps=[("green", None), ("orange", 0.01), ("red", 0.05)],
        ),
        Stat(
            "P95 latency",
            "95th percentile time to first byte, without the synchronous generate and event streams (they wait on purpose). Warning above 3 s, critical above 10 s.",
            (12, 1, 6, 4),
            [Q(_api_latency(0.95), "P95")],
            unit="s",
            decimals=2,
            steps=[("green", None), ("orange", 3), ("red", 10)],
        ),
        Stat(
            "Database reachable",
            "Lowest imageopt_api_database_up over the api replicas: 0 = a replica cannot reach Postgres (critical after 2 min when none can).",
            (18, 1, 6, 4),
            [Q("min(imageopt_api_database_up)", "up")],
            unit="short",
            decimals=0,
            steps=[("red", None), ("green", 1)],
        ),
        Series(
            "Requests by route and status class",
            "Requests per second by route template and status class.",
            (0, 5, 12, 8),
            [
                Q(
                    "sum by (route, status_class) (rate(imageopt_api_requests_total[$__rate_interval]))",
                    "{{route}} {{status_class}}",
                ),
            ],
            unit="reqps",
        ),
        Series(
            "5xx ratio vs thresholds",
            "Share of 5xx answers against seed 004's tiers (1 % warning, 5 % critical, 10 % rollback).",
            (12, 5, 12, 8),
            [Q(API_5XX_RATIO, "5xx ratio")],
            unit="percentunit",
            steps=[("green", None), ("orange", 0.01), ("red", 0.05), ("purple", 0.10)],
            threshold_area=True,
        ),
        Series(
            "Latency P50 / P95 / P99",
            "Time to first byte over the routes that answer at once (3 s warning, 10 s critical, 15 s rollback).",
            (0, 13, 12, 8),
            [
                Q(_api_latency(0.5), "P50"),
                Q(_api_latency(0.95), "P95"),
                Q(_api_latency(0.99), "P99"),
            ],
            unit="s",
            steps=[("green", None), ("orange", 3), ("red", 10), ("purple", 15)],
            threshold_area=True,
        ),
        Series(
            "P95 by route",
            "95th percentile time to first byte per route template (the synchronous generate included: it waits up to IMAGEOPT_API_GENERATE_WAIT_SECONDS).",
            (12, 13, 12, 8),
            [
                Q(
                    "histogram_quantile(0.95, sum by (route, le) (rate(imageopt_api_request_duration_seconds_bucket[$__rate_interval])))",
                    "{{route}}",
                ),
            ],
            unit="s",
        ),
        Series(
            "Custom preset writes by action",
            "Custom presets created, updated and deleted through the API per minute (imageopt_custom_presets_total; refused writes not counted).",
            (0, 21, 12, 8),
            [
                Q(
                    "sum by (action) (rate(imageopt_custom_presets_total[$__rate_interval])) * 60",
                    "{{action}}",
                ),
            ],
            unit="short",
        ),
        Series(
            "Console sign-ins by outcome",
            "Sign-ins with a key per minute, store console and operator console, by outcome (imageopt_api_sign_ins_total: ok; refused, not a live key; limited, over the address's sign-in limit). Rising refused or limited: someone guessing, or a script with a stale key.",
            (12, 21, 12, 8),
            [
                Q(
                    "sum by (console, outcome) (rate(imageopt_api_sign_ins_total[$__rate_interval])) * 60",
                    "{{console}} {{outcome}}",
                ),
            ],
            unit="short",
        ),
    ]


DASHBOARDS = {
    "imageopt-overview": (
        "imageopt / Overview",
        "Throughput, status distribution, queue depth vs thresholds, RPM usage vs budget, "
        "latency, errors, backlog by store.",
        overview_panels,
    ),
    "imageopt-workers": (
        "imageopt / Workers and provider",
        "dramatiq message rates, retries and in-progress; provider status codes and latency; "
        "rate-limit grants, waits and 429 pauses.",
        workers_panels,
    ),
    "imageopt-api": (
        "imageopt / API",
        "The api's requests by route, method and status class; 5xx ratio and latency against "
        "seed 004's KPIs and alert tiers; Postgres reachability.",
        api_panels,
    ),
}
"""uid -> (title, description, panels); each dashboard links to the others."""


def render() -> dict[Path, str]:
    """Every dashboard file's path and text."""
    files = {}
    for uid, (title, description, panels) in DASHBOARDS.items():
        links = [
            (other, spec[0].removeprefix("imageopt / "))
            for other, spec in DASHBOARDS.items()
            if other != uid
        ]
        model = build(uid, title, description, links, panels())
        files[DASHBOARDS_DIR / f"{uid}.json"] = json.dumps(model, indent=2) + "\n"
    return files


def main(argv: list[str]) -> int:
    """Write the dashboards, or with ``--check`` exit 1 when a committed one is not current or
    a JSON file in ``grafana/dashboards`` is not one this file writes (Grafana would load it
    unscoped by the variables)."""
    stale = []
    files = render()
    for path, text in files.items():
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if "--check" in argv:
        foreign = sorted(p.name for p in DASHBOARDS_DIR.glob("*.json") if p not in files)
        if foreign:
            print(f"not written by grafana/build.py: {', '.join(foreign)}", file=sys.stderr)
            return 1
    if stale:
        print(f"not current: {', '.join(stale)}; run `make dashboards`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
