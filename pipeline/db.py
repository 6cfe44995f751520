"""Postgres connections: one psycopg-pool per process, every connection on the project schema.

The schema (``IMAGEOPT_DB_SCHEMA``) is set as the connection's ``search_path``, so one database
can hold several deployments (and the tests give each test its own schema).
"""

from __future__ import annotations

import re
import threading
import time
import weakref

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


IDLE_CHECK_SECONDS = 1.0
"""A pooled connection idle longer than this is checked (an empty query) before it is lent."""


class IdleCheck:
    """psycopg-pool ``check`` and ``reset`` callbacks: check a connection only when idle.

    ``ConnectionPool.check_connection`` costs a round trip on every ``connection()``; a
    connection returned to the pool less than ``idle_seconds`` ago is lent without it (it was
    5 of the 10 round trips per item). One that went bad in that second fails its statement,
    which the repository reports as :class:`~pipeline.errors.DatabaseUnavailable` (retried),
    and the pool replaces it when it comes back broken.

    Args:
        idle_seconds: idle time after which a connection is checked, seconds.
    """

    def __init__(self, idle_seconds: float = IDLE_CHECK_SECONDS) -> None:
        self._idle = idle_seconds
        self._returned: weakref.WeakKeyDictionary[psycopg.Connection[object], float] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def check(self, conn: psycopg.Connection[object]) -> None:
        """Raise (as the pool expects) when an idle connection does not answer."""
        with self._lock:
            returned = self._returned.get(conn)
        if returned is None or time.monotonic() - returned > self._idle:
            ConnectionPool.check_connection(conn)

    def reset(self, conn: psycopg.Connection[object]) -> None:
        """Remember when ``conn`` came back to the pool."""
        with self._lock:
            self._returned[conn] = time.monotonic()


def create_pool(
    database_url: str,
    schema: str,
    *,
    min_size: int = 1,
    max_size: int = 8,
    name: str = "imageopt",
    open_timeout: float = 30.0,
) -> ConnectionPool[psycopg.Connection[dict[str, object]]]:
    """A connection pool whose connections all use ``schema``; opened and waited for.

    Args:
        database_url: libpq URL (``DATABASE_URL``).
        schema: the project schema.
        min_size: connections kept open.
        max_size: upper bound (size it to the worker threads of the process).
        name: pool name, shown in psycopg-pool's logs.
        open_timeout: longest wait for the first ``min_size`` connections, seconds.

    Raises:
        psycopg_pool.PoolTimeout: the connections could not be made within ``open_timeout``.
    """
    # Autocommit: each repository call is one statement, so it needs no BEGIN and COMMIT
    # round trips of its own; a call of several statements opens a transaction.
    idle = IdleCheck()
    pool: ConnectionPool[psycopg.Connection[dict[str, object]]] = ConnectionPool(
        database_url,
        kwargs={**connect_kwargs(schema), "autocommit": True},
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        check=idle.check,
        reset=idle.reset,
    )
    pool.open(wait=True, timeout=open_timeout)
    return pool
