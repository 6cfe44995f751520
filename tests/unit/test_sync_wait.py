"""``REPLICATE_MAX_WAIT_MS`` turned into the ``Prefer: wait=N`` of sync-mode creates."""

from __future__ import annotations

import pytest

from tests.conftest import settings_from
from workers.services import sync_wait_seconds


@pytest.mark.parametrize(
    ("ms", "seconds"),
    [("0", 0), ("1", 1), ("1000", 1), ("1500", 2), ("60000", 60), ("120000", 60)],
)
def test_the_wait_is_whole_seconds_rounded_up_and_capped_at_replicates_60(
    ms: str, seconds: int
) -> None:
    assert sync_wait_seconds(settings_from({"REPLICATE_MAX_WAIT_MS": ms})) == seconds
