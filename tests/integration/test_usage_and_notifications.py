"""Completion notifications (Postgres NOTIFY when an item or a job becomes final) and the cost
per store (``imageopt usage``), against the real Postgres."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipeline.db import create_pool
from pipeline.repository import Repository
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.integration


def _connect(schema: str) -> psycopg.Connection[Any]:
    return psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}", autocommit=True)


def _job(conn: psycopg.Connection[Any], store: str, model: str, n: int) -> tuple[int, list[int]]:
    row = conn.execute(
        "INSERT INTO image_optimization_jobs (store_id, model) VALUES (%s, %s) RETURNING id",
        (store, model),
    ).fetchone()
    assert row is not None
    items = conn.execute(
        "INSERT INTO image_optimization_items (job_id, store_id, source_url, status, "
        "prediction_id) SELECT %s, %s, 'http://example.com/a.png', 'PROCESSING', 'p' || g "
        "FROM generate_series(1, %s) g RETURNING id",
        (row[0], store, n),
    ).fetchall()
    return int(row[0]), [int(r[0]) for r in items]


def test_items_and_jobs_that_become_final_are_notified_once(db_schema: str) -> None:
    with _connect(db_schema) as listener, _connect(db_schema) as conn:
        listener.execute("LISTEN imageopt_item_final")
        listener.execute("LISTEN imageopt_job_final")
        job, [done, failed] = _job(conn, "store-n", "nightmareai/real-esrgan", 2)
        pool = create_pool(DATABASE_URL, db_schema, max_size=2, name="test")
        with pool:
            repo = Repository(pool)
            assert repo.mark_done(
                done, output_key="k", width=1, height=1, size=1, content_type="image/png",
                predict_time=2.5,
            )  # fmt: skip
            assert not repo.mark_done(  # run twice: no change, no second notification
                done, output_key="k", width=1, height=1, size=1, content_type="image/png"
            )
            assert repo.fail_item(failed, ("PROCESSING",), "prediction_failed", "boom")
            repo.refresh_active_jobs()
            repo.refresh_active_jobs()
        # Channels are database-wide: other test workers' schemas notify on them too.
        got = [
            (n.channel, payload)
            for n in listener.notifies(timeout=1.0)
            if (payload := json.loads(n.payload))["schema"] == db_schema
        ]
    assert got == [
        (
            "imageopt_item_final",
            {"schema": db_schema, "item_id": done, "job_id": job, "store_id": "store-n",
             "status": "DONE"},
        ),
        (
            "imageopt_item_final",
            {"schema": db_schema, "item_id": failed, "job_id": job, "store_id": "store-n",
             "status": "FAILED"},
        ),
        (
            "imageopt_job_final",
            {"schema": db_schema, "job_id": job, "store_id": "store-n", "status": "DONE",
             "total_items": 2, "done_items": 1, "failed_items": 1, "canceled_items": 0},
        ),
    ]  # fmt: skip


def test_usage_reports_predictions_seconds_and_cost_by_model_for_one_store(
    db_schema: str, pipeline_env: dict[str, str]
) -> None:
    with _connect(db_schema) as conn:
        _, esrgan = _job(conn, "store-u", "nightmareai/real-esrgan", 3)
        _, banana = _job(conn, "store-u", "google/nano-banana", 2)
        _, other_store = _job(conn, "store-v", "nightmareai/real-esrgan", 2)
        conn.execute(
            "UPDATE image_optimization_items SET status = 'DONE', completed_at = now(), "
            "predict_time_seconds = 4.0 WHERE id = ANY(%s)",
            (esrgan + other_store,),
        )
        conn.execute(
            "UPDATE image_optimization_items SET status = 'FAILED', completed_at = now(), "
            "predict_time_seconds = 1.5 WHERE id = %s",
            (banana[0],),
        )
        conn.execute(  # long ago: outside --since
            "UPDATE image_optimization_items SET status = 'DONE', "
            "completed_at = now() - interval '40 days', predict_time_seconds = 9 WHERE id = %s",
            (banana[1],),
        )
    env = {**pipeline_env, "IMAGEOPT_MODEL_PRICES": '{"nightmareai/real-esrgan": 0.001}'}
    result = CliRunner().invoke(app, ["usage", "--store", "store-u", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["models"] == [
        {"model": "google/nano-banana", "predictions": 1, "timed": 1, "provider_seconds": 1.5,
         "estimated_cost": 0.039},
        {"model": "nightmareai/real-esrgan", "predictions": 3, "timed": 3,
         "provider_seconds": 12.0, "estimated_cost": 0.012},
    ]  # fmt: skip
    assert report["total"] == {"predictions": 4, "provider_seconds": 13.5, "estimated_cost": 0.051}
    text = CliRunner().invoke(app, ["usage", "--store", "store-u", "--since", "7d"], env=env)
    assert text.exit_code == 0, text.output
    assert "nightmareai/real-esrgan" in text.stdout
    bad = CliRunner().invoke(app, ["usage", "--store", "store-u", "--since", "yesterday"], env=env)
    assert bad.exit_code == 2
