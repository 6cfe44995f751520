"""Pure logic of per-address limits: the network a client counts under, which proxies are
trusted, the uvicorn options that follow, and the quota lock keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.addresses import network_of
from api.app import uvicorn_options
from pipeline.config import Settings
from pipeline.repository import ApiQuotas


@pytest.mark.parametrize(
    ("host", "network"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        (None, "unknown"),
        ("", "unknown"),
        ("x" * 300, "x" * 64),
    ],
)
def test_a_client_counts_as_its_ipv4_address_or_its_ipv6_64(host: str | None, network: str) -> None:
    assert network_of(host) == network


def test_two_addresses_of_one_ipv6_64_share_their_limits() -> None:
    assert network_of("2001:db8::1") == network_of("2001:db8::ffff:1234")
    assert network_of("2001:db8::1") != network_of("2001:db8:0:1::1")


def test_no_proxy_is_trusted_by_default_so_forwarded_headers_are_ignored() -> None:
    options = uvicorn_options(Settings())
    assert options["proxy_headers"] is False
    assert options["forwarded_allow_ips"] == []


def test_listed_proxies_are_the_only_ones_uvicorn_trusts() -> None:
    settings = Settings(IMAGEOPT_TRUSTED_PROXIES=" 10.0.0.0/8, 192.0.2.1 ,")
    assert settings.trusted_proxy_list == ["10.0.0.0/8", "192.0.2.1"]
    options = uvicorn_options(settings)
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == ["10.0.0.0/8", "192.0.2.1"]


@pytest.mark.parametrize("value", ["*", "10.0.0.300", "proxy.internal", "10.0.0.0/33"])
def test_a_trusted_proxy_that_is_not_an_address_or_network_is_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        Settings(IMAGEOPT_TRUSTED_PROXIES=value)


def test_quota_locks_cover_the_guest_and_its_network_or_only_the_store() -> None:
    guest = ApiQuotas("guest", "g-1", "console", 20, "203.0.113.7", 20, 86_400)
    assert guest.lock_keys() == ["owner:guest:g-1", "network:203.0.113.7"]
    store = ApiQuotas("store", "shop-1", "shop-1", 5, None, 0, 86_400)
    assert store.lock_keys() == ["owner:store:shop-1"]
    assert ApiQuotas("store", "shop-1", "shop-1", 0, None, 0, 86_400).lock_keys() == []
