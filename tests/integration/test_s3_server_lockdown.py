"""The dev S3 server has one door: its S3 gateway, with the access key.

Starts a server of its own (``scripts/s3server.py`` on free ports) and, as a stranger on the
same machine, tries to read, list, write and delete objects through every internal port
(master, volume and filer, HTTP and gRPC) and the filer's Unix socket: over plain HTTP, over
TLS without a client certificate, and with a certificate from another CA. Each attempt must be
refused; the S3 gateway with the keys must work, and the objects must be untouched after.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.s3 import (
    PrivateServer,
    server_script,
    start_private_server,
    stop_private_server,
    unique_bucket_name,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = b"a stored object nobody may read without the keys\n" * 3000  # ~150 KB: a volume chunk
KEY = "probe/secret.bin"


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateServer]:
    srv = start_private_server("lockdown-key", "lockdown-secret-not-real")
    try:
        yield srv
    finally:
        stop_private_server(srv)


def _foreign_certificate(tmp_path: Path) -> ssl.SSLContext:
    """A client context presenting a certificate from a CA of the stranger's own."""
    script = server_script()
    cfg = script.ServerConfig.from_env(
        {"S3_ENDPOINT": "127.0.0.1:1", "IMAGEOPT_RUN_DIR": str(tmp_path)}
    )
    cfg.state_dir.mkdir(parents=True)
    script.write_tls(cfg)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(cfg.tls_dir / "node.crt", cfg.tls_dir / "node.key")
    return context


def _attempt(client: httpx.Client, method: str, url: str, body: bytes | None) -> str | None:
    """What the stranger got: None when refused (no connection, TLS refused, or a 4xx/5xx
    without the object's bytes), else a description of what answered."""
    try:
        response = client.request(method, url, content=body, timeout=5.0)
    except httpx.TransportError:
        return None
    if response.status_code >= 400 and SECRET[:40] not in response.content:
        return None
    return f"HTTP {response.status_code}: {response.content[:80]!r}"


Probe = tuple[str, str, str, str, bytes | None]
"""What a stranger tries: (name, method, host:port, path, body)."""


def _strangers_get_through(probes: list[Probe], tmp_path: Path) -> dict[str, str]:
    """Run every probe as each kind of stranger; returns what answered (empty: all refused)."""
    strangers = {
        "plain HTTP": (httpx.Client(), "http"),
        "TLS, no client certificate": (httpx.Client(verify=False), "https"),
        "TLS, another CA's certificate": (
            httpx.Client(verify=_foreign_certificate(tmp_path)),
            "https",
        ),
    }
    answered = {}
    for stranger, (client, scheme) in strangers.items():
        with client:
            for name, method, host, path, body in probes:
                got = _attempt(client, method, f"{scheme}://{host}{path}", body)
                if got is not None:
                    answered[f"{stranger}: {name} {method} {host}{path}"] = got
    return answered


def test_filer_and_master_refuse_strangers_while_s3_with_keys_works(
    server: PrivateServer, tmp_path: Path
) -> None:
    cfg: Any = server.config()
    ports = cfg.ports
    bucket = unique_bucket_name("lockdown")
    storage = server.endpoint.storage(bucket)
    storage.ensure_bucket()
    storage.put_bytes(KEY, SECRET, "application/octet-stream")
    assert storage.get_bytes(KEY, max_bytes=len(SECRET)) == SECRET  # the door with the keys

    filer = f"127.0.0.1:{ports['filer']}"
    master = f"127.0.0.1:{ports['master']}"
    object_path = f"/buckets/{bucket}/{KEY}"
    probes: list[Probe] = [
        ("filer read", "GET", filer, object_path, None),
        ("filer list", "GET", filer, f"/buckets/{bucket}/probe/?pretty=y", None),
        ("filer write", "PUT", filer, f"/buckets/{bucket}/probe/planted.bin", b"planted"),
        ("filer delete", "DELETE", filer, object_path, None),
        ("master assign (a write ticket)", "GET", master, "/dir/assign", None),
        ("master status", "GET", master, "/dir/status", None),
    ]
    probes += [
        (f"{role} port", "GET", f"127.0.0.1:{ports[role]}", "/", None)
        for role in ("master_grpc", "volume_grpc", "filer_grpc", "s3_grpc")
    ]
    answered = _strangers_get_through(probes, tmp_path)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(cfg.state_dir / "filer.sock"))) as uds:
        for name, method, path, body in [
            ("read", "GET", object_path, None),
            ("list", "GET", f"/buckets/{bucket}/probe/?pretty=y", None),
            ("write", "PUT", f"/buckets/{bucket}/probe/planted.bin", b"planted"),
            ("delete", "DELETE", object_path, None),
        ]:
            got = _attempt(uds, method, f"http://localhost{path}", body)
            if got is not None:
                answered[f"filer Unix socket: {name} {method} {path}"] = got
    assert answered == {}

    # nothing was deleted or planted: the door with the keys sees the same objects
    assert storage.get_bytes(KEY, max_bytes=len(SECRET)) == SECRET
    assert list(storage.list_keys("")) == [KEY]
    storage.delete(KEY)
    assert list(storage.list_keys("")) == []
    storage.remove_bucket()


def test_volume_refuses_strangers(server: PrivateServer, tmp_path: Path) -> None:
    cfg: Any = server.config()
    master = f"127.0.0.1:{cfg.ports['master']}"
    # a real needle, written with the components' own client certificate
    with httpx.Client(verify=server_script().internal_tls_context(cfg)) as insider:
        assign = insider.get(f"https://{master}/dir/assign").json()
        fid, volume = assign["fid"], assign["url"]
        assert insider.put(f"https://{volume}/{fid}", content=SECRET).status_code == 201
        probes: list[Probe] = [
            ("volume read", "GET", volume, f"/{fid}", None),
            ("volume write", "PUT", volume, f"/{fid}", b"overwritten"),
            ("volume delete", "DELETE", volume, f"/{fid}", None),
            ("volume status", "GET", volume, "/status", None),
            ("master lookup (a ticket)", "GET", master, f"/dir/lookup?fileId={fid}", None),
        ]
        assert _strangers_get_through(probes, tmp_path) == {}
        assert insider.get(f"https://{volume}/{fid}").content == SECRET  # untouched
        insider.delete(f"https://{volume}/{fid}")


def test_keys_and_state_are_private_to_the_servers_user(server: PrivateServer) -> None:
    cfg: Any = server.config()
    assert cfg.state_dir.stat().st_mode & 0o777 == 0o700
    assert (cfg.state_dir / "security.toml").stat().st_mode & 0o777 == 0o600
    keys = sorted(p.relative_to(cfg.state_dir) for p in cfg.state_dir.rglob("*.key"))
    assert keys == [Path("tls/node.key")]  # the CA's key is gone: no one can issue another
    assert (cfg.tls_dir / "node.key").stat().st_mode & 0o777 == 0o600
