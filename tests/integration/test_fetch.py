"""Integration tests for pipeline.fetch over real sockets, against a small local HTTP server.

The server runs in a thread on 127.0.0.1 (a free port picked at runtime). The fetcher's policy
allowlists ``127.0.0.0/8`` only, so every other private address stays blocked. A test resolver
maps a few ``*.test`` names (``images.test`` -> 127.0.0.1, ``evil.test`` -> 10.0.0.1) and
falls back to ``socket.getaddrinfo``.
"""

from __future__ import annotations

import gzip
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from pipeline.errors import (
    EmptySource,
    InvalidSourceUrl,
    NotAnImage,
    SourceBlocked,
    SourceHttpError,
    SourceTooLarge,
    SourceUnreachable,
    UnsupportedMediaType,
)
from pipeline.fetch import SourceFetcher
from pipeline.images import normalize_input
from pipeline.ssrf import AddressPolicy, system_resolver

pytestmark = pytest.mark.integration

CORPUS = Path("/work/shared/data/images")
PHOTOS = {
    "store-fashion/beanie-green.jpg": "image/jpeg",
    "store-food/kiwi-cutout.webp": "image/webp",
    "store-food/apricot-cutout.png": "image/png",
    "store-portraits/portrait-hopper-tiny-exif6.jpg": "image/jpeg",
    "store-garden/hero-rock-garden-camera.jpg": "image/jpeg",
}
CAP = 6 * 1024 * 1024  # bytes; the camera original (4.7 MiB) fits
HUGE = b"\xff\xd8\xff" + b"\0" * (CAP + 1)
ALLOWLIST = AddressPolicy.from_setting("127.0.0.0/8")


class Handler(BaseHTTPRequestHandler):
    """Routes for every case; records Host headers and client ports."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, int, str]]] = []  # (path, client port, Host header)
    stop: ClassVar[threading.Event] = threading.Event()

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def _send(self, status: int, body: bytes, content_type: str | None, **headers: str) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: PLR0912 - one branch per route reads best here
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        Handler.seen.append((path, self.client_address[1], self.headers.get("Host", "")))
        if path.startswith("/photos/"):
            name = path.removeprefix("/photos/")
            self._send(200, (CORPUS / name).read_bytes(), PHOTOS[name])
        elif path == "/text.jpg":
            self._send(200, b"this is a text file, not a JPEG\n", "image/jpeg")
        elif path == "/octet":
            self._send(200, (CORPUS / "store-food/kiwi-cutout.webp").read_bytes(), None)
        elif path == "/html":
            self._send(200, b"<html><body>login</body></html>", "text/html; charset=utf-8")
        elif path == "/empty":
            self._send(200, b"", "image/jpeg")
        elif path == "/huge":
            self._send(200, HUGE, "image/jpeg")
        elif path == "/huge-chunked":
            self._chunked(HUGE, "image/jpeg")
        elif path == "/gzip-bomb":
            body = gzip.compress(b"\0" * (CAP * 4))
            self._send(200, body, "image/png", Content_Encoding="gzip")
        elif path.startswith("/status/"):
            self._send(int(path.removeprefix("/status/")), b"error page", "text/plain")
        elif path.startswith("/redirect/"):
            left = int(path.removeprefix("/redirect/"))
            target = (
                f"/redirect/{left - 1}" if left > 1 else "/photos/store-fashion/beanie-green.jpg"
            )
            self._send(302, b"", None, Location=target)
        elif path == "/redirect-to":
            self._send(301, b"", None, Location=query["url"][0])
        elif path == "/slow-headers":
            Handler.stop.wait(3)
            self._send(200, b"late", "image/jpeg")
        elif path == "/slow-drip":
            self._drip()
        elif path == "/cut-short":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"\xff\xd8" + b"\0" * 1000)
            self.close_connection = True
        else:
            self._send(404, b"no such route", "text/plain")

    def _chunked(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, len(body), 65536):
            chunk = body[start : start + 65536]
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(1000):
            if Handler.stop.wait(0.05):
                return
            self.wfile.write(b"\0")
            self.wfile.flush()


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hang up on purpose (caps, timeouts); that is not a server error here."""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.stop.clear()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        Handler.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


class FixedNames:
    """A few fixed names; everything else through getaddrinfo. Records every lookup."""

    def __init__(self) -> None:
        self.table: dict[str, list[str]] = {
            "images.test": ["127.0.0.1"],
            "evil.test": ["10.0.0.1"],
            "metadata.test": ["169.254.169.254"],
        }
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        if host in self.table:
            return self.table[host]
        return system_resolver(host, port)


@pytest.fixture
def resolver() -> FixedNames:
    return FixedNames()


@pytest.fixture
def fetcher(resolver: FixedNames) -> Iterator[SourceFetcher]:
    with SourceFetcher(
        max_bytes=CAP, timeout=2.0, max_redirects=3, policy=ALLOWLIST, resolver=resolver
    ) as instance:
        yield instance


# --- good sources ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "content_type"), sorted(PHOTOS.items()))
def test_real_photos_come_back_byte_identical(
    fetcher: SourceFetcher, server: str, name: str, content_type: str
) -> None:
    result = fetcher.fetch(f"http://{server}/photos/{name}")

    assert result.data == (CORPUS / name).read_bytes()
    assert result.content_type == content_type
    assert result.final_url == f"http://{server}/photos/{name}"


def test_a_hostname_is_pinned_to_its_vetted_address_and_keeps_its_host_header(
    fetcher: SourceFetcher, server: str, resolver: FixedNames
) -> None:
    port = server.rsplit(":", 1)[1]
    Handler.seen.clear()

    result = fetcher.fetch(f"http://images.test:{port}/photos/store-food/apricot-cutout.png")

    assert result.data == (CORPUS / "store-food/apricot-cutout.png").read_bytes()
    assert resolver.lookups == ["images.test"]
    assert Handler.seen[-1][2] == f"images.test:{port}"


def test_a_rebinding_name_cannot_switch_address_after_the_check(server: str) -> None:
    answers = iter([["127.0.0.1"], ["10.0.0.1"], ["169.254.169.254"]])
    lookups: list[str] = []

    def rebinding(host: str, port: int) -> Sequence[str]:
        lookups.append(host)
        return next(answers)

    port = server.rsplit(":", 1)[1]
    with SourceFetcher(
        max_bytes=CAP, timeout=2.0, max_redirects=0, policy=ALLOWLIST, resolver=rebinding
    ) as fetcher:
        result = fetcher.fetch(f"http://rebind.test:{port}/photos/store-food/kiwi-cutout.webp")

    assert result.data == (CORPUS / "store-food/kiwi-cutout.webp").read_bytes()
    assert lookups == ["rebind.test"]


def test_connections_are_reused_across_fetches(fetcher: SourceFetcher, server: str) -> None:
    Handler.seen.clear()

    for _ in range(3):
        fetcher.fetch(f"http://{server}/photos/store-portraits/portrait-hopper-tiny-exif6.jpg")

    client_ports = {port for _path, port, _host in Handler.seen}
    assert len(Handler.seen) == 3
    assert len(client_ports) == 1


def test_a_generic_content_type_passes_and_is_reported_as_unknown(
    fetcher: SourceFetcher, server: str
) -> None:
    result = fetcher.fetch(f"http://{server}/octet")

    assert result.content_type is None
    assert (
        normalize_input(result.data, max_pixels=10**7, target_max_pixels=10**6).extension == "png"
    )


def test_a_redirect_chain_within_the_limit_is_followed(fetcher: SourceFetcher, server: str) -> None:
    result = fetcher.fetch(f"http://{server}/redirect/3")

    assert result.data == (CORPUS / "store-fashion/beanie-green.jpg").read_bytes()
    assert result.final_url == f"http://{server}/photos/store-fashion/beanie-green.jpg"


# --- bad sources ----------------------------------------------------------------------------


def test_a_text_file_named_jpg_downloads_but_is_not_an_image(
    fetcher: SourceFetcher, server: str
) -> None:
    result = fetcher.fetch(f"http://{server}/text.jpg")

    with pytest.raises(NotAnImage):
        normalize_input(result.data, max_pixels=10**7, target_max_pixels=10**6)


@pytest.mark.parametrize("path", ["/huge", "/huge-chunked", "/gzip-bomb"])
def test_bodies_over_the_cap_are_too_large(fetcher: SourceFetcher, server: str, path: str) -> None:
    with pytest.raises(SourceTooLarge):
        fetcher.fetch(f"http://{server}{path}")


def test_a_declared_length_over_the_cap_is_refused_before_reading(
    server: str, resolver: FixedNames
) -> None:
    with SourceFetcher(
        max_bytes=999, timeout=2.0, max_redirects=0, policy=ALLOWLIST, resolver=resolver
    ) as small:
        started = time.monotonic()
        with pytest.raises(SourceTooLarge, match="declares"):
            small.fetch(f"http://{server}/slow-drip")  # 1000 bytes would take 50 s to drip
        assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("status", "transient"), [(404, False), (403, False), (500, True), (503, True), (429, True)]
)
def test_http_errors_carry_their_status_and_retry_class(
    fetcher: SourceFetcher, server: str, status: int, transient: bool
) -> None:
    with pytest.raises(SourceHttpError) as caught:
        fetcher.fetch(f"http://{server}/status/{status}")

    assert caught.value.status_code == status
    assert caught.value.transient is transient


def test_a_redirect_chain_over_the_limit_is_an_http_error(
    fetcher: SourceFetcher, server: str
) -> None:
    with pytest.raises(SourceHttpError, match="redirects") as caught:
        fetcher.fetch(f"http://{server}/redirect/4")

    assert caught.value.status_code == HTTPStatus.FOUND
    assert caught.value.transient is False


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.jpg",
        "http://[::ffff:a9fe:a9fe]/latest/",
        "http://evil.test/a.jpg",
        "http://metadata.test/computeMetadata/v1/",
    ],
)
def test_a_redirect_to_a_blocked_address_is_refused(
    fetcher: SourceFetcher, server: str, target: str
) -> None:
    with pytest.raises(SourceBlocked):
        fetcher.fetch(f"http://{server}/redirect-to?url={target}")


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://example.com/a.jpg", "gopher://x/"])
def test_a_redirect_to_another_scheme_is_invalid(
    fetcher: SourceFetcher, server: str, target: str
) -> None:
    with pytest.raises(InvalidSourceUrl):
        fetcher.fetch(f"http://{server}/redirect-to?url={target}")


def test_without_the_allowlist_loopback_in_any_spelling_is_blocked(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    with SourceFetcher(
        max_bytes=CAP, timeout=2.0, max_redirects=0, policy=AddressPolicy()
    ) as strict:
        for host in ("127.0.0.1", "localhost", "2130706433", "0x7f.1", "127.1", "[::1]"):
            with pytest.raises(SourceBlocked):
                strict.fetch(f"http://{host}:{port}/photos/store-food/kiwi-cutout.webp")


def test_a_wrong_content_type_is_unsupported(fetcher: SourceFetcher, server: str) -> None:
    with pytest.raises(UnsupportedMediaType, match="text/html"):
        fetcher.fetch(f"http://{server}/html")


def test_an_empty_body_is_an_empty_source(fetcher: SourceFetcher, server: str) -> None:
    with pytest.raises(EmptySource):
        fetcher.fetch(f"http://{server}/empty")


@pytest.mark.parametrize("path", ["/slow-headers", "/slow-drip"])
def test_a_slow_source_times_out_within_the_deadline_as_transient(
    server: str, resolver: FixedNames, path: str
) -> None:
    with SourceFetcher(
        max_bytes=CAP, timeout=0.5, max_redirects=0, policy=ALLOWLIST, resolver=resolver
    ) as quick:
        started = time.monotonic()
        with pytest.raises(SourceUnreachable) as caught:
            quick.fetch(f"http://{server}{path}")
        elapsed = time.monotonic() - started

    assert caught.value.transient is True
    assert 0.4 < elapsed < 1.5


def test_a_body_cut_short_is_unreachable_and_transient(fetcher: SourceFetcher, server: str) -> None:
    with pytest.raises(SourceUnreachable) as caught:
        fetcher.fetch(f"http://{server}/cut-short")

    assert caught.value.transient is True


def test_a_closed_port_is_unreachable(fetcher: SourceFetcher) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as probe:
        free_port = probe.server_address[1]  # bound, then closed: nothing listens there

    with pytest.raises(SourceUnreachable):
        fetcher.fetch(f"http://127.0.0.1:{free_port}/a.jpg")


# --- TLS: the pinned connection still verifies the certificate against the hostname ----------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ssl.SSLContext]]:
    """An HTTPS server with a self-signed certificate for ``images.test`` only."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=images.test",
         "-addext", "subjectAltName=DNS:images.test"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield str(httpd.server_address[1]), client_context
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_https_to_a_pinned_address_verifies_the_certificate_for_the_hostname(
    tls_server: tuple[str, ssl.SSLContext], resolver: FixedNames
) -> None:
    port, context = tls_server
    name = "store-food/kiwi-cutout.webp"

    with SourceFetcher(
        max_bytes=CAP,
        timeout=5.0,
        max_redirects=0,
        policy=ALLOWLIST,
        resolver=resolver,
        ssl_context=context,
    ) as fetcher:
        result = fetcher.fetch(f"https://images.test:{port}/photos/{name}")

    assert result.data == (CORPUS / name).read_bytes()
    assert resolver.lookups == ["images.test"]


@pytest.mark.parametrize("host", ["127.0.0.1", "other.test"])
def test_https_refuses_a_certificate_that_does_not_name_the_host(
    tls_server: tuple[str, ssl.SSLContext], resolver: FixedNames, host: str
) -> None:
    port, context = tls_server
    resolver.table["other.test"] = ["127.0.0.1"]

    with (
        SourceFetcher(
            max_bytes=CAP,
            timeout=5.0,
            max_redirects=0,
            policy=ALLOWLIST,
            resolver=resolver,
            ssl_context=context,
        ) as fetcher,
        pytest.raises(SourceUnreachable, match=r"(?i)certificate"),
    ):
        fetcher.fetch(f"https://{host}:{port}/photos/store-food/kiwi-cutout.webp")
