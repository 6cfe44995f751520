"""Pausing submissions while the pipeline runs: the setting, or an operator switch in Postgres.

``IMAGEOPT_SUBMISSIONS_PAUSED`` is read when a scheduler starts; the ``submissions_paused`` row
of ``image_optimization_controls`` (``imageopt submissions pause|resume``) is read by the
leader while it runs, so an incident step needs no restart. Either one pauses: the leader
meters nothing and every new or retried item stays PENDING; items already QUEUED, SUBMITTING or
PROCESSING go on (docs/SCHEDULING.md, "Pausing submissions").

One store's pause, weight and quota are not switches of this module: they are columns of
``image_optimization_stores`` that the metering query itself reads on every pass
(docs/SCHEDULING.md, "Pausing one store, weights and quotas at run time").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from pipeline.repository import Repository

log = structlog.get_logger(__name__)

SUBMISSIONS_PAUSED = "submissions_paused"
CONTROL_INTERVAL_SECONDS = 1.0
"""How often the leader re-reads the switch, seconds; a change also wakes it (NOTIFY)."""


@dataclass(frozen=True)
class PauseState:
    """Whether submissions are held back, and by what.

    Attributes:
        paused: True when the setting or the switch pauses submissions.
        source: ``setting`` (IMAGEOPT_SUBMISSIONS_PAUSED), ``switch`` (the Postgres row) or
            None when not paused.
        reason: the operator's reason given with the switch, if any.
        changed_by: who set the switch (the CLI records the OS user).
        changed_at: when the switch was last changed (database clock).
    """

    paused: bool
    source: str | None = None
    reason: str | None = None
    changed_by: str | None = None
    changed_at: datetime | None = None


def pause_state(setting: bool, row: dict[str, object] | None) -> PauseState:
    """Combine the setting with the switch's row (pure).

    Args:
        setting: ``IMAGEOPT_SUBMISSIONS_PAUSED``.
        row: :meth:`Repository.get_control` of :data:`SUBMISSIONS_PAUSED`, or None.
    """
    if row is not None and row.get("enabled"):
        changed_at = row.get("changed_at")
        return PauseState(
            True,
            "switch",
            _text(row.get("reason")),
            _text(row.get("changed_by")),
            changed_at if isinstance(changed_at, datetime) else None,
        )
    if setting:
        return PauseState(True, "setting")
    return PauseState(False)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


class SubmissionsSwitch:
    """The leader's view of the pause: re-reads the switch at most every ``interval`` seconds
    and logs each change (``submissions_paused`` warning, ``submissions_resumed``).

    Args:
        repo: repository on the leader's session.
        setting: ``IMAGEOPT_SUBMISSIONS_PAUSED``.
        interval: seconds between reads of the switch.
        clock: monotonic clock, seconds.

    Raises:
        pipeline.errors.DatabaseUnavailable: from :meth:`paused` when Postgres is gone (the
            leader stands down, as for any other of its queries).
    """

    def __init__(
        self,
        repo: Repository,
        *,
        setting: bool,
        interval: float = CONTROL_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repo = repo
        self._setting = setting
        self._interval = interval
        self._clock = clock
        self._read_at: float | None = None
        self.state: PauseState | None = None

    def paused(self) -> bool:
        """True while submissions are held back (reads the switch when it is due)."""
        now = self._clock()
        if self.state is None or self._read_at is None or now - self._read_at >= self._interval:
            self._update(pause_state(self._setting, self._repo.get_control(SUBMISSIONS_PAUSED)))
            self._read_at = now
        assert self.state is not None
        return self.state.paused

    def refresh(self) -> None:
        """Read the switch on the next :meth:`paused` (the leader was woken by a NOTIFY)."""
        self._read_at = None

    def _update(self, state: PauseState) -> None:
        before, self.state = self.state, state
        if before is not None and before.paused == state.paused:
            return
        if state.paused:
            log.warning(
                "submissions_paused",
                source=state.source,
                reason=state.reason,
                changed_by=state.changed_by,
            )
        elif before is not None:
            log.info("submissions_resumed")
