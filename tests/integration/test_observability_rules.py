"""The alert rules and the local Prometheus config pass promtool's checks and unit tests."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.observability import ALERTS, ALERTS_TEST, PROMETHEUS_DIR

pytestmark = pytest.mark.integration


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: run `make prometheus-deps`")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def test_alert_rules_pass_promtool_check() -> None:
    result = _promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_on_its_series_and_stays_silent_otherwise() -> None:
    result = _promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_local_prometheus_config_is_valid() -> None:
    result = _promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
