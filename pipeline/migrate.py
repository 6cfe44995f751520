"""Versioned SQL migrations (``pipeline/sql/migrations/NNNN_name.sql``), applied in order.

Each migration runs in its own transaction under an advisory lock, so several processes may
call :func:`migrate` at once (e.g. a Kubernetes Job racing a developer) and each file is applied
exactly once per schema. Applied versions are recorded in ``imageopt_schema_migrations``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

import psycopg
import structlog
from psycopg import sql

from pipeline.db import check_schema_name
from pipeline.errors import SchemaNotMigrated

if TYPE_CHECKING:
    from pipeline.repository import Repository

log = structlog.get_logger(__name__)

_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
_LOCK_KEY = 0x1A6E0F7  # arbitrary constant shared by every imageopt process


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def list_migrations() -> list[Migration]:
    """All migrations shipped with the package, ordered by version."""
    folder = resources.files("pipeline").joinpath("sql/migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(
                Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    return found


@functools.cache
def shipped_versions() -> tuple[int, ...]:
    """Versions of the migrations shipped with this release, in order (read once)."""
    return tuple(m.version for m in list_migrations())


def missing_versions(applied: Iterable[int]) -> list[int]:
    """Versions this release ships that ``applied`` lacks, in order.

    Args:
        applied: versions recorded in the schema (:meth:`Repository.applied_migrations`).
    """
    done = set(applied)
    return [version for version in shipped_versions() if version not in done]


def require_migrated(repo: Repository, schema: str) -> None:
    """Check that ``schema`` has every migration of this release (the scheduler before it
    leads, the api's ``/readyz``).

    Raises:
        SchemaNotMigrated: with the missing versions (``imageopt migrate`` has not run yet).
        DatabaseUnavailable: the database cannot be reached.
    """
    missing = missing_versions(repo.applied_migrations())
    if missing:
        raise SchemaNotMigrated(schema, missing)


def migrate(database_url: str, schema: str) -> list[Migration]:
    """Create ``schema`` if needed and apply the migrations it lacks.

    Returns:
        The migrations applied by this call (empty when up to date).
    """
    check_schema_name(schema)
    applied_now: list[Migration] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        for migration in list_migrations():
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS imageopt_schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = conn.execute(
                    "SELECT 1 FROM imageopt_schema_migrations WHERE version = %s",
                    (migration.version,),
                ).fetchone()
                if done:
                    continue
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO imageopt_schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                applied_now.append(migration)
                log.info(
                    "migration_applied",
                    version=migration.version,
                    name=migration.name,
                    schema=schema,
                )
    return applied_now


def drop_schema(database_url: str, schema: str) -> None:
    """Drop ``schema`` and everything in it (tests and ``imageopt reset``)."""
    check_schema_name(schema)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
