"""Metering: move PENDING items to the queue, round-robin across stores, a bounded few at a time.

Only a few seconds of create budget are ever QUEUED or SUBMITTING (DESIGN §4), so the order in
which stores are served is decided here, by :func:`pipeline.fairness.round_robin`, and not by
the broker's FIFO: a store that inserts one item behind 50,000 of another store's waits at
most one round.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog

from pipeline.fairness import rotation, round_robin
from pipeline.models import ModelSpec
from pipeline.repository import Repository, Row
from pipeline.validation import validate_item

log = structlog.get_logger(__name__)


def in_flight_limit(create_rpm: int, budget_seconds: float, minimum: int) -> int:
    """How many items may be QUEUED or SUBMITTING at once: ``budget_seconds`` of the rate.

    Args:
        create_rpm: create budget, requests per minute.
        budget_seconds: seconds of budget to keep ready (DESIGN §4: "a few seconds").
        minimum: floor, so tiny budgets still keep workers busy.
    """
    return max(minimum, math.ceil(create_rpm / 60.0 * budget_seconds))


@dataclass(frozen=True)
class MeterResult:
    """One metering pass: items queued, items failed by validation, in flight before."""

    queued: int
    invalid: int
    in_flight: int
    limit: int


class Meter:
    """The scheduler's metering duty (``run_once`` per tick)."""

    def __init__(
        self,
        *,
        repo: Repository,
        allowlist: Mapping[str, ModelSpec],
        limit: int,
        enqueue: Callable[[Iterable[int]], int],
    ) -> None:
        self._repo = repo
        self._allowlist = allowlist
        self._limit = limit
        self._enqueue = enqueue
        self.cursor: str | None = None

    def run_once(self, now: datetime) -> MeterResult:
        """Queue up to the free in-flight capacity; commit before sending each message.

        Args:
            now: the time due items are compared with (``next_attempt_at``).
        """
        in_flight = self._repo.count_in_flight()
        capacity = self._limit - in_flight
        if capacity <= 0:
            return MeterResult(0, 0, in_flight, self._limit)
        stores = dict(self._repo.pending_stores())
        if not stores:
            return MeterResult(0, 0, in_flight, self._limit)
        visit = rotation(list(stores), self.cursor)[:capacity]
        per_store = max(stores[s] for s in visit) * math.ceil(capacity / len(visit))
        rows = self._repo.pending_heads(visit, per_store, now)
        heads: dict[str, list[Row]] = {store: [] for store in visit}
        for row in rows:
            heads[row["store_id"]].append(row)
        for store_rows in heads.values():
            store_rows.sort(key=lambda r: (-int(r["priority"]), r["created_at"], r["id"]))
        selection = round_robin(heads, stores, self.cursor, capacity)
        invalid: list[tuple[int, str, str]] = []
        valid: list[int] = []
        for row in selection.items:
            error = validate_item(row, self._allowlist)
            if error is None:
                valid.append(int(row["id"]))
            else:
                invalid.append((int(row["id"]), error.code, error.message))
        failed = self._repo.fail_pending_many(invalid)
        for item_id, code, _ in invalid:
            log.warning("item_failed", item_id=item_id, error_code=code, stage="validation")
        # Commit QUEUED first, then send: a worker must never see a message for a PENDING row.
        queued = self._repo.mark_queued(valid)
        sent = self._enqueue(queued)
        if selection.items:
            self.cursor = selection.cursor
        if sent:
            log.debug("items_queued", count=sent, in_flight=in_flight, limit=self._limit)
        return MeterResult(sent, len(failed), in_flight, self._limit)
