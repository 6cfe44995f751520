"""Progress bars of long commands: drawn on stderr when it is a terminal, nothing at all in
scripts (stderr a pipe or a file)."""

from __future__ import annotations

import io
import os
import pty
import select
import sys

import pytest

from cli.progress import SHOW_FROM, StepBar, progress


def test_nothing_is_written_when_stderr_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with progress(SHOW_FROM * 10, "uploading") as bar:
        for _ in range(SHOW_FROM * 10):
            bar.update(1)
    step = StepBar("canceling")
    for done in range(1, SHOW_FROM * 2 + 1):
        step(done, SHOW_FROM * 2)
    assert err.getvalue() == ""


def test_a_bar_is_drawn_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        step = StepBar("canceling")
        for done in range(1, SHOW_FROM + 1):
            step(done, SHOW_FROM)
        terminal.flush()
        # the terminal hands the bytes on in pieces: read up to the last frame (or 5 s of quiet)
        received = b""
        while b"100%" not in received and select.select([leader], [], [], 5)[0]:
            received += os.read(leader, 65536)
        drawn = received.decode()
    os.close(leader)
    assert "canceling" in drawn
    assert "100%" in drawn
