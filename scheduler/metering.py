"""Metering: move PENDING items to the queue, round-robin across stores, a bounded few at a time.

Only a few seconds of create budget are ever QUEUED or SUBMITTING (DESIGN §4), so the order in
which stores are served is decided here, by :func:`scheduler.fairness.round_robin`, and not by
the broker's FIFO: a store that inserts one item behind 50,000 of another store's waits at
most one round.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog

from pipeline import metrics
from pipeline.allowlist import ModelSpec
from pipeline.quotas import QuotaGate
from pipeline.repository import Repository
from pipeline.rows import PendingItem
from pipeline.validation import validate_item
from scheduler.fairness import Selection, round_robin

log = structlog.get_logger(__name__)

# in flight, selection, valid ids, invalid (id, code, message), failed ids, moved ids, stores seen
_Plan = tuple[
    int,
    Selection[PendingItem],
    list[int],
    list[tuple[int, str, str]],
    list[int],
    set[int],
    list[str],
]


def in_flight_limit(create_rpm: int, budget_seconds: float, minimum: int) -> int:
    """How many items may be QUEUED or SUBMITTING at once: ``budget_seconds`` of the rate.

    Args:
        create_rpm: create budget, requests per minute.
        budget_seconds: seconds of budget to keep ready (DESIGN §4: "a few seconds").
        minimum: floor, so tiny budgets still keep workers busy.
    """
    return max(minimum, math.ceil(create_rpm / 60.0 * budget_seconds))


@dataclass(frozen=True)
class DispatchResult:
    """One metering pass: items queued, items failed by validation, in flight before."""

    queued: int
    invalid: int
    in_flight: int
    limit: int
    paused: bool = False
    """True when submissions were paused (:mod:`pipeline.controls`): nothing was metered."""

    @property
    def saturated(self) -> bool:
        """The in-flight window was full: capacity frees as workers claim and submit."""
        return self.in_flight >= self.limit


class PendingDispatcher:
    """The scheduler's metering duty: PENDING items to QUEUED and their creation messages sent,
    fairly across stores (``run_once`` per tick).

    Args:
        repo: repository on the leader's session (its writes are fenced by the leader lock).
        allowlist: models items may use (invalid items fail here, before any work).
        limit: most items QUEUED or SUBMITTING at once (:func:`in_flight_limit`).
        enqueue: sends creation messages; called only after ``mark_queued`` committed.
        paused: whether submissions are paused (a flag, or a callable asked on each pass, e.g.
            :meth:`pipeline.controls.SubmissionsSwitch.paused`): meter nothing, leave every
            item PENDING.
        quota: per-store quotas (:mod:`pipeline.quotas`); stores at their quota are skipped
            and their items stay PENDING.
        disabled_models: the models switched off (asked on each pass, e.g.
            :meth:`pipeline.golive.GoLiveReader.disabled_models`): their items stay PENDING
            and never hold back the other models' items (docs/LIFECYCLE.md).
    """

    def __init__(
        self,
        *,
        repo: Repository,
        allowlist: Mapping[str, ModelSpec],
        limit: int,
        enqueue: Callable[[Iterable[int]], int],
        paused: bool | Callable[[], bool] = False,
        quota: QuotaGate | None = None,
        disabled_models: Callable[[], frozenset[str]] | None = None,
    ) -> None:
        self._repo = repo
        self._allowlist = allowlist
        self._limit = limit
        self._enqueue = enqueue
        self._paused: Callable[[], bool] = paused if callable(paused) else (lambda: paused)
        self._quota = quota
        self._disabled = disabled_models or frozenset
        self.cursor: str | None = None

    def next_stores(self, count: int) -> list[tuple[str, int]]:
        """The next ``count`` stores with PENDING items in rotation order after the cursor.

        Two bounded loose index scans (after the cursor, then wrapping from the first store up
        to the cursor), so the cost grows with ``count``, not with the number of stores.

        Returns:
            ``(store_id, weight)`` pairs, each store at most once.
        """
        cursor = self.cursor or ""
        stores = self._repo.pending_stores_after(cursor, count)
        if len(stores) < count and cursor:
            wrapped = self._repo.pending_stores_after("", count - len(stores))
            stores += [(store, weight) for store, weight in wrapped if store <= cursor]
        return stores

    def _validate(self, items: list[PendingItem]) -> tuple[list[int], list[tuple[int, str, str]]]:
        """Split items into valid ids and ``(id, error_code, message)`` of the invalid ones."""
        valid: list[int] = []
        invalid: list[tuple[int, str, str]] = []
        for item in items:
            error = validate_item(item, self._allowlist)
            if error is None:
                valid.append(item.id)
            else:
                invalid.append((item.id, error.code, error.message))
        return valid, invalid

    def _plan(self, now: datetime) -> DispatchResult | _Plan:
        """Select, validate and mark QUEUED (no messages yet); a DispatchResult when idle."""
        in_flight = self._repo.count_in_flight()
        if self._paused():
            return DispatchResult(0, 0, in_flight, self._limit, paused=True)
        capacity = self._limit - in_flight
        if capacity <= 0:
            return DispatchResult(0, 0, in_flight, self._limit)
        stores = dict(self.next_stores(capacity))
        if not stores:
            return DispatchResult(0, 0, in_flight, self._limit)
        visit = list(stores)
        per_store = max(stores[s] for s in visit) * math.ceil(capacity / len(visit))
        disabled = self._disabled()
        items = (
            self._repo.pending_heads_enabled(visit, per_store, now, sorted(disabled))
            if disabled
            else self._repo.pending_heads(visit, per_store, now)
        )
        heads: dict[str, list[PendingItem]] = {store: [] for store in visit}
        for item in items:
            heads[item.store_id].append(item)
        for store_items in heads.values():
            store_items.sort(key=lambda i: (-i.priority, i.created_at, i.id))
        if self._quota is not None:  # a store at its quota keeps its items PENDING
            for store, left in self._quota.remaining(visit, now).items():
                if left is not None:
                    del heads[store][left:]
        selection = round_robin(heads, stores, self.cursor, capacity)
        valid, invalid = self._validate(selection.items)
        failed = self._repo.fail_pending_many(invalid)
        for item_id, code, _ in invalid:
            log.warning("item_failed", item_id=item_id, error_code=code, stage="validation")
        # Committed when the pass's transaction ends, and only then sent (run_once): a worker
        # must never see a message for a PENDING row.
        moved = set(self._repo.mark_queued(valid))
        return in_flight, selection, valid, invalid, failed, moved, visit

    def run_once(self, now: datetime) -> DispatchResult:
        """Queue up to the free in-flight capacity; commit before sending each message.

        Args:
            now: the time due items are compared with (``next_attempt_at``).
        """
        # One transaction for the reads and writes of a pass (one commit, not five): the
        # QUEUED rows are committed when it ends, before any message is sent.
        with self._repo.transaction():
            planned = self._plan(now)
        if isinstance(planned, DispatchResult):
            return planned
        in_flight, selection, valid, invalid, failed, moved, visit = planned
        metrics.metered(
            {i.id: i.model for i in selection.items},
            moved,
            [(i, code) for i, code, _ in invalid],
            failed,
        )
        sent = self._enqueue([item_id for item_id in valid if item_id in moved])  # service order
        if selection.items:
            self.cursor = selection.cursor
        else:  # nothing due in these stores (backoff): move on, or we would look at them forever
            self.cursor = visit[-1]
        if sent:
            log.debug("items_queued", count=sent, in_flight=in_flight, limit=self._limit)
        return DispatchResult(sent, len(failed), in_flight, self._limit)
