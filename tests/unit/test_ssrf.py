"""Unit tests for the SSRF guard (pipeline.ssrf) and the fetcher's URL checks, with no I/O.

The fetcher tests inject a resolver and a network backend: the backend stands where sockets
would be opened, so a test that expects a refusal proves no connection was even attempted.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Any

import httpcore
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import (
    ConfigurationError,
    InvalidSourceUrl,
    SourceBlocked,
    SourceUnreachable,
)
from pipeline.fetch import SourceFetcher, check_source_url, parse_s3_url
from pipeline.ssrf import AddressPolicy, PinningBackend

POLICY = AddressPolicy()

BLOCKED = [
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "127.0.0.1",
    "127.255.0.9",
    "169.254.169.254",  # AWS/GCP/Azure metadata
    "169.254.0.1",
    "0.0.0.0",
    "0.1.2.3",
    "100.64.0.1",
    "100.100.100.200",  # Alibaba Cloud metadata (CGNAT range)
    "192.0.0.170",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "ff02::1",
    "ff0e::1",
    "2001:db8::1",
    "2001::1",  # Teredo
    "100::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:7f00:1",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::a00:1",
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "151.101.1.69",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8 (DNS64 networks)
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]

BLOCKED_V4_NETWORKS = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
]

ipv4s = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6s = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


@pytest.mark.parametrize("address", BLOCKED)
def test_non_public_addresses_are_blocked(address: str) -> None:
    with pytest.raises(SourceBlocked):
        POLICY.check(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    POLICY.check(address)


@given(st.sampled_from(BLOCKED_V4_NETWORKS), st.integers(0, 2**32 - 1))
def test_every_address_in_a_blocked_ipv4_range_is_blocked(cidr: str, offset: int) -> None:
    network = ipaddress.IPv4Network(cidr)
    address = network[offset % network.num_addresses]

    assert POLICY.blocked_reason(address) is not None
    assert POLICY.blocked_reason(f"::ffff:{address}") is not None


@given(ipv4s)
def test_an_ipv4_mapped_ipv6_address_is_judged_like_its_ipv4_address(
    address: ipaddress.IPv4Address,
) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address))

    verdict = POLICY.blocked_reason(address) is None
    assert (POLICY.blocked_reason(mapped) is None) == verdict
    assert (POLICY.blocked_reason(nat64) is None) == verdict


@given(st.one_of(ipv4s, ipv6s))
def test_nothing_that_python_considers_non_global_gets_through(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    if not address.is_global or address.is_multicast:
        assert POLICY.blocked_reason(address) is not None


def test_allowlisted_networks_pass_and_everything_else_is_still_blocked() -> None:
    policy = AddressPolicy.from_setting("127.0.0.0/8, ::1/128 ,10.20.0.0/16,")

    for address in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1", "10.20.3.4"):
        policy.check(address)
    for address in ("10.21.0.1", "169.254.169.254", "192.168.0.1", "fe80::1", "::2"):
        with pytest.raises(SourceBlocked):
            policy.check(address)


@given(st.sampled_from(["10.0.0.0/8", "169.254.0.0/16", "fd00::/8"]), st.integers(0, 2**64))
def test_every_address_inside_an_allowlisted_network_passes(cidr: str, offset: int) -> None:
    policy = AddressPolicy.from_setting(cidr)
    network = ipaddress.ip_network(cidr)

    policy.check(network[offset % network.num_addresses])


def test_an_empty_allowlist_setting_allows_nothing_extra() -> None:
    assert AddressPolicy.from_setting("").allowlist == ()
    assert AddressPolicy.from_setting(" , ").allowlist == ()


@pytest.mark.parametrize("setting", ["10.0.0.1/8", "not-a-cidr", "10.0.0.0/33", "127.0.0.0/8;"])
def test_a_malformed_allowlist_is_a_configuration_error(setting: str) -> None:
    with pytest.raises(ConfigurationError):
        AddressPolicy.from_setting(setting)


def test_a_resolver_answer_that_is_not_an_address_is_blocked() -> None:
    with pytest.raises(SourceBlocked):
        POLICY.check("localhost")


# --- the fetcher, without any traffic -------------------------------------------------------


class FakeResolver:
    """Answers every lookup with fixed addresses and records the lookups."""

    def __init__(self, *answers: str, error: OSError | None = None) -> None:
        self.answers = list(answers)
        self.error = error
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append((host, port))
        if self.error is not None:
            raise self.error
        return self.answers


class ForbiddenBackend(httpcore.NetworkBackend):
    """Stands where sockets would open; any connect attempt is recorded and fails the test."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self.connects.append((host, port))
        pytest.fail(f"the fetcher tried to connect to {host}:{port}")


class RefusingBackend(ForbiddenBackend):
    """Records the connect attempt, then refuses it like a closed port."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self.connects.append((host, port))
        raise httpcore.ConnectError("connection refused (test)")


def make_fetcher(
    resolver: FakeResolver, backend: httpcore.NetworkBackend, policy: AddressPolicy = POLICY
) -> SourceFetcher:
    return SourceFetcher(
        max_bytes=1024,
        timeout=5.0,
        max_redirects=3,
        policy=policy,
        resolver=resolver,
        network_backend=backend,
    )


@pytest.mark.parametrize(
    "answer", ["10.0.0.1", "169.254.169.254", "127.0.0.1", "::1", "::ffff:10.0.0.1"]
)
def test_a_hostname_resolving_to_a_private_address_is_refused_before_any_connect(
    answer: str,
) -> None:
    resolver = FakeResolver(answer)
    backend = ForbiddenBackend()

    with make_fetcher(resolver, backend) as fetcher, pytest.raises(SourceBlocked):
        fetcher.fetch("http://images.example.com/a.jpg")

    assert backend.connects == []
    assert resolver.lookups == [("images.example.com", 80)]


def test_one_private_record_among_public_ones_taints_the_whole_name() -> None:
    backend = ForbiddenBackend()

    with (
        make_fetcher(FakeResolver("93.184.216.34", "10.0.0.1"), backend) as fetcher,
        pytest.raises(SourceBlocked),
    ):
        fetcher.fetch("https://cdn.example.com/a.jpg")

    assert backend.connects == []


def test_an_address_literal_url_is_vetted_too() -> None:
    backend = ForbiddenBackend()

    with (
        make_fetcher(FakeResolver("169.254.169.254"), backend) as fetcher,
        pytest.raises(SourceBlocked),
    ):
        fetcher.fetch("http://169.254.169.254/latest/meta-data/")

    assert backend.connects == []


def test_the_connection_goes_to_the_vetted_address_and_the_name_is_resolved_once() -> None:
    resolver = FakeResolver("93.184.216.34", "2606:2800:220:1::")
    backend = RefusingBackend()

    with make_fetcher(resolver, backend) as fetcher, pytest.raises(SourceUnreachable):
        fetcher.fetch("https://images.example.com:8443/a.jpg")

    assert resolver.lookups == [("images.example.com", 8443)]
    # The socket layer only ever sees address literals: no second lookup to rebind.
    assert backend.connects == [("93.184.216.34", 8443), ("2606:2800:220:1::", 8443)]


def test_an_allowlisted_private_address_is_connected_to() -> None:
    backend = RefusingBackend()
    policy = AddressPolicy.from_setting("10.0.0.0/8")

    with (
        make_fetcher(FakeResolver("10.1.2.3"), backend, policy) as fetcher,
        pytest.raises(SourceUnreachable),
    ):
        fetcher.fetch("http://internal-cdn/a.jpg")

    assert backend.connects == [("10.1.2.3", 80)]


def test_a_name_that_does_not_resolve_is_unreachable_and_transient() -> None:
    resolver = FakeResolver(error=socket.gaierror(socket.EAI_NONAME, "Name or service not known"))

    with (
        make_fetcher(resolver, ForbiddenBackend()) as fetcher,
        pytest.raises(SourceUnreachable) as caught,
    ):
        fetcher.fetch("http://nowhere.invalid/a.jpg")

    assert caught.value.transient is True


def test_unix_sockets_are_refused() -> None:
    backend = PinningBackend(POLICY, FakeResolver("8.8.8.8"), ForbiddenBackend())

    with pytest.raises(SourceBlocked):
        backend.connect_unix_socket("/var/run/docker.sock")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "file:///etc/passwd",
        "ftp://example.com/a.jpg",
        "gopher://example.com:70/_x",
        "s3://bucket/key.jpg",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "//example.com/a.jpg",
        "/relative/a.jpg",
        "http://",
        "http:///a.jpg",
        "https://exa mple.com/a.jpg",
        "http://example.com:99999/a.jpg",
        "http://example.com/" + "a" * 9000,
    ],
)
def test_anything_but_an_absolute_http_url_is_invalid_and_never_resolved(url: str) -> None:
    resolver = FakeResolver("8.8.8.8")

    with make_fetcher(resolver, ForbiddenBackend()) as fetcher, pytest.raises(InvalidSourceUrl):
        fetcher.fetch(url)

    assert resolver.lookups == []


@pytest.mark.parametrize(
    "url", ["http://example.com/a.jpg", "HTTPS://Example.COM/a.jpg?x=1", " http://[2001:db8::1]/ "]
)
def test_absolute_http_urls_are_accepted(url: str) -> None:
    assert check_source_url(url).scheme in ("http", "https")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://imageopt/inputs/a.jpg", ("imageopt", "inputs/a.jpg")),
        ("S3://bucket/k", ("bucket", "k")),
        ("s3://bucket/dir/with space/x?y#z", ("bucket", "dir/with space/x?y#z")),
        ("https://bucket.s3.amazonaws.com/a.jpg", None),
        ("bucket/key", None),
        ("", None),
    ],
)
def test_s3_urls_split_into_bucket_and_key(url: str, expected: tuple[str, str] | None) -> None:
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize("url", ["s3://", "s3://bucket", "s3://bucket/", "s3:///key"])
def test_s3_urls_without_bucket_or_key_are_invalid(url: str) -> None:
    with pytest.raises(InvalidSourceUrl):
        parse_s3_url(url)
