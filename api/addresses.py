"""The client address that per-address limits count against.

The client is the TCP peer, or the address a trusted proxy forwarded: uvicorn's
``ProxyHeadersMiddleware`` rewrites ``scope["client"]`` only for peers listed in
``IMAGEOPT_TRUSTED_PROXIES`` (:func:`api.app.uvicorn_options`), so a forged
``X-Forwarded-For`` from anyone else changes nothing here.

An IPv6 client counts as its /64: one subscriber usually gets a whole /64 (RFC 6177) and can
pick any address in it, so a per-address limit keyed by the full address would be no limit.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request

IPV6_PREFIX = 64
"""Prefix length an IPv6 client is counted by (the usual subscriber allocation, RFC 6177)."""
MAX_LITERAL = 64
"""A peer that is not an IP address (a unix socket path) is kept as text, cut to this length."""


def network_of(host: str | None) -> str:
    """The network a client's limits are counted under.

    Args:
        host: the client host as the server saw it (after trusted proxy headers).

    Returns:
        The IPv4 address (``203.0.113.7``; an IPv4-mapped IPv6 address counts as its IPv4
        address), the IPv6 /64 (``2001:db8:1:2::/64``), ``unknown`` without a host, or the
        literal cut to 64 characters.
    """
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:MAX_LITERAL]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def client_network(request: Request) -> str:
    """:func:`network_of` the request's client (the peer, or what a trusted proxy forwarded)."""
    return network_of(request.client.host if request.client else None)
