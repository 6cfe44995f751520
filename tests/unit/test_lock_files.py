"""The lock files (``make lock``) match ``pyproject.toml``: every declared requirement is pinned,
with hashes, to a version it allows, and the runtime lock (the Dockerfile's) pins what the full
lock (the venv's and CI's) pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)(?:\s*;\s*(.+?))?\s*\\?$")


def pins(lock: str) -> dict[str, list[tuple[Version, str | None]]]:
    """Name -> (version, marker) of each pin in a lock file; every pin must carry hashes."""
    lines = (ROOT / lock).read_text().splitlines()
    found: dict[str, list[tuple[Version, str | None]]] = {}
    for number, line in enumerate(lines):
        match = PIN.match(line)
        if match:
            assert lines[number + 1].strip().startswith("--hash=sha256:"), f"{lock}: {line}"
            name = canonicalize_name(match[1])
            found.setdefault(name, []).append((Version(match[2]), match[3]))
    return found


def assert_pinned(requirement: str, locked: dict[str, list[tuple[Version, str | None]]]) -> None:
    """The requirement has a pin for this interpreter (Python 3.11 here) that it allows."""
    req = Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate():
        return
    name = canonicalize_name(req.name)
    assert name in locked, f"{req.name} is declared but not locked: run make lock"
    applicable = [
        version
        for version, marker in locked[name]
        if marker is None or Requirement(f"{name}; {marker}").marker.evaluate()  # type: ignore[union-attr]
    ]
    assert applicable, f"{req.name}: no pin applies here: run make lock"
    for version in applicable:
        assert req.specifier.contains(version, prereleases=True), (
            f"{req.name} {version} does not satisfy {req.specifier}: run make lock"
        )


@pytest.mark.parametrize("requirement", PYPROJECT["dependencies"])
def test_every_runtime_requirement_is_pinned_in_both_locks(requirement: str) -> None:
    assert_pinned(requirement, pins("requirements.lock"))
    assert_pinned(requirement, pins("requirements-dev.lock"))


@pytest.mark.parametrize(
    "requirement",
    [r for extra in ("dev", "faces") for r in PYPROJECT["optional-dependencies"][extra]],
)
def test_every_dev_and_faces_requirement_is_pinned_in_the_full_lock(requirement: str) -> None:
    assert_pinned(requirement, pins("requirements-dev.lock"))


@pytest.mark.parametrize("requirement", PYPROJECT["optional-dependencies"]["faces"])
def test_the_runtime_lock_ships_the_faces_extra(requirement: str) -> None:
    # The Docker image installs requirements.lock: face-based analysis works in production.
    assert_pinned(requirement, pins("requirements.lock"))


def test_the_runtime_lock_pins_the_same_versions_as_the_full_lock() -> None:
    runtime, full = pins("requirements.lock"), pins("requirements-dev.lock")
    for name, versions in runtime.items():
        assert sorted(map(str, versions)) == sorted(map(str, full.get(name, []))), name
