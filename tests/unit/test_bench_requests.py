"""``bench.bench_requests``: an item's CPU rebuilt from its request mix (pure arithmetic)."""

from __future__ import annotations

import pytest

from bench.bench_requests import Cost, per_item


def test_an_items_cost_is_each_requests_cost_times_its_count() -> None:
    costs = [
        Cost("s3 put", client_ms=1.0, servers={"s3": 2.0}, wall_ms=3.0),
        Cost("postgres write", client_ms=0.5, servers={"postgres": 0.25}, wall_ms=1.0),
        Cost("unused", client_ms=9.0, servers={"s3": 9.0}, wall_ms=9.0),
    ]
    client, servers = per_item(costs, {"s3 put": 2, "postgres write": 4})
    assert client == pytest.approx(2 * 1.0 + 4 * 0.5)
    assert servers == pytest.approx({"postgres": 4 * 0.25, "s3": 2 * 2.0})


def test_a_mix_with_an_unmeasured_request_is_refused() -> None:
    with pytest.raises(KeyError):
        per_item([Cost("s3 put", 1.0, {}, 1.0)], {"s3 get": 1})
