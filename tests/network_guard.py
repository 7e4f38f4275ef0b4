"""Keeps tests on this machine: a request to any host beyond loopback fails the test.

The app reaches its model provider through the openai SDK's aiohttp transport, the Agents
SDK and the MCP client through httpx2, the terminal client through httpx2's sync client.
Rather than patch each client, the guard sits where they all end up: name resolution
(``socket.getaddrinfo``, which asyncio's resolver, aiohttp's threaded resolver and
``socket.create_connection`` call, so a refused name is never looked up) and
``socket.connect`` (for addresses given as IP literals, which skip resolution). It is below
respx and ``httpx2.MockTransport``, so mocked requests never meet it, and the fake Responses
API, PostgreSQL and Redis on loopback pass it.

A refused request raises :class:`RealNetworkForbidden`; since the app may catch that and
answer offline, the guard also keeps every refused host and the test fails at teardown.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


class RealNetworkForbidden(RuntimeError):
    """A test tried to reach a host beyond this machine."""


def is_local(host: str | bytes | None) -> bool:
    """Loopback, or the unspecified address (a server binding, not a request)."""
    if host is None:
        return True
    name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    name = name.lower()
    if name in LOOPBACK_NAMES or name == "":
        return True
    try:
        address = ipaddress.ip_address(name.partition("%")[0])  # "fe80::1%eth0": scoped
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


class NetworkGuard:
    """While installed, refuses (and remembers) every lookup of and connection to a host
    that is not local."""

    def __init__(self) -> None:
        self._refused: list[str] = []

    def take_refused(self) -> list[str]:
        """The hosts refused since the last call; a test that provokes the guard takes them,
        so that its teardown passes."""
        refused, self._refused = self._refused, []
        return refused

    def fail_if_refused(self) -> None:
        """Fails the test if anything was refused, even if the code under test caught it."""
        if refused := self.take_refused():
            pytest.fail(
                f"the test tried to reach {', '.join(sorted(set(refused)))}; tests talk to "
                "loopback only (for the model, use testing.fake_responses_api or respx)",
                pytrace=False,
            )

    def check(self, host: str | bytes | None) -> None:
        if not is_local(host):
            name = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
            self._refused.append(name)
            raise RealNetworkForbidden(
                f"a test tried to reach {name}: tests talk to loopback only "
                "(for the model, use testing.fake_responses_api or respx)"
            )

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_getaddrinfo = socket.getaddrinfo
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            self.check(host)
            return real_getaddrinfo(host, *args, **kwargs)

        def check_address(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                self.check(address[0])

        def connect(sock: socket.socket, address: Any) -> None:
            check_address(sock, address)
            real_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            check_address(sock, address)
            return real_connect_ex(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
