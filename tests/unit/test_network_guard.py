"""The autouse network guard (tests/network_guard.py): every HTTP client the app uses is
stopped before a request leaves the machine, without a lookup, and loopback stays open."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp
import httpx2
import pytest
from openai import AsyncOpenAI, DefaultAioHttpClient

from tests.network_guard import NetworkGuard, RealNetworkForbidden, is_local

OPENAI_BASE_URL = "https://api.openai.com/v1"
BEYOND_LOOPBACK = "http://192.0.2.1/"  # TEST-NET-1: an address literal, never looked up


@pytest.mark.parametrize(
    "transport",
    [
        pytest.param(DefaultAioHttpClient, id="aiohttp"),  # the app's upstream client
        pytest.param(httpx2.AsyncClient, id="httpx2"),  # the SDK's default, and MCP's
    ],
)
async def test_the_openai_sdk_cannot_reach_openai_through_either_transport(
    transport: type[httpx2.AsyncClient], network_guard: NetworkGuard
) -> None:
    client = AsyncOpenAI(
        api_key="sk-test", base_url=OPENAI_BASE_URL, max_retries=0, http_client=transport()
    )
    async with client:
        with pytest.raises(RealNetworkForbidden):
            await client.responses.create(model="gpt-test", input="hi")
    assert network_guard.take_refused() == ["api.openai.com"]


def test_a_sync_httpx2_request_cannot_reach_openai(network_guard: NetworkGuard) -> None:
    with pytest.raises(RealNetworkForbidden):
        httpx2.get(f"{OPENAI_BASE_URL}/models", timeout=5)
    assert network_guard.take_refused() == ["api.openai.com"]


async def test_an_aiohttp_session_cannot_reach_an_address_beyond_loopback(
    network_guard: NetworkGuard,
) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(RealNetworkForbidden):
            await session.get(BEYOND_LOOPBACK)
    assert network_guard.take_refused() == ["192.0.2.1"]


async def test_an_httpx2_client_cannot_reach_an_address_beyond_loopback(
    network_guard: NetworkGuard,
) -> None:
    async with httpx2.AsyncClient() as client:
        # anyio tries each address in a task group, hence the group.
        with pytest.RaisesGroup(RealNetworkForbidden):
            await client.get(BEYOND_LOOPBACK)
    assert network_guard.take_refused() == ["192.0.2.1"]


def test_a_refusal_the_code_caught_still_fails_the_test() -> None:
    guard = NetworkGuard()
    with contextlib.suppress(RealNetworkForbidden):  # as falling back to offline answers does
        guard.check("api.openai.com")
    with pytest.raises(pytest.fail.Exception, match=r"tried to reach api\.openai\.com"):
        guard.fail_if_refused()


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("0.0.0.0", True),  # a server binding, not a request
        (None, True),
        ("api.openai.com", False),
        ("localhost.example.com", False),
        ("192.0.2.1", False),
        ("10.0.0.1", False),
        ("::ffff:8.8.8.8", False),
    ],
)
def test_only_loopback_counts_as_local(host: str | None, local: bool) -> None:
    assert is_local(host) is local


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def loopback_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_stays_reachable_through_every_transport(
    host: str, loopback_port: int, network_guard: NetworkGuard
) -> None:
    url = f"http://{host}:{loopback_port}/"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert await response.text() == "hello"
    async with DefaultAioHttpClient() as client:
        assert (await client.get(url)).text == "hello"
    async with httpx2.AsyncClient() as client:
        assert (await client.get(url)).text == "hello"
    assert network_guard.take_refused() == []


def test_loopback_stays_reachable_through_the_sync_client(loopback_port: int) -> None:
    assert httpx2.get(f"http://localhost:{loopback_port}/", timeout=5).text == "hello"
