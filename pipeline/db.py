"""Postgres connections: one psycopg-pool per process, every connection on the project schema.

The schema (``IMAGEOPT_DB_SCHEMA``) is set as the connection's ``search_path``, so one database
can hold several deployments (and the tests give each test its own schema).
"""

from __future__ import annotations

import re

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from pipeline.errors import ConfigurationError

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(schema: str) -> str:
    """Return ``schema`` if it is a plain lower-case identifier.

    Raises:
        ConfigurationError: anything that would need quoting (it is spliced into DDL).
    """
    if not _SCHEMA.match(schema):
        raise ConfigurationError(f"invalid schema name {schema!r}: use [a-z_][a-z0-9_]*")
    return schema


def connect_kwargs(schema: str) -> dict[str, object]:
    """Connection keyword arguments that pin ``search_path`` to ``schema``."""
    return {
        "options": f"-c search_path={check_schema_name(schema)}",
        "autocommit": False,
        "row_factory": dict_row,
    }


def connect(
    database_url: str, schema: str, *, autocommit: bool = False
) -> psycopg.Connection[dict[str, object]]:
    """Open one connection (for LISTEN, migrations and CLI commands)."""
    return psycopg.connect(
        database_url,
        options=f"-c search_path={check_schema_name(schema)}",
        autocommit=autocommit,
        row_factory=dict_row,
    )


def create_pool(
    database_url: str, schema: str, *, min_size: int = 1, max_size: int = 8, name: str = "imageopt"
) -> ConnectionPool[psycopg.Connection[dict[str, object]]]:
    """A connection pool whose connections all use ``schema``; opened and waited for.

    Args:
        database_url: libpq URL (``DATABASE_URL``).
        schema: the project schema.
        min_size: connections kept open.
        max_size: upper bound (size it to the worker threads of the process).
        name: pool name, shown in psycopg-pool's logs.
    """
    # Autocommit: each repository call is one statement, so it needs no BEGIN and COMMIT
    # round trips of its own (issue 9); a call of several statements opens a transaction.
    pool: ConnectionPool[psycopg.Connection[dict[str, object]]] = ConnectionPool(
        database_url,
        kwargs={**connect_kwargs(schema), "autocommit": True},
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        check=ConnectionPool.check_connection,
    )
    pool.open(wait=True, timeout=30)
    return pool
