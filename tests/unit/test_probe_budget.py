"""The database probe of ``/metrics`` fits in the scraper's timeout (pure logic)."""

from __future__ import annotations

import pytest

from api.http_metrics import DATABASE_PROBE_SECONDS, probe_budget


@pytest.mark.parametrize(
    ("header", "budget"),
    [
        ("0.9", 0.72),  # a 1 s scrape interval: the probe must give up before the scrape does
        ("10", DATABASE_PROBE_SECONDS),  # Prometheus' default timeout: our own cap holds
        (None, DATABASE_PROBE_SECONDS),  # no header: another scraper
        ("", DATABASE_PROBE_SECONDS),
        ("soon", DATABASE_PROBE_SECONDS),
        ("-1", DATABASE_PROBE_SECONDS),
        ("nan", DATABASE_PROBE_SECONDS),
    ],
)
def test_the_probe_takes_at_most_80_percent_of_the_scrape_timeout(
    header: str | None, budget: float
) -> None:
    assert probe_budget(header) == pytest.approx(budget)
