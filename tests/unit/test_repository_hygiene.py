"""The tracked files hold no leftovers of a merge: a conflict marker in SQL, YAML or Markdown is
not caught by ruff or mypy (one in ``queries.sql`` once reached a running api as a 500)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^(<{7} |={7}$|>{7} )", re.MULTILINE)


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    files = [ROOT / name.decode() for name in listed if name]
    return [path for path in files if path.is_file() and b"\0" not in path.read_bytes()[:8192]]


def test_no_tracked_file_holds_a_merge_conflict_marker() -> None:
    files = _tracked_text_files()
    assert len(files) > 100  # the listing worked
    found = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
        for path in files
        for text in [path.read_text(errors="replace")]
        for match in MARKER.finditer(text)
    ]
    assert found == []
