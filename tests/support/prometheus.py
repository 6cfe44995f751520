"""A real Prometheus for the observability tests, and reading metrics as they do: one
Prometheus process on 127.0.0.1 (its own data directory) scraping the given targets every
second, instant queries against it, and the samples of a ``/metrics`` text."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from devstack.processes import free_port, wait_http

READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 15.0


def prometheus_binary() -> str:
    """The ``prometheus`` on PATH; the test fails (naming ``make prometheus-deps``) without one."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: run `make prometheus-deps`")
    return binary


@contextlib.contextmanager
def run_prometheus(
    directory: Path, targets: Mapping[str, int], rule_files: Sequence[Path] = ()
) -> Iterator[str]:
    """Run Prometheus until the block ends; yields its URL.

    Args:
        directory: where its configuration, data and log go (a test's ``tmp_path``).
        targets: scrape job name → port on 127.0.0.1; scraped every 1 s (900 ms timeout),
            rules evaluated every 1 s.
        rule_files: alert rule files to load.
    """
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in targets.items()
        ],
    }
    config_path = directory / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    binary = prometheus_binary()  # fails before a log file is left open
    port = free_port()
    with (directory / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={config_path}",
             f"--storage.tsdb.path={directory / 'prometheus-data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=READY_TIMEOUT_SECONDS)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def query(client: httpx.Client, base: str, expr: str) -> list[dict[str, Any]]:
    """The result vector of an instant query (the test fails on a query Prometheus refused)."""
    response = client.get(f"{base}/api/v1/query", params={"query": expr})
    body = response.json()
    assert body.get("status") == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def samples(text: str, name: str) -> list[Sample]:
    """The samples called ``name`` (``_total``, ``_bucket`` ... included) of a ``/metrics``
    text in Prometheus' exposition format."""
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]
