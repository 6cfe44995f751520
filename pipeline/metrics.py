"""Every Prometheus metric of the pipeline (the rate limiter's own live in
:mod:`pipeline.ratelimit.metrics`), with small helpers that keep label values bounded.

Naming follows Prometheus' conventions: ``imageopt_`` prefix, base units (seconds, bytes, ratios
0..1), ``_total`` on counters. No label carries an item, job or prediction id: ``model`` is an
allowlisted model (anything else becomes ``other``), ``error_code`` a stable code of
:mod:`pipeline.errors`, ``store`` appears only on the top-N backlog gauge
(``IMAGEOPT_METRICS_TOP_STORES``).

Processes and how their metrics are served (see ``docs/OBSERVABILITY.md``):

* dramatiq workers run in prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``,
  set by ``imageopt worker`` before dramatiq starts); one exposition server per worker group
  serves ours and dramatiq's together (:mod:`pipeline.metrics_server`);
* the scheduler serves the default registry, plus two collectors read at scrape time:
  :class:`LimiterCollector` (budget, usage, waiting, pause per budget, from Redis) and
  :class:`BacklogCollector` (queue depth by status, stores with pending work, top-N stores and
  broker queue lengths, from the leader's last snapshot);
* the api renders whatever its process holds with :func:`render_latest`.

Size: every metric definition of every process kind in one place (so names, labels and
buckets are reviewed together and the dashboards have one source), plus the two scrape-time
collectors.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from pipeline.allowlist import build_allowlist
from pipeline.errors import PipelineError
from pipeline.ratelimit import metrics as limiter_metrics
from pipeline.statuses import ItemStatus
from pipeline.version import package_version

log = structlog.get_logger(__name__)

# --- label hygiene ---------------------------------------------------------------------------

KNOWN_MODELS = frozenset(build_allowlist())
"""Models that may appear as a ``model`` label value; anything else is ``other``."""

_CODE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")

STAGES = ("queue_wait", "submission", "provider_run", "result_store")
"""Per-stage latency stages, in the order an item goes through them."""

RESCUER_ACTIONS = ("requeued", "repolled", "adopted", "resubmitted", "expired", "webhook_overdue")
"""Recovery actions of :class:`scheduler.rescuer.Rescuer` (its ``RescueResult`` fields)."""


def model_label(name: object) -> str:
    """``name`` if it is an allowlisted model, else ``other`` (bounds the label's values)."""
    return name if isinstance(name, str) and name in KNOWN_MODELS else "other"


def code_label(code: object) -> str:
    """A stable error code as a label value (``other`` when it does not look like one)."""
    return code if isinstance(code, str) and _CODE.match(code) else "other"


# --- buckets -----------------------------------------------------------------------------------

LATENCY_BUCKETS = (
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
)
"""End-to-end seconds: a lone item takes seconds; a 50,000-item backlog at 450 RPM ~2 h."""

STAGE_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
)
"""Stage seconds: from a fast upload (tens of ms) to a queue wait behind a large backlog."""

HTTP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Provider request seconds (Replicate answers in ~0.1-1 s; the client timeout is 30 s)."""

# --- items -----------------------------------------------------------------------------------

ITEM_TRANSITIONS = Counter(
    "imageopt_item_transitions_total",
    "Item status changes made by the pipeline, by model; to_status DONE/FAILED are outcomes.",
    ["model", "from_status", "to_status"],
)

ITEM_ERRORS = Counter(
    "imageopt_item_errors_total",
    "Errors met while working on an item, by stage, stable error code and what followed "
    "(retry, failed, released).",
    ["stage", "error_code", "outcome"],
)

END_TO_END_SECONDS = Histogram(
    "imageopt_item_end_to_end_seconds",
    "Seconds from an item's insert (created_at) to DONE.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)

STAGE_SECONDS = Histogram(
    "imageopt_item_stage_seconds",
    "Seconds an item spent in one stage: queue_wait (insert to a worker's first claim), "
    "submission (claim to PROCESSING), provider_run (prediction created to finished), "
    "result_store (download, check and upload of the output to DONE).",
    ["stage", "model"],
    buckets=STAGE_BUCKETS,
)

# --- provider --------------------------------------------------------------------------------

PROVIDER_REQUESTS = Counter(
    "imageopt_provider_requests_total",
    "HTTP requests to the provider by endpoint and status code (timeout/error when no answer).",
    ["endpoint", "status_code"],
)

PROVIDER_REQUEST_SECONDS = Histogram(
    "imageopt_provider_request_seconds",
    "Seconds per provider request (until the answer's headers, or the download's last byte).",
    ["endpoint"],
    buckets=HTTP_BUCKETS,
)

# --- bytes -----------------------------------------------------------------------------------

FETCHED_BYTES = Counter(
    "imageopt_fetched_bytes_total",
    "Bytes read in: source images (source_http, source_s3) and provider outputs (provider_output).",
    ["kind"],
)

STORED_BYTES = Counter(
    "imageopt_stored_bytes_total",
    "Bytes written to object storage: normalized inputs (input) and results (result).",
    ["kind"],
)

# --- scheduler (its unlabelled gauges live in SchedulerCollector, so that worker processes
# never export a stray scheduler series) ---------------------------------------------------

RESCUER_ACTIONS_TOTAL = Counter(
    "imageopt_rescuer_actions_total",
    "Items the rescuer recovered, by action (requeued, repolled, adopted, resubmitted, expired,"
    " webhook_overdue).",
    ["action"],
)

BUILD_INFO = Gauge(
    "imageopt_build_info",
    "Always 1; labels carry the running version of imageopt and Python.",
    ["version", "python_version"],
    multiprocess_mode="max",
)


BUILD_INFO.labels(version=package_version(), python_version=platform.python_version()).set(1)

# --- recording helpers (called by the services) ---------------------------------------------


def transition(model: object, from_status: str, to_status: str, count: int = 1) -> None:
    """Count ``count`` items moved from ``from_status`` to ``to_status``."""
    if count > 0:
        ITEM_TRANSITIONS.labels(model_label(model), from_status, to_status).inc(count)


def item_error(stage: str, code: object, outcome: str) -> None:
    """Count one error of an item at ``stage`` (creation, polling, validation)."""
    ITEM_ERRORS.labels(stage, code_label(code), outcome).inc()


def observe_stage(stage: str, model: object, seconds: float) -> None:
    """Record ``seconds`` spent in ``stage`` (negative values from clock skew count as 0)."""
    STAGE_SECONDS.labels(stage, model_label(model)).observe(max(0.0, seconds))


def seconds_since(then: object, now: datetime | None = None) -> float | None:
    """Seconds from a database timestamp to now (local clock, UTC); None if not a datetime.

    Database timestamps come from Postgres' clock: keep hosts NTP-synchronized.
    """
    if not isinstance(then, datetime):
        return None
    when = then if then.tzinfo else then.replace(tzinfo=UTC)
    return max(0.0, ((now or datetime.now(UTC)) - when).total_seconds())


class _PredictionTimes(Protocol):
    @property
    def runtime_seconds(self) -> float | None: ...


def provider_run_seconds(prediction: _PredictionTimes, submitted_at: object) -> float | None:
    """How long the provider took: its own ``completed_at - created_at`` when it reports both
    (Replicate does) and they are in order (:attr:`pipeline.provider.Prediction.runtime_seconds`),
    else the time since we submitted (``submitted_at``, Postgres' clock)."""
    run = prediction.runtime_seconds
    return run if run is not None else seconds_since(submitted_at)


def item_done(
    model: object,
    created_at: object,
    submitted_at: object,
    prediction: _PredictionTimes,
    store_seconds: float,
) -> None:
    """Record an item that reached DONE: its transition, end-to-end and last two stages.

    Args:
        model: the item's model.
        created_at: the item's insert time (Postgres).
        submitted_at: when the prediction was recorded (Postgres).
        prediction: the succeeded prediction (its provider timestamps).
        store_seconds: download, check and upload of the output up to DONE, seconds.
    """
    transition(model, ItemStatus.PROCESSING, ItemStatus.DONE)
    elapsed = seconds_since(created_at)
    if elapsed is not None:
        END_TO_END_SECONDS.labels(model_label(model)).observe(elapsed)
    run = provider_run_seconds(prediction, submitted_at)
    if run is not None:
        observe_stage("provider_run", model, run)
    observe_stage("result_store", model, store_seconds)


def metered(
    models: Mapping[int, str],
    queued: Iterable[int],
    invalid: Iterable[tuple[int, str]],
    failed: Iterable[int],
) -> None:
    """Record a metering pass: PENDING -> QUEUED, and PENDING -> FAILED by validation.

    Args:
        models: the model of each selected item, by item id.
        queued: ids this pass moved to QUEUED.
        invalid: ``(id, error_code)`` of items that failed validation.
        failed: ids this pass moved to FAILED.
    """
    for item_id in queued:
        transition(models.get(int(item_id)), ItemStatus.PENDING, ItemStatus.QUEUED)
    for item_id in failed:
        transition(models.get(int(item_id)), ItemStatus.PENDING, ItemStatus.FAILED)
    for _, code in invalid:
        item_error("validation", code, "failed")


_CREATION_TARGETS = {
    "submitted": ItemStatus.PROCESSING,
    "released": ItemStatus.PENDING,
    "retry": ItemStatus.PENDING,
    "failed": ItemStatus.FAILED,
}
"""Where a creation outcome leaves the item (``unknown`` stays SUBMITTING for the rescuer)."""


def creation_started(model: object, attempt: int, created_at: object) -> None:
    """A worker claimed an item (QUEUED -> SUBMITTING); the first claim ends its queue wait."""
    transition(model, ItemStatus.QUEUED, ItemStatus.SUBMITTING)
    if attempt == 1:
        waited = seconds_since(created_at)
        if waited is not None:
            observe_stage("queue_wait", model, waited)


def creation_finished(model: object, action: str, error_code: str | None, seconds: float) -> None:
    """Record how a creation run ended (see :class:`workers.creation.CreationOutcome`).

    Args:
        model: the item's model.
        action: the outcome's action.
        error_code: the error that caused a retry, release, failure or unknown outcome.
        seconds: time from the claim to the outcome.
    """
    target = _CREATION_TARGETS.get(action)
    if target is not None:
        transition(model, ItemStatus.SUBMITTING, target)
    if action == "submitted":
        observe_stage("submission", model, seconds)
    elif error_code is not None:
        item_error("creation", error_code, action)


def provider_request(endpoint: str, status_code: int | str, seconds: float) -> None:
    """Record one provider request (``status_code``: HTTP status, ``timeout`` or ``error``)."""
    PROVIDER_REQUESTS.labels(endpoint, str(status_code)).inc()
    PROVIDER_REQUEST_SECONDS.labels(endpoint).observe(max(0.0, seconds))


def record_rescue(result: object) -> None:
    """Count a rescuer pass from its result dataclass (one counter per integer field)."""
    if not dataclasses.is_dataclass(result) or isinstance(result, type):
        return
    for item in dataclasses.fields(result):
        value = getattr(result, item.name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            RESCUER_ACTIONS_TOTAL.labels(item.name).inc(value)


def initialize_scheduler_series() -> None:
    """Create the scheduler's labelled series at 0 so rates and alerts see them from start."""
    for action in RESCUER_ACTIONS:
        RESCUER_ACTIONS_TOTAL.labels(action)


def initialize_worker_series(budgets: Iterable[str] = ("create", "read")) -> None:
    """Create the workers' labelled series at 0 (rate-limit pauses, timeouts, grants)."""
    for budget in budgets:
        limiter_metrics.GRANTS.labels(budget)
        limiter_metrics.TIMEOUTS.labels(budget)
        limiter_metrics.PAUSES.labels(budget, "provider_429")


# --- scrape-time collectors (scheduler, api) --------------------------------------------------


class _StatsSource(Protocol):
    """What :class:`LimiterCollector` needs of a :class:`pipeline.ratelimit.RateLimiter`."""

    def stats(self) -> Any: ...


class LimiterCollector(Collector):
    """Gauges of each budget read from Redis at scrape time (``RateLimiter.stats()``).

    Several processes may export them (every scheduler, the api): they all read the same
    Redis state, so queries aggregate with ``max by (budget)``.

    Args:
        limiters: the account's limiters (``create`` and ``read``).
    """

    def __init__(self, limiters: Sequence[_StatsSource]) -> None:
        self._limiters = list(limiters)

    def collect(self) -> Iterator[Metric]:
        limit = GaugeMetricFamily(
            "imageopt_rate_limit_limit",
            "Requests allowed per rolling window, per budget.",
            labels=["budget"],
        )
        window = GaugeMetricFamily(
            "imageopt_rate_limit_window_seconds",
            "Length of the budget's rolling window, seconds.",
            labels=["budget"],
        )
        used = GaugeMetricFamily(
            "imageopt_rate_limit_window_requests",
            "Requests granted in the last window (requestsInLastMinute).",
            labels=["budget"],
        )
        ratio = GaugeMetricFamily(
            "imageopt_rate_limit_usage_ratio",
            "Granted requests in the last window / limit (0..1; the seeds' rpmUsagePercent / 100).",
            labels=["budget"],
        )
        waiting = GaugeMetricFamily(
            "imageopt_rate_limit_waiting",
            "Reservations waiting for their slot (queueLength).",
            labels=["budget"],
        )
        paused = GaugeMetricFamily(
            "imageopt_rate_limit_paused",
            "1 while the budget is paused (after a provider 429).",
            labels=["budget"],
        )
        for limiter in self._limiters:
            try:
                stats = limiter.stats()
            except PipelineError as exc:  # a scrape must not fail because Redis is down
                log.warning("limiter_stats_failed", error_code=exc.code)
                continue
            name = [str(stats.budget)]
            limit.add_metric(name, float(stats.limit))
            window.add_metric(name, float(stats.window_seconds))
            used.add_metric(name, float(stats.granted_in_window))
            ratio.add_metric(name, float(stats.usage_percent) / 100.0)
            waiting.add_metric(name, float(stats.waiting))
            until = stats.paused_until
            paused.add_metric(name, 1.0 if until is not None and until > stats.now else 0.0)
        yield from (limit, window, used, ratio, waiting, paused)


@dataclass(frozen=True)
class BacklogSnapshot:
    """What the scheduler leader last read from Postgres and the broker.

    Attributes:
        depths: non-final items by status.
        stores_pending: number of stores with PENDING items.
        top_stores: ``(store, pending items)`` for the stores with most pending items.
        broker: messages waiting per dramatiq queue (ready + delayed).
        stores_paused: stores paused by an operator (their items stay PENDING).
        taken_at: unix time of the snapshot.
    """

    depths: Mapping[str, int]
    stores_pending: int
    top_stores: Sequence[tuple[str, int]] = ()
    broker: Mapping[str, int] = field(default_factory=dict)
    stores_paused: int = 0
    taken_at: float = field(default_factory=time.time)


class SchedulerCollector(Collector):
    """The scheduler's state: leadership, heartbeat, and the leader's :class:`BacklogSnapshot`.

    Only a scheduler process registers it. A standby exports ``imageopt_scheduler_is_leader 0``
    and no backlog gauges, so sums over every scheduler count each item once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leader = False
        self._cycles = 0
        self._last_cycle = 0.0
        self._snapshot: BacklogSnapshot | None = None
        self._paused = False

    def set_leader(self, leading: bool) -> None:
        """Record a change of leadership; losing it drops the backlog snapshot and the pause."""
        with self._lock:
            self._leader = leading
            if not leading:
                self._snapshot = None
                self._paused = False

    def set_paused(self, paused: bool) -> None:
        """Record whether the leader's last pass held submissions back (pipeline.controls)."""
        with self._lock:
            self._paused = paused

    def beat(self, now: float | None = None) -> None:
        """Count one scheduling cycle of the leader at unix time ``now`` (default: now)."""
        with self._lock:
            self._cycles += 1
            self._last_cycle = time.time() if now is None else now

    def update(self, snapshot: BacklogSnapshot) -> None:
        """Replace the exported backlog (the leader, every few seconds)."""
        with self._lock:
            if self._leader:
                self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            leader, cycles, last, snap, paused = (
                self._leader,
                self._cycles,
                self._last_cycle,
                self._snapshot,
                self._paused,
            )
        yield GaugeMetricFamily(
            "imageopt_scheduler_is_leader",
            "1 while this scheduler process holds the leader lock, else 0.",
            value=1.0 if leader else 0.0,
        )
        yield CounterMetricFamily(
            "imageopt_scheduler_cycles", "Scheduling cycles run while leading.", value=float(cycles)
        )
        if last:
            yield GaugeMetricFamily(
                "imageopt_scheduler_last_cycle_timestamp_seconds",
                "Unix time of the leader's last scheduling cycle (its heartbeat).",
                value=last,
            )
        if leader:
            yield GaugeMetricFamily(
                "imageopt_submissions_paused",
                "1 while the leader holds submissions back (IMAGEOPT_SUBMISSIONS_PAUSED or "
                "`imageopt submissions pause`), else 0; only the leader exports it.",
                value=1.0 if paused else 0.0,
            )
        if snap is not None:
            yield from _backlog_families(snap)


def _backlog_families(snap: BacklogSnapshot) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "imageopt_queue_depth",
        "Non-final items by status, from Postgres (scheduler leader).",
        labels=["status"],
    )
    for status, count in sorted(snap.depths.items()):
        depth.add_metric([status], float(count))
    yield depth
    yield GaugeMetricFamily(
        "imageopt_stores_pending",
        "Stores with PENDING items (scheduler leader).",
        value=float(snap.stores_pending),
    )
    yield GaugeMetricFamily(
        "imageopt_stores_paused",
        "Stores paused by an operator: their items stay PENDING (scheduler leader).",
        value=float(snap.stores_paused),
    )
    stores = GaugeMetricFamily(
        "imageopt_store_pending_items",
        "PENDING items of the stores with the largest backlog (top IMAGEOPT_METRICS_TOP_STORES).",
        labels=["store"],
    )
    for store, count in snap.top_stores:
        stores.add_metric([store], float(count))
    yield stores
    broker = GaugeMetricFamily(
        "imageopt_broker_messages",
        "Messages waiting in each dramatiq queue (ready + delayed).",
        labels=["queue"],
    )
    for queue, count in sorted(snap.broker.items()):
        broker.add_metric([queue], float(count))
    yield broker
    yield GaugeMetricFamily(
        "imageopt_backlog_snapshot_timestamp_seconds",
        "Unix time the leader last refreshed the backlog gauges.",
        value=snap.taken_at,
    )


SCHEDULER = SchedulerCollector()
"""The scheduler process's collector; registered by ``scheduler/main.py``."""

_registered: set[int] = set()
_registered_lock = threading.Lock()


def register_collectors(*collectors: Collector, registry: CollectorRegistry = REGISTRY) -> None:
    """Register scrape-time collectors once per process (repeated calls are no-ops)."""
    with _registered_lock:
        for collector in collectors:
            if id(collector) not in _registered:
                registry.register(collector)
                _registered.add(id(collector))


# --- rendering ---------------------------------------------------------------------------------


def render_latest(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The exposition text of this process's metrics and its content type.

    For an HTTP handler (the api's ``/metrics``): ``body, content_type = render_latest()``.
    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set) it aggregates every process'
    files; otherwise it renders ``registry`` (default: the global registry).

    Returns:
        ``(body, content_type)``: UTF-8 text format 0.0.4 and its ``Content-Type``.
    """
    if registry is None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry or REGISTRY), CONTENT_TYPE_LATEST


# --- image features (pipeline/quotas.py, scheduler/retention.py) ----------------------

QUOTA_HELD_STORES = Gauge(
    "imageopt_quota_held_stores",
    "Stores whose PENDING items wait because the store reached its items-per-24 h quota.",
    multiprocess_mode="max",
)

QUOTA_HOLDS_TOTAL = Counter(
    "imageopt_quota_holds_total",
    "Times a store reached its quota and the scheduler started holding its items PENDING.",
)

RETENTION_DELETED_TOTAL = Counter(
    "imageopt_retention_deleted_total",
    "Objects and rows deleted by retention, by kind (inputs, outputs, originals, jobs, items, "
    "guest_sessions).",
    ["kind"],
)

# --- custom presets (api/preset_routes.py) ------------------------------------------------

PRESET_ACTIONS = ("create", "update", "delete")
CUSTOM_PRESETS_TOTAL = Counter(
    "imageopt_custom_presets_total",
    "Custom presets written through the API, by action (create, update, delete); refused "
    "requests are not counted.",
    ["action"],
)
for _action in PRESET_ACTIONS:  # every series from the start, so rate() sees the first one
    CUSTOM_PRESETS_TOTAL.labels(_action)


def record_custom_preset(action: str) -> None:
    """Count one successful custom preset write (``action``: one of :data:`PRESET_ACTIONS`)."""
    CUSTOM_PRESETS_TOTAL.labels(action).inc()


# --- console sign-ins (api/store_session.py, api/operator_auth.py) --------------------------

SIGN_IN_CONSOLES = ("store", "operator")
SIGN_IN_OUTCOMES = ("ok", "refused", "limited")
SIGN_INS_TOTAL = Counter(
    "imageopt_api_sign_ins_total",
    "Console sign-ins with a key, by console (store: POST /api/session, operator: POST "
    "/ops/login) and outcome (ok; refused: not a live key of that console; limited: over "
    "the client network's sign-in limit, the key not checked). Malformed bodies (400) are "
    "not counted.",
    ["console", "outcome"],
)
for _console in SIGN_IN_CONSOLES:  # every series from the start, so rate() sees the first one
    for _outcome in SIGN_IN_OUTCOMES:
        SIGN_INS_TOTAL.labels(_console, _outcome)


def record_sign_in(console: str, outcome: str) -> None:
    """Count one console sign-in attempt.

    Args:
        console: one of :data:`SIGN_IN_CONSOLES`.
        outcome: one of :data:`SIGN_IN_OUTCOMES`.
    """
    SIGN_INS_TOTAL.labels(console, outcome).inc()
