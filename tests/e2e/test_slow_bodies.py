"""Request bodies that stall or trickle, sent over a raw socket to the app under uvicorn."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx2
import pytest

from testing.app_server import RunningApp, run_app
from tests.e2e.conftest import sqlite_url

pytestmark = pytest.mark.e2e

BODY_TIMEOUT_SECONDS = 1.0


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    environment = {
        "ENGINE": "offline",
        "DATABASE_URL": sqlite_url(tmp_path_factory.mktemp("slow-bodies")),
        "REQUEST_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_SECONDS),
    }
    with run_app(environment) as running:
        yield running


def _connect(app: RunningApp) -> socket.socket:
    address = urlsplit(app.base_url)
    assert address.hostname is not None
    assert address.port is not None
    return socket.create_connection((address.hostname, address.port), timeout=10)


def _headers(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: app\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _read_until_closed(client: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (within the socket's
    timeout: a server that keeps it open fails the test)."""
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    return received


def _status_and_body(response: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


@pytest.mark.parametrize("path", ["/openai-response/sse", "/openai-response", "/mcp/"])
def test_a_body_that_stalls_gets_408_and_the_connection_closes(app: RunningApp, path: str) -> None:
    body = json.dumps({"input": "경력은 어떻게 되나요?"}).encode()
    with _connect(app) as client:
        client.sendall(_headers(path, len(body)) + body[:5])  # then nothing more
        sent_at = time.monotonic()
        response = _read_until_closed(client)
        waited = time.monotonic() - sent_at
    status, error = _status_and_body(response)
    assert status == 408
    assert error["code"] == "request_timeout"
    assert "within 1 second" in error["message"]
    assert BODY_TIMEOUT_SECONDS * 0.9 <= waited < BODY_TIMEOUT_SECONDS + 2


def test_a_body_that_trickles_past_the_deadline_gets_408(app: RunningApp) -> None:
    body = json.dumps({"input": "What did she build?"}).encode()
    with _connect(app) as client:
        client.sendall(_headers("/openai-response", len(body)))
        started = time.monotonic()
        # One byte at a time, each well within any per-read timeout, the whole far beyond.
        for byte in body:
            try:
                client.sendall(bytes([byte]))
            except OSError:  # the server answered and closed: the rest is not wanted
                break
            time.sleep(0.2)
            if time.monotonic() - started > BODY_TIMEOUT_SECONDS + 3:
                break
        response = _read_until_closed(client)
    status, error = _status_and_body(response)
    assert status == 408
    assert error["code"] == "request_timeout"


def test_a_body_sent_in_time_is_answered_as_usual(app: RunningApp) -> None:
    # Sent in pieces, the whole within the deadline: nothing changes for a normal client.
    body = json.dumps({"input": "What did she build?"}).encode()
    with _connect(app) as client:
        client.sendall(_headers("/openai-response", len(body)) + body[:10])
        time.sleep(BODY_TIMEOUT_SECONDS / 4)
        client.sendall(body[10:])
        head = client.recv(65536)
    assert head.startswith(b"HTTP/1.1 200 ")
    response = httpx2.post(f"{app.base_url}/openai-response", json={"input": "어떤 프로젝트?"})
    assert response.status_code == 200
