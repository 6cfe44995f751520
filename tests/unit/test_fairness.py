"""Weighted round-robin selection across stores (pure logic)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scheduler.fairness import rotation, round_robin


def test_round_robin_takes_one_item_per_store_per_round_in_store_order() -> None:
    heads = {"b": ["b1", "b2", "b3"], "a": ["a1", "a2"], "c": ["c1"]}
    selection = round_robin(heads, {}, None, 10)
    assert selection.items == ["a1", "b1", "c1", "a2", "b2", "b3"]
    assert selection.cursor == "b"


def test_a_store_with_one_item_is_served_in_the_first_round_behind_a_huge_store() -> None:
    heads = {"big": [f"big{i}" for i in range(50_000)], "small": ["small1"]}
    assert "small1" in round_robin(heads, {}, None, 2).items


def test_cursor_continues_the_rotation_after_the_store_served_last() -> None:
    heads = {s: [f"{s}1", f"{s}2"] for s in "abcde"}
    first = round_robin(heads, {}, None, 2)
    assert first.items == ["a1", "b1"]
    second = round_robin(heads, {}, first.cursor, 2)
    assert second.items == ["c1", "d1"]
    assert rotation(list("abcde"), "e") == list("abcde")


def test_weights_give_a_store_that_many_items_per_round() -> None:
    heads = {"a": ["a1", "a2", "a3", "a4"], "b": ["b1", "b2", "b3", "b4"]}
    selection = round_robin(heads, {"a": 3}, None, 6)
    assert selection.items == ["a1", "a2", "a3", "b1", "a4", "b2"]


def test_limit_zero_selects_nothing_and_keeps_the_cursor() -> None:
    selection = round_robin({"a": ["a1"]}, {}, "x", 0)
    assert selection.items == []
    assert selection.cursor == "x"


@given(
    st.dictionaries(st.text(min_size=1, max_size=3), st.integers(0, 20), min_size=1, max_size=8),
    st.integers(0, 60),
)
def test_every_backlogged_store_gets_within_one_item_of_every_other(
    sizes: dict[str, int], limit: int
) -> None:
    heads = {store: [(store, i) for i in range(n)] for store, n in sizes.items()}
    chosen = round_robin(heads, {}, None, limit).items
    assert len(chosen) == min(limit, sum(sizes.values()))
    per_store = {store: sum(1 for s, _ in chosen if s == store) for store in sizes}
    backlogged = [per_store[s] for s in sizes if per_store[s] < sizes[s]]
    if backlogged:
        assert max(per_store.values()) - min(backlogged) <= 1
    for store in sizes:  # within a store the given order is kept
        got = [i for s, i in chosen if s == store]
        assert got == sorted(got)


@given(
    st.dictionaries(st.sampled_from("abcdefgh"), st.integers(1, 5), min_size=1, max_size=8),
    st.integers(1, 4),
)
def test_backlogged_stores_get_shares_proportional_to_their_weights(
    weights: dict[str, int], rounds: int
) -> None:
    heads = {store: [(store, i) for i in range(100)] for store in weights}
    limit = rounds * sum(weights.values())
    chosen = round_robin(heads, weights, None, limit).items
    for store, weight in weights.items():
        assert sum(1 for s, _ in chosen if s == store) == rounds * weight


def test_successive_small_selections_visit_every_store_before_any_store_twice() -> None:
    heads = {s: [f"{s}{i}" for i in range(5)] for s in "abcdefg"}
    cursor = None
    served: list[str] = []
    for _ in range(7):
        selection = round_robin(heads, {}, cursor, 1)
        served.extend(item[0] for item in selection.items)
        heads = {s: [i for i in items if i not in selection.items] for s, items in heads.items()}
        cursor = selection.cursor
    assert served == list("abcdefg")
