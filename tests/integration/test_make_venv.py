"""``make venv`` where Python lacks ``venv``/``ensurepip`` (Debian without ``python3-venv``):
one line saying what to install, a failed make, and no half-made venv left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.sandbox import REPO, clean_env

pytestmark = pytest.mark.integration

# What Debian's python3 does without python3-venv: `-m venv DIR` creates DIR without pip, says
# ensurepip is not available and exits 1; everything else is the real interpreter.
DEBIAN_PYTHON_WITHOUT_VENV = """#!/bin/sh
if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p "$3/bin" && ln -sf {python} "$3/bin/python"
  echo "The virtual environment was not created successfully because ensurepip is not"
  echo "available.  On Debian/Ubuntu systems, you need to install the python3-venv package"
  exit 1
fi
exec {python} "$@"
"""


def test_make_venv_without_python3_venv_says_what_to_install(tmp_path: Path) -> None:
    python = tmp_path / "python3"
    python.write_text(DEBIAN_PYTHON_WITHOUT_VENV.format(python=sys.executable))
    python.chmod(0o755)
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["make", "--no-print-directory", "venv", f"PYTHON={python}", f"VENV={venv}"],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    ours = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert ours == [
        f"make venv: {python} -m venv failed: install python3-venv (apt-get install "
        "python3-venv), or set PYTHON to a Python 3.11 that has venv and ensurepip"
    ]
    assert not venv.exists()
