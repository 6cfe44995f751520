"""Per-store quotas: at most N items started per rolling window (seed: 20 per user per 24 h).

Default off. A store's quota is ``image_optimization_stores.daily_item_quota``, else
``IMAGEOPT_DEFAULT_DAILY_ITEM_QUOTA`` (0 = no quota). "Started" means queued by the scheduler:
an item counts once, at its latest ``queued_at``, for ``IMAGEOPT_QUOTA_WINDOW_SECONDS``
(86 400 s). The scheduler asks :meth:`QuotaGate.remaining` before each metering pass and skips
stores at their quota, so their items **stay PENDING** until the window frees up (never
dropped, never failed). ``imageopt status`` shows each limited store's usage and how many items
are held; the scheduler logs ``quota_reached`` / ``quota_released`` when a store's state flips and
exports ``imageopt_quota_held_stores`` and ``imageopt_quota_holds_total``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from pipeline import metrics
from pipeline.config import Settings
from pipeline.repository import Repository

log = structlog.get_logger(__name__)

DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class QuotaConfig:
    """Quota settings.

    Attributes:
        default_quota: items per window for stores without their own quota; 0 = off.
        window_seconds: length of the rolling window, seconds (86 400 = 24 h).
    """

    default_quota: int = 0
    window_seconds: float = DAY_SECONDS


@dataclass(frozen=True)
class StoreQuota:
    """One store's quota state at a moment.

    Attributes:
        store_id: the store.
        quota: items per window, or None when unlimited.
        used: items started within the window.
        remaining: items that may still start now (None when unlimited).
        frees_at: when the oldest counted item leaves the window (None when nothing counted).
    """

    store_id: str
    quota: int | None
    used: int
    remaining: int | None
    frees_at: datetime | None


def store_quotas(
    repo: Repository, config: QuotaConfig, store_ids: Sequence[str], now: datetime
) -> dict[str, StoreQuota]:
    """Quota state of each given store at ``now`` (one query)."""
    out: dict[str, StoreQuota] = {}
    for usage in repo.quota_usage(store_ids, now, config.window_seconds, config.default_quota):
        quota, used = usage.quota, usage.used
        remaining = None if quota is None else max(0, quota - used)
        out[usage.store_id] = StoreQuota(usage.store_id, quota, used, remaining, usage.frees_at)
    return out


class QuotaGate:
    """The scheduler's view of quotas: how many items each store may still start."""

    def __init__(self, repo: Repository, config: QuotaConfig) -> None:
        self._repo = repo
        self._config = config
        self._held: set[str] = set()

    def remaining(self, store_ids: Sequence[str], now: datetime) -> dict[str, int | None]:
        """Items each store may still start at ``now`` (None = unlimited).

        Logs ``quota_reached`` when a store hits its quota and ``quota_released`` when it may
        start items again (once per change, not per tick).
        """
        states = store_quotas(self._repo, self._config, store_ids, now)
        result: dict[str, int | None] = {}
        for store_id in store_ids:
            state = states.get(store_id)
            left = state.remaining if state else None
            result[store_id] = left
            if left == 0 and store_id not in self._held:
                self._held.add(store_id)
                metrics.QUOTA_HOLDS_TOTAL.inc()
                assert state is not None
                log.warning(
                    "quota_reached",
                    store_id=store_id,
                    quota=state.quota,
                    used=state.used,
                    window_seconds=self._config.window_seconds,
                    frees_at=state.frees_at.isoformat() if state.frees_at else None,
                )
            elif left != 0 and store_id in self._held:
                self._held.discard(store_id)
                log.info("quota_released", store_id=store_id, remaining=left)
        # Stores that no longer have PENDING items are not "held" any more.
        self._held &= set(store_ids)
        metrics.QUOTA_HELD_STORES.set(len(self._held))
        return result

    @property
    def held(self) -> frozenset[str]:
        """Stores currently held back by their quota (as of the last call)."""
        return frozenset(self._held)


def quota_report(
    repo: Repository, config: QuotaConfig, store_ids: Sequence[str], now: datetime
) -> dict[str, dict[str, Any]]:
    """For ``imageopt status`` and the API: limited stores' quota, usage and held items.

    Returns:
        ``{store: {"quota", "used", "remaining", "pending_held", "frees_at"}}`` for every
        given store that has a quota; ``pending_held`` is the PENDING items waiting only
        because of the quota (0 unless ``remaining`` is 0).
    """
    states = {s: q for s, q in store_quotas(repo, config, store_ids, now).items() if q.quota}
    pending = repo.pending_counts(list(states))
    return {
        store_id: {
            "quota": q.quota,
            "used": q.used,
            "remaining": q.remaining,
            "pending_held": pending.get(store_id, 0) if q.remaining == 0 else 0,
            "frees_at": q.frees_at.isoformat() if q.frees_at else None,
            "window_seconds": config.window_seconds,
        }
        for store_id, q in states.items()
    }


def quota_config(settings: Settings) -> QuotaConfig:
    """The quota settings of a process (``IMAGEOPT_DEFAULT_DAILY_ITEM_QUOTA``, window)."""
    return QuotaConfig(
        default_quota=settings.default_daily_item_quota,
        window_seconds=settings.quota_window_seconds,
    )
