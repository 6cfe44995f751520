"""Wake requests that wait for a job's item to finish: one ``LISTEN`` connection per api process.

The items table's trigger (migration 0010) sends ``NOTIFY imageopt_item_final`` with a JSON
payload ``{"schema", "item_id", "job_id", "store_id", "status"}`` when an item becomes DONE,
FAILED or CANCELED (docs/UPSTREAM.md, "Completion notifications"). :class:`FinalItemWatch`
listens on that channel on one connection of its own (an asyncio task, psycopg's async
``notifies()``) and sets the :class:`asyncio.Event` of every request waiting on that job, so a
waiting ``POST /api/ai-image/generate`` reads its item once when it started and once when it
is told, instead of every half second.

Waiters are keyed by job id, not item id: the job id is what the request knows before its
first read, so it registers before that read and no notification can slip in between (a
generate's job has one item; the payload carries both ids).

A notification is lost while the connection is down (Postgres restarted, the backend
terminated): the task reconnects with a doubling backoff (:data:`RECONNECT_MIN_SECONDS` to
:data:`RECONNECT_MAX_SECONDS`) and, once listening again, wakes every waiter so each reads its
item once. The waiters also read on their own every :data:`SAFETY_READ_SECONDS` whatever
happens, so nothing waits past its deadline on a notification that never comes.

Metrics (docs/OBSERVABILITY.md): ``imageopt_api_item_final_listener_up`` (1 while listening),
``imageopt_api_item_final_listener_connects_total`` (successful LISTENs: more than one means
reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import structlog
from prometheus_client import Counter, Gauge

from pipeline.db import check_schema_name

log = structlog.get_logger(__name__)

CHANNEL = "imageopt_item_final"
"""The channel the items table's trigger notifies on (migration 0010)."""
SAFETY_READ_SECONDS = 5.0
"""A waiter reads its item at least this often (seconds), in case a notification was lost."""
RECONNECT_MIN_SECONDS = 0.5
"""First pause before reconnecting a dropped LISTEN connection (seconds); doubled per failure."""
RECONNECT_MAX_SECONDS = 30.0
"""Longest pause between reconnection attempts (seconds)."""
APPLICATION_NAME = "imageopt-api-final-items"
"""The connection's ``application_name`` prefix (``pg_stat_activity``); the schema follows it."""

LISTENER_UP = Gauge(
    "imageopt_api_item_final_listener_up",
    "1 while this api process listens for finished items on Postgres, else 0.",
)
LISTENER_CONNECTS = Counter(
    "imageopt_api_item_final_listener_connects_total",
    "Times this api process started listening for finished items (the first, then reconnects).",
)


def application_name(schema: str) -> str:
    """The listener's ``application_name`` for ``schema`` (Postgres keeps 63 bytes of it)."""
    return f"{APPLICATION_NAME}:{schema}"[:63]


class FinalItemWatch:
    """The api process's listener for finished items and the requests waiting on them.

    Args:
        database_url: libpq URL (``DATABASE_URL``).
        schema: the project schema; notifications of other schemas in the database are ignored.
    """

    def __init__(self, database_url: str, schema: str) -> None:
        self._database_url = database_url
        self._schema = schema
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None

    # --- the waiting side --------------------------------------------------------------------
    @contextlib.contextmanager
    def watching(self, job_id: int) -> Iterator[asyncio.Event]:
        """An event set when an item of job ``job_id`` may have become final (a notification,
        or the listener reconnected); clear it before each read of the item."""
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._waiters.get(job_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[job_id]

    @property
    def waiting(self) -> int:
        """Jobs with at least one waiting request."""
        return len(self._waiters)

    def dispatch(self, payload: str) -> bool:
        """Wake the waiters of the job a notification names; True when it named one of ours.

        A payload that is not the trigger's JSON, or names another schema, wakes nobody.
        """
        try:
            note: Any = json.loads(payload)
            job_id = int(note["job_id"]) if note.get("schema") == self._schema else None
        except (ValueError, TypeError, KeyError, AttributeError):
            return False
        if job_id is None:
            return False
        for event in self._waiters.get(job_id, ()):
            event.set()
        return job_id in self._waiters

    def wake_all(self) -> None:
        """Wake every waiter (notifications may have been lost: each reads its item once)."""
        for events in self._waiters.values():
            for event in events:
                event.set()

    # --- the listening side ------------------------------------------------------------------
    def start(self) -> None:
        """Start listening in a task of the running event loop (the app's lifespan)."""
        self._task = asyncio.get_running_loop().create_task(self._listen_forever())

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        LISTENER_UP.set(0)

    async def _listen_forever(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while True:
            listened = False

            def listening() -> None:
                nonlocal listened
                listened = True
                self.wake_all()  # what was notified while we were away is lost: read again

            try:
                await self._listen(listening)
            except (psycopg.Error, OSError) as exc:
                # Why OSError too: a socket closed under the connection can surface as one
                # before psycopg wraps it.
                log.warning("api_item_final_listener_lost", error=type(exc).__name__,
                            retry_in_seconds=delay)  # fmt: skip
            LISTENER_UP.set(0)
            if listened:
                delay = RECONNECT_MIN_SECONDS  # it was up: the first retry comes soon
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _listen(self, on_listening: Callable[[], None]) -> None:
        """Connect, LISTEN, call ``on_listening``, then dispatch notifications until the
        connection fails (raises psycopg.Error)."""
        async with await psycopg.AsyncConnection.connect(
            self._database_url,
            autocommit=True,
            application_name=application_name(self._schema),
            options=f"-c search_path={check_schema_name(self._schema)}",
        ) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            LISTENER_UP.set(1)
            LISTENER_CONNECTS.inc()
            log.info("api_item_final_listening", schema=self._schema)
            on_listening()
            async for notify in conn.notifies():
                self.dispatch(notify.payload)
