"""Who is asking: the client's IP address, seen through the proxies in TRUSTED_PROXIES.

The peer of the TCP connection is the client unless it is a trusted proxy (CloudFront, a
load balancer, the instance's own reverse proxy). Only then are the forwarding headers read:
``CloudFront-Viewer-Address`` first when TRUSTED_PROXY_KIND says the proxies are CloudFront,
else ``X-Forwarded-For``. A header from any other peer is ignored, because anyone can send
one; and ``CloudFront-Viewer-Address`` from a proxy that is not CloudFront is ignored too,
because such a proxy passes the client's own copy of it through unchanged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import Scope

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

UNKNOWN = "unknown"
# Rate limits count an IPv6 client by its /64: one subscriber usually holds a whole /64.
IPV6_PREFIX = 64


@cache
def trusted_networks(values: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """TRUSTED_PROXIES as networks (the setting is validated at start-up)."""
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def _ip(text: str) -> IPAddress | None:
    """``text`` as an address (IPv4-mapped IPv6 as IPv4), or ``None`` if it is not one."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _ip_and_port(text: str) -> IPAddress | None:
    """``IP:port`` as CloudFront writes it (IPv6 unbracketed: the port follows the last colon).

    ``[IPv6]:port`` and a bare IPv4 address are accepted too.
    """
    text = text.strip()
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and port[1:].isdigit())):
            return None
        return _ip(host)
    if ":" not in text:
        return _ip(text)
    host, _, port = text.rpartition(":")
    return _ip(host) if port.isdigit() else None


def _forwarded_entry(text: str) -> IPAddress | None:
    """One X-Forwarded-For entry: an address, or ``IPv4:port`` / ``[IPv6]:port``."""
    address = _ip(text)
    if address is not None:
        return address
    text = text.strip()
    if text.startswith("[") or text.count(":") == 1:
        return _ip_and_port(text)
    return None


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


def peer_is_trusted(scope: Scope, trusted: Sequence[IPNetwork]) -> bool:
    """Whether the connection comes from a proxy in ``trusted``, whose headers may be believed."""
    peer_info = scope.get("client")
    peer_ip = _ip(str(peer_info[0])) if peer_info else None
    return peer_ip is not None and _is_trusted(peer_ip, trusted)


def client_address(
    connection: HTTPConnection | Scope,
    trusted: Sequence[IPNetwork],
    *,
    cloudfront: bool = False,
) -> str:
    """The client's address for ``connection`` (a request or an ASGI scope).

    - The peer, unless it is in ``trusted``. A peer that is not an IP address (a Unix socket,
      Starlette's test client) is never trusted and is returned as it is.
    - From a trusted peer, when ``cloudfront`` (TRUSTED_PROXY_KIND=cloudfront): CloudFront
      sets ``CloudFront-Viewer-Address`` itself, so it is used if it holds a valid address.
    - Else ``X-Forwarded-For``, read from the right, where the nearest proxy appended its own
      peer: trusted proxies are skipped, and the first address that is not trusted is the
      client. If every entry is a trusted proxy, the leftmost is the client. An entry that is
      not an address ends the walk, because nothing to its left can be vouched for: the
      client is then the peer.
    """
    scope = connection.scope if isinstance(connection, HTTPConnection) else connection
    peer_info = scope.get("client")
    peer = str(peer_info[0]) if peer_info else UNKNOWN
    peer_ip = _ip(peer)
    if peer_ip is None:
        return peer
    if not _is_trusted(peer_ip, trusted):
        return str(peer_ip)
    headers = Headers(scope=scope)
    viewer = headers.get("cloudfront-viewer-address") if cloudfront else None
    if viewer is not None and (viewer_ip := _ip_and_port(viewer)) is not None:
        return str(viewer_ip)
    forwarded = ",".join(headers.getlist("x-forwarded-for"))
    if not forwarded.strip():
        return str(peer_ip)
    client = peer_ip
    for entry in reversed(forwarded.split(",")):
        address = _forwarded_entry(entry)
        if address is None:
            return str(peer_ip)
        client = address
        if not _is_trusted(address, trusted):
            break
    return str(client)


def rate_limit_key(address: str) -> str:
    """What a rate limit counts: the IPv4 address, the IPv6 /64, or the peer's name as is."""
    ip = _ip(address)
    if isinstance(ip, IPv6Address):
        return str(IPv6Network((ip, IPV6_PREFIX), strict=False))
    return address
