"""The operator's levers on the command line, on real Postgres: ``failed`` with filters and
``--json``, ``store show|set``, ``retry --store --dry-run`` and its confirmation above the
threshold, operator keys; each change written to the audit log."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.items import RETRY_CONFIRM_ABOVE
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.integration


def sql(schema: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        cur = conn.execute(query, params)
        return list(cur.fetchall()) if cur.description else []


def add_failed(schema: str, store: str, count: int, code: str, message: str) -> None:
    job = sql(schema, "INSERT INTO image_optimization_jobs (store_id, model) VALUES "
              "(%s, 'nightmareai/real-esrgan') RETURNING id", (store,))[0][0]  # fmt: skip
    sql(
        schema,
        "INSERT INTO image_optimization_items (job_id, store_id, source_url, status, error_code, "
        "error_message, attempts, completed_at) SELECT %s, %s, 'https://img.example/' || g, "
        "'FAILED', %s, %s, 2, now() FROM generate_series(1, %s) g",
        (job, store, code, message, count),
    )


def test_failed_store_and_retry_levers(pipeline_env: dict[str, str]) -> None:
    schema = pipeline_env["IMAGEOPT_DB_SCHEMA"]
    cli = CliRunner()
    add_failed(schema, "shop-a", 2, "source_fetch_failed", "GET http://10.0.0.9/x.jpg: refused")
    add_failed(schema, "shop-b", RETRY_CONFIRM_ABOVE + 1, "provider_timeout", "timed out")

    listed = cli.invoke(app, ["failed", "--store", "shop-a", "--json"], env=pipeline_env)
    assert listed.exit_code == 0, listed.output
    doc = json.loads(listed.stdout)
    assert doc["total"] == 2
    assert {i["error_message"] for i in doc["items"]} == {"GET http://10.0.0.9/x.jpg: refused"}
    by_code = cli.invoke(app, ["failed", "--error-code", "provider_timeout", "--limit", "3"],
                         env=pipeline_env)  # fmt: skip
    assert len(by_code.stdout.splitlines()) == 3
    assert f"{RETRY_CONFIRM_ABOVE + 1} failed item(s) match, 3 shown" in by_code.stderr
    bad = cli.invoke(app, ["failed", "--since", "yesterday"], env=pipeline_env)
    assert bad.exit_code == 2

    dry = cli.invoke(app, ["retry", "--store", "shop-a", "--dry-run"], env=pipeline_env)
    assert (dry.exit_code, dry.stdout.strip()) == (0, "2 item(s) would go back to PENDING")
    # more than the threshold without a terminal and without --yes: nothing happens
    refused = cli.invoke(app, ["retry", "--store", "shop-b"], env=pipeline_env)
    assert refused.exit_code == 1
    assert (
        sql(schema, "SELECT count(*) FROM image_optimization_items WHERE status = 'FAILED'")[0][0]
        == RETRY_CONFIRM_ABOVE + 3
    )
    done = cli.invoke(app, ["retry", "--store", "shop-a", "--reason", "fixed DNS"],
                      env=pipeline_env)  # fmt: skip
    assert (done.exit_code, done.stdout.strip()) == (0, "2 item(s) back to PENDING")
    forced = cli.invoke(app, ["retry", "--store", "shop-b", "--yes"], env=pipeline_env)
    assert forced.stdout.strip() == f"{RETRY_CONFIRM_ABOVE + 1} item(s) back to PENDING"

    shown = cli.invoke(app, ["store", "show", "shop-a"], env=pipeline_env)
    assert shown.stdout.strip() == (
        "store shop-a: weight 1, quota default, running (no settings of its own)"
    )
    changed = cli.invoke(
        app, ["store", "set", "shop-a", "--weight", "5", "--quota", "100", "--paused",
              "--reason", "supplier feed broken"], env=pipeline_env,
    )  # fmt: skip
    assert changed.stdout.strip() == (
        "store shop-a: weight 5, quota 100, PAUSED (supplier feed broken)"
    )
    as_json = cli.invoke(app, ["store", "show", "shop-a", "--json"], env=pipeline_env)
    assert json.loads(as_json.stdout)["paused"] is True
    running = cli.invoke(app, ["store", "set", "shop-a", "--running", "--default-quota"],
                         env=pipeline_env)  # fmt: skip
    assert running.stdout.strip() == "store shop-a: weight 5, quota default, running"
    assert cli.invoke(app, ["store", "set", "shop-a"], env=pipeline_env).exit_code == 2
    assert cli.invoke(app, ["store", "set", "x", "--weight", "0"], env=pipeline_env).exit_code == 2

    key = cli.invoke(app, ["api-key", "create", "--operator", "--name", "bob"], env=pipeline_env)
    assert key.exit_code == 0, key.output
    assert key.stdout.startswith("iok_")
    assert cli.invoke(app, ["api-key", "create", "--operator"], env=pipeline_env).exit_code == 2
    listed_keys = cli.invoke(app, ["api-key", "list", "--operator"], env=pipeline_env)
    assert "operator bob" in listed_keys.stdout

    actions = [r[0] for r in sql(schema, "SELECT action FROM image_optimization_audit_log "
                                 "ORDER BY id")]  # fmt: skip
    assert actions == ["retry", "retry", "store_settings", "store_settings",
                       "create_operator_key"]  # fmt: skip
    reasons = sql(schema, "SELECT reason FROM image_optimization_audit_log ORDER BY id")
    assert reasons[0][0] == "fixed DNS"
