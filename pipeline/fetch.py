"""Download a source image over HTTP(S) under a size cap, a deadline and the SSRF guard.

Errors (see :mod:`pipeline.errors`)::

    not http/https, malformed, no host, too long   InvalidSourceUrl
    a hop resolves to a refused address            SourceBlocked        (pipeline.ssrf)
    DNS failure, connect/read error, deadline      SourceUnreachable    transient
    HTTP 4xx/5xx, too many redirects               SourceHttpError      5xx/408/429 transient
    Content-Length or body over ``max_bytes``      SourceTooLarge
    declared type not JPEG/PNG/WebP                UnsupportedMediaType
    zero-byte body                                 EmptySource

Choices:

* Redirects are followed here, not by httpx, so that each hop's URL is checked (scheme, host)
  and each new connection is vetted by the pinning transport. ``max_redirects`` counts hops
  after the first request.
* ``timeout`` (seconds) is one deadline for the whole fetch, redirects included. Each request
  gets the remaining budget as its per-operation socket timeout, and the deadline is checked
  between body chunks, so a slow-drip server is cut off too (worst case: the deadline plus
  one socket timeout).
* A declared ``Content-Type`` is only a first filter; missing or generic types
  (``application/octet-stream``, ``binary/octet-stream`` as S3 serves untyped objects) pass,
  and :mod:`pipeline.images` identifies the bytes by their magic numbers anyway. ``image/jpg``
  and ``image/pjpeg`` are accepted as JPEG aliases, which many servers send.
* ``Accept-Encoding: identity`` is sent; a server that compresses anyway is decoded, and the
  size cap applies to the decoded body, so a gzip bomb is stopped at ``max_bytes`` as well
  (one network read, at most 64 KiB compressed, is inflated before the check).
* URLs are never logged whole (presigned queries carry credentials); only the host.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import httpcore
import httpx
import structlog

from pipeline.capped_read import read_capped
from pipeline.errors import (
    EmptySource,
    InvalidSourceUrl,
    SourceHttpError,
    SourceTooLarge,
    SourceUnreachable,
    UnsupportedMediaType,
)
from pipeline.images import ALLOWED_CONTENT_TYPES
from pipeline.ssrf import AddressPolicy, PinnedTransport, PinningBackend, Resolver, system_resolver

log = structlog.get_logger(__name__)

_CONTENT_TYPE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
_GENERIC_CONTENT_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_URL_LENGTH = 8192
"""Characters; longer source URLs are refused as malformed."""
_HOST_CHARS = re.compile(r"[A-Za-z0-9._-]+")  # after IDNA encoding; no %, spaces or controls
_HEADERS = {
    "Accept": ", ".join([*sorted(ALLOWED_CONTENT_TYPES), "*/*;q=0.1"]),
    "Accept-Encoding": "identity",  # images are compressed already; no gzip bombs by consent
    "User-Agent": "imageopt-source-fetcher/0.1",
}


@dataclass(frozen=True)
class FetchedSource:
    """A downloaded source image, not yet validated.

    Attributes:
        data: the body, at most ``max_bytes`` bytes.
        content_type: the declared media type (lower case, without parameters, aliases
            folded), or ``None`` when the server sent none.
        final_url: the URL the body came from, after redirects.
    """

    data: bytes
    content_type: str | None
    final_url: str


def parse_s3_url(url: str) -> tuple[str, str] | None:
    """Split an ``s3://bucket/key`` source into bucket and key.

    Args:
        url: a source URL.

    Returns:
        ``(bucket, key)``, or ``None`` when the URL is not an ``s3://`` URL. The key is taken
        verbatim (no percent-decoding; ``?`` and ``#`` are part of it).

    Raises:
        InvalidSourceUrl: an ``s3://`` URL without a bucket or a key.
    """
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() != "s3":
        return None
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise InvalidSourceUrl("s3 source URL needs the form s3://bucket/key")
    return bucket, key


def check_source_url(url: str | httpx.URL) -> httpx.URL:
    """Parse a source URL and refuse anything but an absolute http(s) URL with a host.

    Address literals in odd notations (``2130706433``, ``0x7f.1``) pass here; the SSRF guard
    judges the address they resolve to.

    Raises:
        InvalidSourceUrl: other scheme (``file``, ``ftp``, ``s3``, ...), malformed, no host,
            a host with characters no hostname has, a port out of range, or longer than
            :data:`MAX_URL_LENGTH`.
    """
    if isinstance(url, str):
        text = url.strip()
        if not text or len(text) > MAX_URL_LENGTH:
            raise InvalidSourceUrl("source URL is empty or too long")
        try:
            url = httpx.URL(text)
        except httpx.InvalidURL as exc:
            raise InvalidSourceUrl(f"malformed source URL: {exc}") from exc
    if url.scheme not in ("http", "https"):
        raise InvalidSourceUrl(
            f"source URL scheme {url.scheme!r} is not supported (use http, https or s3)"
        )
    host = url.raw_host.decode("ascii", "replace")
    if not host:
        raise InvalidSourceUrl("source URL has no host")
    if not _HOST_CHARS.fullmatch(host) and not _is_ipv6_literal(host):
        raise InvalidSourceUrl(f"source URL host {host!r} is not a valid hostname")
    if url.port is not None and not 0 < url.port < 65536:
        raise InvalidSourceUrl(f"source URL port {url.port} is out of range")
    return url


def _is_ipv6_literal(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _media_type(response: httpx.Response) -> str | None:
    value = response.headers.get("content-type")
    if value is None:
        return None
    media_type = value.split(";", 1)[0].strip().lower()
    return _CONTENT_TYPE_ALIASES.get(media_type, media_type) or None


class SourceFetcher:
    """Fetches source images; one instance per process, shared by threads.

    Args:
        max_bytes: body cap in bytes (``Settings.max_input_bytes``).
        timeout: deadline in seconds for the whole fetch, redirects included
            (``Settings.fetch_timeout_seconds``).
        max_redirects: redirect hops followed after the first request
            (``Settings.fetch_max_redirects``).
        policy: the SSRF address policy.
        resolver: ``(host, port) -> addresses``; ``socket.getaddrinfo`` by default.
        network_backend: the socket layer under the SSRF guard (tests inject one that must
            never be reached); ``httpcore.SyncBackend`` by default.
        ssl_context: TLS settings; httpx's defaults (certifi, verification on) when ``None``.
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout: float,
        max_redirects: int,
        policy: AddressPolicy,
        resolver: Resolver = system_resolver,
        network_backend: httpcore.NetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_bytes < 1 or timeout <= 0 or max_redirects < 0:
            raise ValueError("max_bytes and timeout must be positive, max_redirects >= 0")
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._max_redirects = max_redirects
        backend = PinningBackend(policy, resolver, network_backend)
        self._client = httpx.Client(
            transport=PinnedTransport(backend, ssl_context=ssl_context),
            headers=_HEADERS,
            follow_redirects=False,
            trust_env=False,
            timeout=timeout,
        )

    def fetch(self, url: str) -> FetchedSource:
        """Download one source image.

        Args:
            url: an ``http``/``https`` URL.

        Returns:
            The body, declared content type and final URL.

        Raises:
            InvalidSourceUrl, SourceBlocked, SourceUnreachable, SourceHttpError,
            SourceTooLarge, UnsupportedMediaType, EmptySource: see the module docstring.
        """
        started = time.monotonic()
        deadline = started + self._timeout
        current = check_source_url(url)
        for hop in range(self._max_redirects + 1):
            response = self._send(current, deadline)
            try:
                if response.status_code in _REDIRECT_STATUSES and "location" in response.headers:
                    if hop == self._max_redirects:
                        raise SourceHttpError(
                            f"more than {self._max_redirects} redirects",
                            status_code=response.status_code,
                        )
                    current = self._next_hop(response)
                    log.debug("source_redirected", host=current.host, hop=hop + 1)
                    continue
                if not 200 <= response.status_code < 300:
                    raise SourceHttpError(
                        f"source answered HTTP {response.status_code}",
                        status_code=response.status_code,
                    )
                content_type = self._check_headers(response)
                data = self._read_body(response, deadline)
            finally:
                response.close()
            log.debug(
                "source_fetched",
                host=current.host,
                bytes=len(data),
                content_type=content_type,
                redirects=hop,
                elapsed_ms=round((time.monotonic() - started) * 1000, 1),
            )
            return FetchedSource(data=data, content_type=content_type, final_url=str(current))
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _send(self, url: httpx.URL, deadline: float) -> httpx.Response:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SourceUnreachable(f"source fetch exceeded {self._timeout} s")
        request = self._client.build_request("GET", url, timeout=httpx.Timeout(remaining))
        try:
            return self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise SourceUnreachable(f"source timed out: {exc}") from exc
        except httpx.HTTPError as exc:
            raise SourceUnreachable(f"source unreachable: {exc}") from exc

    def _next_hop(self, response: httpx.Response) -> httpx.URL:
        try:
            target = response.url.join(response.headers["location"])
        except httpx.InvalidURL as exc:
            raise InvalidSourceUrl(f"malformed redirect location: {exc}") from exc
        return check_source_url(target)

    def _check_headers(self, response: httpx.Response) -> str | None:
        content_type = _media_type(response)
        if (
            content_type is not None
            and content_type not in ALLOWED_CONTENT_TYPES
            and content_type not in _GENERIC_CONTENT_TYPES
        ):
            raise UnsupportedMediaType(f"source content type {content_type!r} is not allowed")
        return None if content_type in _GENERIC_CONTENT_TYPES else content_type

    def _read_body(self, response: httpx.Response, deadline: float) -> bytes:
        try:
            body = read_capped(
                self._until(response.iter_bytes(), deadline),
                max_bytes=self._max_bytes,
                content_length=response.headers.get("content-length"),
                too_large=self._too_large,
            )
        except httpx.DecodingError as exc:
            raise UnsupportedMediaType(f"source content encoding is broken: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise SourceUnreachable(f"source timed out: {exc}") from exc
        except httpx.HTTPError as exc:
            raise SourceUnreachable(f"source body incomplete: {exc}") from exc
        if not body:
            raise EmptySource("source body is empty")
        return body

    def _until(self, chunks: Iterator[bytes], deadline: float) -> Iterator[bytes]:
        """The chunks as they arrive (a chunk size would buffer), until the deadline passes."""
        for chunk in chunks:
            yield chunk
            if time.monotonic() > deadline:
                raise SourceUnreachable(f"source fetch exceeded {self._timeout} s")

    def _too_large(self, declared: int | None) -> SourceTooLarge:
        if declared is not None:
            return SourceTooLarge(
                f"source declares {declared} bytes, over the {self._max_bytes} byte cap"
            )
        return SourceTooLarge(f"source is over the {self._max_bytes} byte cap")

    def close(self) -> None:
        """Close pooled connections."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
