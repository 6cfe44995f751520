"""The metrics helpers keep labels bounded and record what each pipeline step did."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from pipeline import metrics
from pipeline.config import Settings
from pipeline.errors import RateLimiterUnavailable
from pipeline.metrics_server import worker_metrics_env
from pipeline.provider import USER_AGENT, Prediction
from pipeline.version import package_version
from tests.support.observability import load_rules, runbook_anchors

MODEL = "tencentarc/gfpgan"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_unknown_models_and_odd_codes_collapse_into_one_label_value() -> None:
    assert metrics.model_label(MODEL) == MODEL
    assert metrics.model_label("someone/else") == "other"
    assert metrics.model_label(None) == "other"
    assert metrics.code_label("provider_timeout") == "provider_timeout"
    assert metrics.code_label("Timed out after 30 s!") == "other"


def test_a_submitted_creation_counts_its_transitions_queue_wait_and_submission_time() -> None:
    before = value("imageopt_item_transitions_total", model=MODEL, from_status="SUBMITTING",
                   to_status="PROCESSING")  # fmt: skip
    waits = value("imageopt_item_stage_seconds_count", stage="queue_wait", model=MODEL)
    metrics.creation_started(MODEL, 1, datetime.now(UTC) - timedelta(seconds=3))
    metrics.creation_started(MODEL, 2, datetime.now(UTC) - timedelta(seconds=3))  # a retry
    metrics.creation_finished(MODEL, "submitted", None, 0.4)
    assert value("imageopt_item_transitions_total", model=MODEL, from_status="SUBMITTING",
                 to_status="PROCESSING") == before + 1  # fmt: skip
    assert value("imageopt_item_stage_seconds_count", stage="queue_wait", model=MODEL) == waits + 1


@pytest.mark.parametrize(
    ("action", "target"), [("retry", "PENDING"), ("released", "PENDING"), ("failed", "FAILED")]
)
def test_a_creation_error_counts_its_code_and_where_the_item_went(action: str, target: str) -> None:
    labels = {"stage": "creation", "error_code": "provider_unavailable", "outcome": action}
    errors = value("imageopt_item_errors_total", **labels)
    moved = value("imageopt_item_transitions_total", model=MODEL, from_status="SUBMITTING",
                  to_status=target)  # fmt: skip
    metrics.creation_finished(MODEL, action, "provider_unavailable", 0.1)
    assert value("imageopt_item_errors_total", **labels) == errors + 1
    assert value("imageopt_item_transitions_total", model=MODEL, from_status="SUBMITTING",
                 to_status=target) == moved + 1  # fmt: skip


def _prediction(created_at: str | None, completed_at: str | None) -> Prediction:
    return Prediction("p1", "succeeded", created_at=created_at, completed_at=completed_at)


def test_a_done_item_records_end_to_end_and_the_provider_reported_run_time() -> None:
    created = datetime.now(UTC) - timedelta(seconds=20)
    count = value("imageopt_item_end_to_end_seconds_count", model=MODEL)
    run_sum = value("imageopt_item_stage_seconds_sum", stage="provider_run", model=MODEL)
    prediction = _prediction("2025-01-01T00:00:00.000Z", "2025-01-01T00:00:07.500Z")
    metrics.item_done(MODEL, created, created + timedelta(seconds=1), prediction, 0.25)
    assert value("imageopt_item_end_to_end_seconds_count", model=MODEL) == count + 1
    assert value("imageopt_item_end_to_end_seconds_sum", model=MODEL) >= 20
    assert value("imageopt_item_stage_seconds_sum", stage="provider_run",
                 model=MODEL) == pytest.approx(run_sum + 7.5)  # fmt: skip


def test_provider_run_falls_back_to_the_time_since_submission() -> None:
    submitted = datetime.now(UTC) - timedelta(seconds=4)
    seconds = metrics.provider_run_seconds(_prediction(None, None), submitted)
    assert seconds == pytest.approx(4, abs=1)


def test_provider_stamps_out_of_order_are_no_runtime_so_the_metric_falls_back() -> None:
    # The same rule as the poll plan's median: completed before created is not a 0 s run.
    submitted = datetime.now(UTC) - timedelta(seconds=4)
    backwards = _prediction("2025-01-01T00:00:07Z", "2025-01-01T00:00:00Z")
    assert backwards.runtime_seconds is None
    assert metrics.provider_run_seconds(backwards, submitted) == pytest.approx(4, abs=1)


def test_build_info_and_the_user_agent_name_the_same_version() -> None:
    version = package_version()
    assert f"imageopt/{version}" == USER_AGENT
    assert REGISTRY.get_sample_value("imageopt_build_info", {"version": version,
        "python_version": platform.python_version()}) == 1  # fmt: skip


def test_metering_counts_queued_and_validation_failures_by_model() -> None:
    models = {1: MODEL, 2: "not/allowed"}
    queued = value("imageopt_item_transitions_total", model=MODEL, from_status="PENDING",
                   to_status="QUEUED")  # fmt: skip
    failed = value("imageopt_item_transitions_total", model="other", from_status="PENDING",
                   to_status="FAILED")  # fmt: skip
    metrics.metered(models, [1], [(2, "unknown_model")], [2])
    assert value("imageopt_item_transitions_total", model=MODEL, from_status="PENDING",
                 to_status="QUEUED") == queued + 1  # fmt: skip
    assert value("imageopt_item_transitions_total", model="other", from_status="PENDING",
                 to_status="FAILED") == failed + 1  # fmt: skip


def test_rescuer_results_are_counted_per_action() -> None:
    @dataclass(frozen=True)
    class Result:
        requeued: int = 2
        expired: int = 1
        repolled: int = 0

    before = value("imageopt_rescuer_actions_total", action="requeued")
    metrics.record_rescue(Result())
    assert value("imageopt_rescuer_actions_total", action="requeued") == before + 2


def _collect(collector: metrics.SchedulerCollector) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(collector)
    return {
        f"{s.name}{sorted(s.labels.items()) or ''}": s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_a_standby_scheduler_exports_no_backlog_and_a_leader_does() -> None:
    collector = metrics.SchedulerCollector()
    snapshot = metrics.BacklogSnapshot({"PENDING": 7, "QUEUED": 2}, 3, [("shop-1", 5)], {"q": 1})
    collector.update(snapshot)  # ignored: not leading
    standby = _collect(collector)
    assert standby["imageopt_scheduler_is_leader"] == 0
    assert not any(key.startswith("imageopt_queue_depth") for key in standby)
    collector.set_leader(True)
    collector.beat(now=1000.0)
    collector.update(snapshot)
    leader = _collect(collector)
    assert leader["imageopt_scheduler_is_leader"] == 1
    assert leader["imageopt_queue_depth[('status', 'PENDING')]"] == 7
    assert leader["imageopt_stores_pending"] == 3
    assert leader["imageopt_store_pending_items[('store', 'shop-1')]"] == 5
    assert leader["imageopt_scheduler_last_cycle_timestamp_seconds"] == 1000.0
    collector.set_leader(False)
    assert not any(key.startswith("imageopt_queue_depth") for key in _collect(collector))


class _Stats:
    budget, limit, window_seconds, granted_in_window, waiting = "create", 450, 60.0, 441, 3
    usage_percent, paused_until, now = 98.0, 110.0, 100.0


class _Limiter:
    def stats(self) -> _Stats:
        return _Stats()


class _DownLimiter:
    def stats(self) -> _Stats:
        raise RateLimiterUnavailable("redis is down")


def test_limiter_gauges_come_from_redis_stats_and_a_down_redis_only_drops_them() -> None:
    registry = CollectorRegistry()
    registry.register(metrics.LimiterCollector([_Limiter(), _DownLimiter()]))
    assert (
        registry.get_sample_value("imageopt_rate_limit_usage_ratio", {"budget": "create"}) == 0.98
    )
    assert registry.get_sample_value("imageopt_rate_limit_limit", {"budget": "create"}) == 450
    assert registry.get_sample_value("imageopt_rate_limit_paused", {"budget": "create"}) == 1
    assert registry.get_sample_value("imageopt_rate_limit_waiting", {"budget": "create"}) == 3


def test_render_latest_gives_the_text_format_with_the_build_info() -> None:
    body, content_type = metrics.render_latest()
    assert content_type.startswith("text/plain")
    assert b"imageopt_build_info{" in body


def test_a_worker_group_gets_one_wiped_multiprocess_directory_for_ours_and_dramatiqs(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "mp"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"old")
    settings = Settings(IMAGEOPT_METRICS_MULTIPROC_DIR=str(directory))
    env = worker_metrics_env(settings, 9300)
    assert env["PROMETHEUS_MULTIPROC_DIR"] == env["dramatiq_prom_db"] == str(directory)
    assert env["dramatiq_prom_host"] == "127.0.0.1"
    assert env["IMAGEOPT_WORKER_METRICS_PORT"] == env["dramatiq_prom_port"] == "9300"
    assert not list(directory.glob("*.db"))
    assert worker_metrics_env(settings, 0) == {"IMAGEOPT_WORKER_METRICS_PORT": "0"}
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section() -> None:
    anchors = runbook_anchors()
    for rule in load_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path == "docs/runbooks.md", rule["alert"]
        assert anchor in anchors, rule["alert"]
