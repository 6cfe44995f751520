"""``pipeline.db``: the pool lends recently used connections without a check round trip, and
still replaces a connection that died while idle (real Postgres)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pipeline.db import IdleCheck, connect, create_pool
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.integration


def _terminate(pid: int) -> None:
    with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)  # the backend exits asynchronously


@pytest.fixture
def conn(db_schema: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(DATABASE_URL, db_schema, autocommit=True) as c:
        yield c


def test_a_connection_returned_moments_ago_is_lent_without_a_query(
    conn: psycopg.Connection[Any],
) -> None:
    check = IdleCheck(idle_seconds=60)
    check.reset(conn)
    _terminate(conn.info.backend_pid)

    check.check(conn)  # no round trip: the dead backend goes unnoticed here
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")


def test_an_idle_connection_is_checked(conn: psycopg.Connection[Any]) -> None:
    check = IdleCheck(idle_seconds=0.0)
    check.reset(conn)
    check.check(conn)  # alive: passes
    _terminate(conn.info.backend_pid)

    with pytest.raises(psycopg.OperationalError):
        check.check(conn)


def test_a_connection_never_returned_is_checked(conn: psycopg.Connection[Any]) -> None:
    _terminate(conn.info.backend_pid)

    with pytest.raises(psycopg.OperationalError):
        IdleCheck(idle_seconds=60).check(conn)


def test_the_pool_replaces_a_connection_that_died_while_idle(db_schema: str) -> None:
    pool = create_pool(DATABASE_URL, db_schema, min_size=1, max_size=1, name="test-idle-check")
    try:
        with pool.connection() as c:
            dead = c.info.backend_pid
        _terminate(dead)
        time.sleep(1.1)  # longer than IDLE_CHECK_SECONDS: the next loan is checked

        with pool.connection() as c:
            row = c.execute("SELECT pg_backend_pid() AS pid, 1 AS one").fetchone()
        assert row is not None
        assert row["one"] == 1
        assert row["pid"] != dead
    finally:
        pool.close()
