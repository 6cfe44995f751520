"""Progress of long commands on stderr, for people at a terminal only.

``submit DIR`` (uploads), ``retry`` and ``cancel`` of many items show a bar on stderr when it is
a terminal, and ``retention`` (whose size is known only as each phase ends) one line per
phase; in scripts and pipes (stderr not a terminal) they print nothing extra, so stdout keeps
only the result and stderr only the log lines. click's bar (under typer) renders on a terminal
only; we also drop its one-line label elsewhere.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

SHOW_FROM = 10
"""Fewer steps than this finish too fast for a bar to help."""


def on_terminal() -> bool:
    """Whether stderr is a terminal (a person is watching)."""
    return sys.stderr.isatty()


@contextmanager
def progress(total: int, label: str) -> Iterator[Any]:
    """A bar of ``total`` steps on stderr (``bar.update(n)``); a silent stand-in when stderr is
    not a terminal or the work is short."""
    if total < SHOW_FROM or not on_terminal():
        yield _Silent()
        return
    with typer.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar


class _Silent:
    def update(self, steps: int) -> None:
        """Nothing to show."""


class StepBar:
    """A bar for work whose size is known only once it starts (a callback's ``(done,
    total)``): opened at the first step, closed at the last. Silent off a terminal."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = progress(total, self._label)
            self._shown = self._bar.__enter__()  # closed below, at the last step
        self._shown.update(1)
        if done >= total:
            self._bar.__exit__(None, None, None)


def phase_progress(command: str) -> Callable[[str, int], None]:
    """A callback that writes ``{command}: {phase} {count}`` to stderr after each phase of a
    long command (use it only when :func:`on_terminal`)."""

    def report(phase: str, count: int) -> None:
        typer.echo(f"{command}: {phase} {count}", err=True)

    return report
