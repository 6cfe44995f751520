"""The migrations produce exactly ``pipeline/sql/schema.sql`` (upstream's contract, real
Postgres): a change to the schema is a new migration *and* a regenerated snapshot
(``make schema``), so a reviewer sees the resulting schema, not only the steps."""

from __future__ import annotations

import difflib

import psycopg
import pytest

from pipeline.schemadump import SNAPSHOT, dump_schema
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.integration


def test_a_freshly_migrated_schema_matches_the_snapshot(db_schema: str) -> None:
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        dumped = dump_schema(conn, db_schema)
    expected = SNAPSHOT.read_text(encoding="utf-8")
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            dumped.splitlines(keepends=True),
            "pipeline/sql/schema.sql",
            "migrated",
        )
    )
    assert not diff, f"the migrations and the snapshot differ; run `make schema`:\n{diff}"


def test_the_dump_names_no_schema(db_schema: str) -> None:
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        dumped = dump_schema(conn, db_schema)
    assert db_schema not in dumped
    assert "CREATE TABLE image_optimization_items (" in dumped
