"""Waits for "nothing happened" that count the scheduler's cycles instead of sleeping.

A test that asserts an item stayed PENDING must first know that the leader has looked at it:
:func:`wait_cycles` returns once the leader has run whole cycles that began after the call,
however slow the machine, so the assertion after it cannot pass merely because the scheduler
had not got round to the item yet.
"""

from __future__ import annotations

import psycopg

from scheduler.loop import CHANNEL, Scheduler
from tests.conftest import DATABASE_URL
from tests.support.rows import wait_until


def wait_cycles(scheduler: Scheduler, cycles: int, schema: str, timeout: float = 15.0) -> None:
    """Wait until ``scheduler`` (leading, in this process) has completed ``cycles`` cycles that
    began after this call.

    The leader is nudged with the ``NOTIFY`` an insert sends, so its idle tick (which may be
    long on purpose) does not set the pace. Cycle ``n`` begins by counting itself
    (:attr:`scheduler.loop.Scheduler.cycle`); so ``cycle >= start + cycles + 1`` means cycles
    ``start + 1`` to ``start + cycles`` have run to their end.

    Raises:
        Failed: the cycles did not pass within ``timeout`` s (the test fails).
    """
    start = scheduler.cycle
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:

        def passed() -> bool:
            if scheduler.cycle > start + cycles:
                return True
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, schema))
            return False

        wait_until(passed, timeout, f"{cycles} scheduler cycles did not pass")
