"""Go-live levers changed at run time: feature flags, one model on or off, guests off, and the
staged rollout (docs/DEPLOY.md, "Feature flags and staged rollout").

Each lever is a row of ``image_optimization_golive`` (migration 0011), set by ``imageopt
flags|model|rollout|auth-required`` or the operator API (``/ops/api/flags`` ...), every change
audited. A lever without a row has its start value: the feature flags and ``AUTH_REQUIRED``
from the environment (``IMAGEOPT_FLAG_<NAME>`` first, else the seed's own name, e.g.
``SIZE_PREVIEW_ENABLED``; ``IMAGEOPT_AUTH_REQUIRED`` or ``AUTH_REQUIRED``), every model on, the
rollout at 100 %. Readers (:class:`GoLiveReader`) re-read the table at most every
:data:`READ_INTERVAL_SECONDS`; a change also NOTIFYs the scheduler leader, which then reads at
once. So a change takes effect within about a second, without a restart.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.repository import Repository, Row

FLAGS = (
    "CUSTOM_PRESETS_ENABLED",
    "SIZE_PREVIEW_ENABLED",
    "IMAGE_ANALYSIS_ENABLED",
    "ONBOARDING_ENABLED",
)
"""The feature flags of seed 004 ("Feature Flags"): custom presets, the size preview, image
analysis and the console's onboarding tips. On unless the environment or a lever says off."""

CUSTOM_PRESETS, SIZE_PREVIEW, IMAGE_ANALYSIS, ONBOARDING = FLAGS
AUTH_REQUIRED = "auth_required"
ROLLOUT = "rollout"
FLAG_PREFIX = "flag:"
MODEL_PREFIX = "model:"
READ_INTERVAL_SECONDS = 1.0
"""How stale a reader's view may be, seconds (seed 004's rollback: "< 2 minutes"; ours: 1 s)."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Rollout:
    """Which callers the creating routes admit.

    Attributes:
        percent: 0-100; a caller is in when the stable bucket of its identity
            (:func:`bucket`) is below it. 100 admits everyone (the default).
        allow_stores: stores always in (the canary's team accounts), whatever the percent.
    """

    percent: int = 100
    allow_stores: tuple[str, ...] = ()

    def admits(self, identity: str, store_id: str | None) -> bool:
        """Whether a caller is inside the rollout.

        Args:
            identity: the caller's stable identity (a guest's public id, a store's id).
            store_id: the caller's store when it is a store (the allow-list is by store).
        """
        if self.percent >= 100 or (store_id is not None and store_id in self.allow_stores):
            return True
        return bucket(identity) < self.percent

    def as_dict(self) -> dict[str, Any]:
        return {"percent": self.percent, "allowStores": list(self.allow_stores)}


def bucket(identity: str) -> int:
    """The caller's rollout bucket, 0-99: the first 8 bytes of SHA-256 of the identity, mod
    100. Stable across processes and restarts, so raising the percent only adds callers."""
    return int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big") % 100


@dataclass(frozen=True)
class GoLiveState:
    """The levers in force.

    Attributes:
        flags: every name of :data:`FLAGS` -> on.
        disabled_models: models refused at job creation and not metered.
        auth_required: guests may not create (401 ``auth_required``).
        rollout: who the creating routes admit.
    """

    flags: Mapping[str, bool]
    disabled_models: frozenset[str] = frozenset()
    auth_required: bool = False
    rollout: Rollout = field(default_factory=Rollout)

    def flag(self, name: str) -> bool:
        return bool(self.flags.get(name, True))


def env_bool(environ: Mapping[str, str], *names: str) -> bool | None:
    """The first of ``names`` set in ``environ`` as a boolean; None when none is set.

    Raises:
        ValueError: a value that is not true/false/1/0/yes/no/on/off.
    """
    for name in names:
        raw = environ.get(name)
        if raw is None or not raw.strip():
            continue
        word = raw.split("#", 1)[0].strip().lower()  # the seed writes "false  # comment"
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"{name} must be true or false, not {raw!r}")
    return None


def start_state(environ: Mapping[str, str] | None = None) -> GoLiveState:
    """The levers' start values from the environment (read once per process).

    Raises:
        ValueError: a flag variable that is not a boolean.
    """
    env = os.environ if environ is None else environ
    flags = {}
    for name in FLAGS:
        value = env_bool(env, f"IMAGEOPT_FLAG_{name}", name)
        flags[name] = True if value is None else value
    auth = env_bool(env, "IMAGEOPT_AUTH_REQUIRED", "AUTH_REQUIRED")
    return GoLiveState(flags, auth_required=bool(auth))


def state_from_rows(start: GoLiveState, rows: Iterable[Row]) -> GoLiveState:
    """The levers in force: the start values overridden by the rows (pure).

    Args:
        start: :func:`start_state`.
        rows: :meth:`Repository.golive_rows`.
    """
    flags = dict(start.flags)
    disabled = set(start.disabled_models)
    auth, rollout = start.auth_required, start.rollout
    for row in rows:
        name, value = str(row["name"]), row["value"]
        if name.startswith(FLAG_PREFIX) and name[len(FLAG_PREFIX) :] in flags:
            flags[name[len(FLAG_PREFIX) :]] = bool(value)
        elif name.startswith(MODEL_PREFIX):
            model = name[len(MODEL_PREFIX) :]
            (disabled.discard if value else disabled.add)(model)
        elif name == AUTH_REQUIRED:
            auth = bool(value)
        elif name == ROLLOUT and isinstance(value, dict):
            rollout = Rollout(
                int(value.get("percent", 100)),
                tuple(str(s) for s in value.get("allowStores", ())),
            )
    return GoLiveState(flags, frozenset(disabled), auth, rollout)


class GoLiveReader:
    """One process's view of the levers: re-reads them at most every ``interval`` seconds.

    Args:
        load: reads the rows (:meth:`Repository.golive_rows`).
        start: the start values (:func:`start_state`).
        interval: seconds a read stays fresh.
        clock: monotonic clock, seconds.

    Raises:
        pipeline.errors.DatabaseUnavailable: from :meth:`state` when Postgres is gone.
    """

    def __init__(
        self,
        load: Callable[[], list[Row]],
        *,
        start: GoLiveState | None = None,
        interval: float = READ_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._start = start if start is not None else start_state()
        self._interval = interval
        self._clock = clock
        self._read_at: float | None = None
        self._state: GoLiveState | None = None

    @classmethod
    def of(cls, repo: Repository, **kwargs: Any) -> GoLiveReader:
        return cls(repo.golive_rows, **kwargs)

    def state(self) -> GoLiveState:
        """The levers in force (read when the last read is older than ``interval``)."""
        now = self._clock()
        if self._state is None or self._read_at is None or now - self._read_at >= self._interval:
            self._state = state_from_rows(self._start, self._load())
            self._read_at = now
        return self._state

    def cached(self) -> GoLiveState | None:
        """The last read while it is fresh, else None (no database access)."""
        if self._state is None or self._read_at is None:
            return None
        return self._state if self._clock() - self._read_at < self._interval else None

    def refresh(self) -> None:
        """Read on the next :meth:`state` (a NOTIFY said something changed)."""
        self._read_at = None

    def disabled_models(self) -> frozenset[str]:
        return self.state().disabled_models


# --- changing a lever (the CLI and the operator API both call these) -------------------------
@dataclass(frozen=True)
class Change:
    """One lever set: ``changed`` is False when it already had this value (nothing written
    but the audit entry)."""

    lever: str
    value: Any
    changed: bool


def _set(
    repo: Repository, lever: str, value: Any, *, action: str, target: str, reason: str | None,
    actor: str,
) -> Change:  # fmt: skip
    row = repo.golive_set(lever, value, reason=reason, changed_by=actor[:300])
    repo.ops_audit(actor, action, target, reason, {"value": value, "changed": row is not None})
    return Change(lever, value, row is not None)


def set_flag(repo: Repository, flag: str, on: bool, *, reason: str | None, actor: str) -> Change:
    """Turn feature flag ``flag`` (one of :data:`FLAGS`) on or off, audited.

    Raises:
        ValueError: an unknown flag.
    """
    if flag not in FLAGS:
        raise ValueError(f"unknown flag {flag!r}; one of {', '.join(FLAGS)}")
    return _set(repo, FLAG_PREFIX + flag, on, action="set_flag", target=f"flag {flag}",
                reason=reason, actor=actor)  # fmt: skip


def set_model(
    repo: Repository, model: str, enabled: bool, *, known: Iterable[str], reason: str | None,
    actor: str,
) -> Change:  # fmt: skip
    """Switch model ``model`` on or off, audited. Off: new jobs for it are refused (400
    ``model_disabled``) and its PENDING items are not metered (they stay PENDING).

    Args:
        known: the allowlist's model names.

    Raises:
        ValueError: a model not in ``known``.
    """
    if model not in set(known):
        raise ValueError(f"unknown model {model!r}")
    action = "enable_model" if enabled else "disable_model"
    return _set(repo, MODEL_PREFIX + model, enabled, action=action, target=f"model {model}",
                reason=reason, actor=actor)  # fmt: skip


MAX_ALLOW_STORES = 100


def set_rollout(
    repo: Repository, percent: int, allow_stores: Iterable[str], *, reason: str | None,
    actor: str,
) -> Change:  # fmt: skip
    """Set the staged rollout (seed 004: 5 % canary, then 25, 50, 100 %), audited.

    Raises:
        ValueError: a percent outside 0-100, an empty or over-long store id, more than
            :data:`MAX_ALLOW_STORES` stores.
    """
    stores = sorted(set(allow_stores))
    if not 0 <= percent <= 100:
        raise ValueError("the percent must be between 0 and 100")
    if len(stores) > MAX_ALLOW_STORES or any(not s or len(s) > 200 for s in stores):
        raise ValueError(f"at most {MAX_ALLOW_STORES} store ids of 1 to 200 characters")
    value = Rollout(percent, tuple(stores)).as_dict()
    return _set(repo, ROLLOUT, value, action="set_rollout", target="rollout", reason=reason,
                actor=actor)  # fmt: skip


def set_auth_required(repo: Repository, on: bool, *, reason: str | None, actor: str) -> Change:
    """Require an API key to create (guests off) or let guests create again, audited."""
    return _set(repo, AUTH_REQUIRED, on, action="set_auth_required", target="auth required",
                reason=reason, actor=actor)  # fmt: skip


def describe(state: GoLiveState, models: Iterable[str]) -> dict[str, Any]:
    """The levers in force as JSON (the operator API, ``imageopt flags list``)."""
    return {
        "flags": {name: state.flag(name) for name in FLAGS},
        "models": {m: m not in state.disabled_models for m in models},
        "authRequired": state.auth_required,
        "rollout": state.rollout.as_dict(),
    }
