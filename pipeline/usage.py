"""Cost per store: predictions, provider seconds and an estimated cost by model.

Every prediction's ``metrics.predict_time`` (the seconds Replicate bills hardware-priced models
for) is stored on its item (``predict_time_seconds``); :func:`usage_report` adds them up for one
store since a time, by model, and prices them. Per-store figures live in Postgres, not in
Prometheus labels (stores are unbounded).

Prices: USD per provider second and/or per prediction, by model. :data:`DEFAULT_PRICES` takes
Replicate's hardware list prices (replicate.com/pricing: Nvidia T4 $0.000225/s, L40S
$0.000975/s) for the hardware each model page named when the table was written, and
google/nano-banana's price per output image ($0.039); check them against the model pages and
override or add models with ``IMAGEOPT_MODEL_PRICES`` (JSON). An estimate only: the invoice is
the provider's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pipeline.errors import ConfigurationError
from pipeline.repository import Repository


@dataclass(frozen=True)
class Price:
    """What one model costs: USD per provider second plus USD per prediction."""

    per_second: float = 0.0
    per_prediction: float = 0.0


DEFAULT_PRICES: dict[str, Price] = {
    "nightmareai/real-esrgan": Price(per_second=0.000225),  # Nvidia T4
    "tencentarc/gfpgan": Price(per_second=0.000225),  # Nvidia T4
    "sczhou/codeformer": Price(per_second=0.000975),  # Nvidia L40S
    "stability-ai/sdxl": Price(per_second=0.000975),  # Nvidia L40S
    "google/nano-banana": Price(per_prediction=0.039),  # per output image
}


def parse_prices(raw: str) -> dict[str, Price]:
    """:data:`DEFAULT_PRICES` with ``IMAGEOPT_MODEL_PRICES`` applied.

    Args:
        raw: a JSON object ``{"owner/name": 0.000225}`` (USD per second) or
            ``{"owner/name": {"per_second": 0.0, "per_prediction": 0.039}}``; empty: none.

    Raises:
        ConfigurationError: not such an object, or a negative or non-numeric price.
    """
    prices = dict(DEFAULT_PRICES)
    if not raw.strip():
        return prices
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigurationError("IMAGEOPT_MODEL_PRICES is not JSON") from exc
    if not isinstance(data, dict):
        raise ConfigurationError("IMAGEOPT_MODEL_PRICES must be a JSON object by model")
    for model, value in data.items():
        prices[str(model)] = _price(str(model), value)
    return prices


def _price(model: str, value: Any) -> Price:
    fields = value if isinstance(value, dict) else {"per_second": value}
    try:
        price = Price(**{k: float(v) for k, v in fields.items()})
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"IMAGEOPT_MODEL_PRICES: bad price for {model}") from exc
    if price.per_second < 0 or price.per_prediction < 0:
        raise ConfigurationError(f"IMAGEOPT_MODEL_PRICES: negative price for {model}")
    return price


@dataclass(frozen=True)
class ModelUsage:
    """One model's line of the report.

    Attributes:
        model: ``owner/name``.
        predictions: predictions of the store's items that ended in the period.
        timed: how many of them reported ``metrics.predict_time``.
        provider_seconds: their summed ``predict_time``, seconds.
        estimated_cost: USD, from the price table; None when the model has no price.
    """

    model: str
    predictions: int
    timed: int
    provider_seconds: float
    estimated_cost: float | None


def usage_report(
    repo: Repository, store_id: str, since: datetime, prices: dict[str, Price]
) -> dict[str, Any]:
    """A store's predictions, provider seconds and estimated cost since ``since``, by model.

    Returns:
        ``{"store", "since", "models": [ModelUsage as dict], "total": {"predictions",
        "provider_seconds", "estimated_cost"}}`` (JSON-ready; cost in USD).
    """
    lines: list[ModelUsage] = []
    for row in repo.usage_by_model(store_id, since):
        model = str(row["model"])
        seconds = float(row["predict_seconds"])
        count = int(row["predictions"])
        price = prices.get(model)
        cost = None
        if price is not None:
            cost = round(seconds * price.per_second + count * price.per_prediction, 6)
        lines.append(ModelUsage(model, count, int(row["timed"]), round(seconds, 3), cost))
    costs = [line.estimated_cost for line in lines if line.estimated_cost is not None]
    return {
        "store": store_id,
        "since": since.isoformat(),
        "models": [asdict(line) for line in lines],
        "total": {
            "predictions": sum(line.predictions for line in lines),
            "provider_seconds": round(sum(line.provider_seconds for line in lines), 3),
            "estimated_cost": round(sum(costs), 6),
        },
    }
