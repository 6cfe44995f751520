"""Leader election by a Postgres session advisory lock, with the lock's session as the fence.

Exactly one ``scheduler`` leads: the one whose dedicated connection holds
``pg_try_advisory_lock(hashtext('imageopt-scheduler:' || schema))``. Postgres releases a session
lock the moment its connection ends, so when a leader is killed (even with SIGKILL) the kernel
closes its socket and a standby, trying every ``retry_seconds``, takes over within about a
second. The leader runs all its metering writes on that same connection: if its session is gone
its writes fail, so two leaders can never meter at once (the lock cannot be held by two
sessions, and writes of a session that lost it cannot commit).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
import structlog

from pipeline.db import connect

log = structlog.get_logger(__name__)


class SingleConnectionPool:
    """A pool-shaped wrapper around one connection, for :class:`pipeline.repository.Repository`.

    Each ``connection()`` block is one transaction: committed on success, rolled back on error.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                if not self._conn.closed:
                    self._conn.rollback()
                raise
            else:
                if self._depth == 1:
                    self._conn.commit()
            finally:
                self._depth -= 1

    def transaction(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """Group several ``connection()`` blocks into one transaction (one commit at the end)."""
        return self.connection()


class LeaderLock:
    """The scheduler's leadership, held by one session.

    Args:
        database_url: libpq URL.
        schema: the project schema (leadership is per schema).
    """

    def __init__(self, database_url: str, schema: str) -> None:
        self._database_url = database_url
        self._schema = schema
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def connection(self) -> psycopg.Connection[Any]:
        """The leader's session (only valid while leading)."""
        if self._conn is None:
            raise RuntimeError("not leading")
        return self._conn

    def try_acquire(self) -> bool:
        """Try to become leader once; True when this process now leads.

        Raises:
            psycopg.OperationalError: Postgres unreachable (the caller retries).
        """
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._database_url, self._schema, autocommit=True)
        row = self._conn.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s)) AS ok",
            (f"imageopt-scheduler:{self._schema}",),
        ).fetchone()
        got = bool(row and row["ok"])
        if got:
            self._conn.autocommit = False
        return got

    def still_leading(self) -> bool:
        """Whether the leader's session is alive (its lock is then still held)."""
        if self._conn is None or self._conn.closed:
            return False
        try:
            self._conn.execute("SELECT 1")
            self._conn.commit()
        except psycopg.Error:
            return False
        return True

    def release(self) -> None:
        """Give up leadership (close the session; Postgres frees the lock)."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
