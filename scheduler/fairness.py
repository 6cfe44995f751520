"""Weighted round-robin selection across stores: which PENDING items go to the queue next.

Each round visits the stores in a fixed order (by store id), starting after the store served
last (the cursor, so that small metering windows still rotate through every store), and takes
up to ``weight`` items from each: a store with one item is served in the first round even
behind another store's 50,000. Within a store the items arrive already ordered (priority, then
age). This is weighted round-robin as in Katevenis et al., "Weighted round-robin cell
multiplexing" (IEEE JSAC 1991), at item granularity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Selection(Generic[T]):
    """Items chosen in service order, and the store to continue after next time."""

    items: list[T]
    cursor: str | None


def rotation(stores: Sequence[str], cursor: str | None) -> list[str]:
    """Stores in visiting order: sorted, starting with the first store after ``cursor``."""
    ordered = sorted(stores)
    if cursor is None:
        return ordered
    start = next((i for i, store in enumerate(ordered) if store > cursor), 0)
    return ordered[start:] + ordered[:start]


def round_robin(
    heads: Mapping[str, Sequence[T]],
    weights: Mapping[str, int],
    cursor: str | None,
    limit: int,
) -> Selection[T]:
    """Pick up to ``limit`` items, weighted round-robin across stores.

    Args:
        heads: per store, its next items in their own order (priority, then age).
        weights: per store, items per round (missing or < 1 count as 1).
        cursor: the store served last by the previous selection, or None.
        limit: how many items at most.

    Returns:
        The items in service order and the new cursor (the last store served).
    """
    order = rotation([store for store, items in heads.items() if items], cursor)
    taken = dict.fromkeys(order, 0)
    chosen: list[T] = []
    last = cursor
    while len(chosen) < limit:
        progressed = False
        for store in order:
            queue = heads[store]
            quota = max(1, weights.get(store, 1))
            for _ in range(quota):
                if len(chosen) >= limit or taken[store] >= len(queue):
                    break
                chosen.append(queue[taken[store]])
                taken[store] += 1
                last = store
                progressed = True
            if len(chosen) >= limit:
                break
        if not progressed:
            break
    return Selection(chosen, last)
