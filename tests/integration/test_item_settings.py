"""The item overrides its job: one view (migration 0008), read by every query that needs an
item's effective model, prompt, params and preset (real Postgres)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pipeline.repository import Repository
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.integration

JOB_MODEL, ITEM_MODEL = "nightmareai/real-esrgan", "tencentarc/gfpgan"


def _items(schema: str) -> tuple[int, int]:
    """One job with every setting, one item overriding them all, one overriding none."""
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        job = conn.execute(
            "INSERT INTO image_optimization_jobs (store_id, model, prompt, params, preset) "
            "VALUES ('s', %s, 'job prompt', %s, 'thumb') RETURNING id",
            (JOB_MODEL, Jsonb({"scale": 2, "face_enhance": False})),
        ).fetchone()
        assert job is not None
        own = conn.execute(
            "INSERT INTO image_optimization_items "
            "(job_id, store_id, source_url, model, prompt, params, preset, created_at) "
            "VALUES (%s, 's', 'https://img.example/a.jpg', %s, 'item prompt', %s, 'web', "
            "now() - interval '2 s') RETURNING id",
            (job[0], ITEM_MODEL, Jsonb({"scale": 4})),
        ).fetchone()
        inherited = conn.execute(
            "INSERT INTO image_optimization_items (job_id, store_id, source_url, created_at) "
            "VALUES (%s, 's', 'https://img.example/b.jpg', now() - interval '1 s') RETURNING id",
            (job[0],),
        ).fetchone()
        assert own is not None
        assert inherited is not None
        conn.execute(
            "UPDATE image_optimization_items SET status = 'QUEUED' WHERE id = %s", (inherited[0],)
        )
        return own[0], inherited[0]


OWN = {"model": ITEM_MODEL, "prompt": "item prompt", "params": {"scale": 4,
       "face_enhance": False}, "preset": "web"}  # fmt: skip
INHERITED = {"model": JOB_MODEL, "prompt": "job prompt", "params": {"scale": 2,
             "face_enhance": False}, "preset": "thumb"}  # fmt: skip


def _settings(row: object | None, keys: tuple[str, ...]) -> dict[str, Any]:
    assert row is not None
    return {key: getattr(row, key) for key in keys}


def test_an_items_own_settings_win_and_its_jobs_fill_the_rest(
    repo: Repository, db_schema: str
) -> None:
    own, inherited = _items(db_schema)
    keys = ("model", "prompt", "params", "preset")
    assert _settings(repo.get_work_item(own), keys) == OWN
    assert _settings(repo.get_work_item(inherited), keys) == INHERITED


def test_the_claim_returns_the_same_settings_with_the_new_attempt(
    repo: Repository, db_schema: str
) -> None:
    _own, inherited = _items(db_schema)
    claimed = repo.claim_work_item(inherited)
    assert claimed is not None
    assert (claimed.status, claimed.attempts) == ("SUBMITTING", 1)
    assert _settings(claimed, ("model", "prompt", "params", "preset")) == INHERITED


def test_metering_reads_the_same_settings(repo: Repository, db_schema: str) -> None:
    own, _inherited = _items(db_schema)
    heads = repo.pending_heads(["s"], 10, datetime.now(UTC) + timedelta(seconds=1))
    assert [row.id for row in heads] == [own]  # the other one is QUEUED
    expected = {key: OWN[key] for key in ("model", "prompt", "params")}
    assert _settings(heads[0], ("model", "prompt", "params")) == expected
