"""The SSRF guard: which addresses a source fetch may connect to, and a transport that pins them.

Upstream systems choose the source URLs, so a URL such as ``http://169.254.169.254/latest/``
(the cloud metadata service) or a hostname that resolves to ``10.0.0.1`` must never be fetched.
Three pieces:

* :class:`AddressPolicy` — pure logic: an IP address is refused when it is not globally
  routable (RFC 1918 / ULA private, loopback, link-local incl. ``169.254.169.254``, CGNAT
  ``100.64.0.0/10``, unspecified, multicast, reserved, documentation, benchmarking), judged
  through IPv6 forms that embed an IPv4 address (``::ffff:10.0.0.1``, NAT64 ``64:ff9b::/96``,
  6to4 ``2002::/16``, IPv4-compatible ``::a.b.c.d``) — unless it lies in an allowlisted CIDR.
* :class:`PinningBackend` — an ``httpcore`` network backend that resolves the host **once**
  (through an injectable resolver), vets **every** address it got, and opens the TCP
  connection to a vetted address literal. No second lookup happens, so DNS rebinding cannot
  swap the address between the check and the connect. The URL is left alone, so the ``Host``
  header, TLS SNI and certificate verification all still use the original hostname.
* :class:`PinnedTransport` — an ``httpx`` transport over an ``httpcore.ConnectionPool`` that
  uses the backend above. Connections are pooled per origin (scheme, hostname, port) and each
  new connection is vetted, so keep-alive reuse stays safe.

``SourceBlocked`` raised inside the backend passes through httpcore and httpx unchanged.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpcore
import httpx
import structlog

from pipeline.errors import ConfigurationError, SourceBlocked

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> IP address strings``; raises ``OSError`` when the name does not resolve."""

log = structlog.get_logger(__name__)

#: Special-purpose ranges (IANA IPv4/IPv6 special-purpose registries) that a fetch may not reach.
#: ``ipaddress``' ``is_global`` is checked as well, as a safety net for anything missed here.
_BLOCKED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), label)
    for cidr, label in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/8", "reserved"),
        ("64:ff9b:1::/48", "local NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address an IPv6 address stands for, if it embeds one.

    Covers IPv4-mapped (``::ffff:a.b.c.d``), NAT64 well-known prefix (``64:ff9b::a.b.c.d``),
    6to4 (``2002:AABB:CCDD::``) and the deprecated IPv4-compatible form (``::a.b.c.d``, other
    than ``::`` and ``::1``).
    """
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _NAT64 or (addr in _IPV4_COMPATIBLE and int(addr) > 1):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def parse_ip(value: str | IPAddress) -> IPAddress:
    """Parse an address literal, dropping an IPv6 zone (``fe80::1%eth0``).

    Raises:
        SourceBlocked: the value is not an IP address literal (never connect to it).
    """
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError as exc:
        raise SourceBlocked(f"resolver returned a non-address {value!r}") from exc


@dataclass(frozen=True)
class AddressPolicy:
    """Decides whether a fetch may connect to an IP address.

    Attributes:
        allowlist: networks let through even though they are not public (e.g. ``127.0.0.0/8``
            for a local demo, or an internal image CDN).
    """

    allowlist: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_setting(cls, value: str) -> AddressPolicy:
        """Build a policy from ``Settings.source_allowlist`` (comma-separated CIDRs).

        Args:
            value: e.g. ``"127.0.0.0/8, ::1/128"``; empty means nothing is allowlisted.

        Raises:
            ConfigurationError: an entry is not a CIDR (host bits set count as a typo).
        """
        networks: list[IPNetwork] = []
        for raw in value.split(","):
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry))
            except ValueError as exc:
                raise ConfigurationError(f"source allowlist entry {entry!r}: {exc}") from exc
        return cls(allowlist=tuple(networks))

    def is_allowlisted(self, addr: IPAddress) -> bool:
        """True when the address, or the IPv4 address it embeds, is in the allowlist."""
        if any(addr.version == net.version and addr in net for net in self.allowlist):
            return True
        if isinstance(addr, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(addr)
            return embedded is not None and self.is_allowlisted(embedded)
        return False

    def blocked_reason(self, ip: str | IPAddress) -> str | None:
        """Say why an address is refused, or ``None`` when a fetch may connect to it."""
        addr = parse_ip(ip)
        if self.is_allowlisted(addr):
            return None
        if isinstance(addr, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(addr)
            if embedded is not None:
                reason = self.blocked_reason(embedded)
                return None if reason is None else f"{reason} (embedded IPv4 {embedded})"
        for network, label in _BLOCKED:
            if addr.version == network.version and addr in network:
                return label
        if not addr.is_global:
            return "not globally routable"
        return None

    def check(self, ip: str | IPAddress) -> None:
        """Refuse an address a fetch may not connect to.

        Raises:
            SourceBlocked: the address is non-public and not allowlisted.
        """
        reason = self.blocked_reason(ip)
        if reason is not None:
            raise SourceBlocked(f"address {ip} is {reason}")


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve a hostname with ``socket.getaddrinfo`` (TCP), in the resolver's order.

    Args:
        host: hostname or address literal.
        port: TCP port.

    Returns:
        Distinct address strings.

    Raises:
        OSError: (``socket.gaierror``) the name does not resolve.
    """
    seen: dict[str, None] = {}
    for _family, _type, _proto, _name, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


class PinningBackend(httpcore.NetworkBackend):
    """An httpcore network backend that resolves once, vets, and connects to the vetted IP.

    Args:
        policy: the address policy every resolved address must pass.
        resolver: ``(host, port) -> addresses``; injectable for tests.
        inner: the backend that opens sockets (``httpcore.SyncBackend`` by default); it only
            ever sees address literals that passed the policy.
        max_attempts: how many of the vetted addresses to try before giving up.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        resolver: Resolver = system_resolver,
        inner: httpcore.NetworkBackend | None = None,
        max_attempts: int = 3,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = inner if inner is not None else httpcore.SyncBackend()
        self._max_attempts = max_attempts

    def vetted_addresses(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` once and vet every address.

        Returns:
            The addresses, all allowed by the policy.

        Raises:
            SourceBlocked: any address is refused (one bad record taints the name).
            httpcore.ConnectError: the name does not resolve.
        """
        try:
            addresses = list(self._resolver(host, port))
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host!r} resolved to no address")
        for address in addresses:
            reason = self._policy.blocked_reason(address)
            if reason is not None:
                log.warning("source_blocked", host=host, address=address, reason=reason)
                raise SourceBlocked(f"{host} resolves to {address}, which is {reason}")
        return [str(parse_ip(address)) for address in addresses]

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Open a TCP connection to a vetted address of ``host`` (see :meth:`vetted_addresses`)."""
        last_error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in self.vetted_addresses(host, port)[: self._max_attempts]:
            try:
                return self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None  # vetted_addresses never returns an empty list
        raise last_error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Unix sockets are never a valid source."""
        raise SourceBlocked("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        """Delegate to the inner backend."""
        self._inner.sleep(seconds)


# Most specific first: the first match wins.
_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProxyError, httpx.ProxyError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """Translate httpcore exceptions into the matching httpx ones (as httpx's own transport)."""
    try:
        yield
    except Exception as exc:
        for source, target in _EXCEPTIONS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class PinnedTransport(httpx.BaseTransport):
    """An httpx transport whose connections go only to addresses the policy allows.

    Args:
        backend: the pinning network backend.
        ssl_context: TLS settings; defaults to httpx's (certifi CA bundle, verification on).
        limits: connection pool limits.
    """

    def __init__(
        self,
        backend: PinningBackend,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits or httpx.Limits(
            max_connections=64, max_keepalive_connections=32, keepalive_expiry=30.0
        )
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request through the pinned connection pool."""
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            core_response = self._pool.handle_request(core_request)
        assert isinstance(core_response.stream, Iterable)
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(core_response.stream),
            extensions=core_response.extensions,
        )

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()
