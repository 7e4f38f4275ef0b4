"""Hygiene at the HTTP edge: the body size limit and the security headers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope, Send

from api.docs_pages import page_csp
from api.protection import API_CSP, HSTS, SecurityHeaders
from bootstrap import create_app
from settings import Settings
from tests.fakes import InMemoryConversations, ScriptedEngine, small_profile

SSE = "/openai-response/sse"
JSON = "/openai-response"
MAX_BODY = 2048


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"max_body_bytes": MAX_BODY, "rate_limit_per_minute": 0}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def build_app(engine: ScriptedEngine, **overrides: Any) -> FastAPI:
    return create_app(
        settings(**overrides),
        knowledge=small_profile(),
        engine=engine,
        conversations=InMemoryConversations(),
    )


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def client(engine: ScriptedEngine) -> Iterator[TestClient]:
    with TestClient(build_app(engine), raise_server_exceptions=False) as test_client:
        yield test_client


def assert_security_headers(headers: Any, csp: str = API_CSP) -> None:
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cross-origin-resource-policy"] == "same-site"
    assert headers["content-security-policy"] == csp


# --- body size -------------------------------------------------------------------------


def test_body_over_the_limit_by_content_length_is_413(
    client: TestClient, engine: ScriptedEngine
) -> None:
    body = b'{"input": "' + b"x" * MAX_BODY + b'"}'
    response = client.post(JSON, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {
        "code": "body_too_large",
        "message": f"The request body is larger than {MAX_BODY} bytes: send a shorter question.",
    }
    assert_security_headers(response.headers)
    assert engine.requests == []


def test_body_at_the_limit_is_read(client: TestClient) -> None:
    padding = MAX_BODY - len(b'{"input": "hi", "x": ""}')
    body = b'{"input": "hi", "x": "' + b" " * padding + b'"}'
    assert len(body) == MAX_BODY
    response = client.post(JSON, content=body, headers={"content-type": "application/json"})
    # Past the body limit: the schema rejects the unknown field, proof the body was read.
    assert response.status_code == 422
    assert "'x'" in response.json()["message"]


class ChunkedRequest:
    """An ASGI request whose body arrives in chunks, with no Content-Length."""

    def __init__(self, path: str, chunks: list[bytes]) -> None:
        self.scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"testserver"),
                (b"content-type", b"application/json"),
                (b"transfer-encoding", b"chunked"),
            ],
            "client": ("203.0.113.9", 50000),
            "server": ("testserver", 80),
        }
        self.chunks = list(chunks)
        self.delivered = 0
        self.sent: list[Message] = []
        self.answered = asyncio.Event()

    async def receive(self) -> Message:
        if self.delivered == len(self.chunks):
            # As a server: the client is there until its response is complete.
            await self.answered.wait()
            return {"type": "http.disconnect"}
        self.delivered += 1
        more = self.delivered < len(self.chunks)
        return {"type": "http.request", "body": self.chunks[self.delivered - 1], "more_body": more}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.answered.set()

    async def run(self, app: FastAPI) -> None:
        async with app.router.lifespan_context(app) as state:
            self.scope["state"] = dict(state or {})
            await app(self.scope, self.receive, self.send)

    @property
    def status(self) -> int:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        status: int = start["status"]
        return status

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def test_chunked_body_is_stopped_once_it_passes_the_limit(engine: ScriptedEngine) -> None:
    request = ChunkedRequest(JSON, [b'{"input": "', *[b"x" * 1000] * 10, b'"}'])
    await request.run(build_app(engine))
    assert request.status == 413
    assert b'"code":"body_too_large"' in request.body
    # 11 bytes, then 1000 at a time: the third chunk of x passes 2048; no more is read.
    assert request.delivered == 4
    assert engine.requests == []


async def test_chunked_body_within_the_limit_is_answered(engine: ScriptedEngine) -> None:
    request = ChunkedRequest(JSON, [b'{"input": ', b'"Where did', b' Jane work?"}'])
    await request.run(build_app(engine))
    assert request.status == 200
    assert b"Hello world" in request.body


# --- security headers ------------------------------------------------------------------


def test_security_headers_on_json(client: TestClient) -> None:
    response = client.post(JSON, json={"input": "hi"})
    assert response.status_code == 200
    assert_security_headers(response.headers)
    assert "strict-transport-security" not in response.headers


def test_security_headers_on_the_sse_stream(client: TestClient) -> None:
    with client.stream("POST", SSE, json={"input": "hi"}) as response:
        body = response.read()
    assert response.headers["content-type"].startswith("text/event-stream")
    assert b"event: done" in body
    assert_security_headers(response.headers)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/conversations/nope", None, 404),
        ("GET", "/no-such-page", None, 404),
        ("POST", JSON, {"input": ""}, 422),
        ("POST", JSON, {"input": "x" * 5000}, 413),
        ("GET", JSON, None, 405),
    ],
)
def test_security_headers_on_errors(
    client: TestClient, method: str, path: str, body: Any, status: int
) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == status
    assert set(response.json()) == {"code", "message"}
    assert_security_headers(response.headers)


def test_security_headers_on_the_rate_limit_error(engine: ScriptedEngine) -> None:
    with TestClient(build_app(engine, rate_limit_per_minute=1)) as client:
        assert client.post(JSON, json={"input": "hi"}).status_code == 200
        response = client.post(JSON, json={"input": "hi"})
    assert response.status_code == 429
    assert_security_headers(response.headers)


def test_docs_still_load(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    # The page's own policy (api/docs_pages.py) is kept: its scripts run, it is never framed.
    assert_security_headers(docs.headers, csp=page_csp(docs.text))
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    assert client.get("/redoc").status_code == 200
    schema = client.get("/openapi.json").json()
    for path in (SSE, JSON):
        answers = schema["paths"][path]["post"]["responses"]
        assert "429" in answers
        assert "Retry-After" in answers["429"]["headers"]


def test_a_policy_the_app_sets_is_kept() -> None:
    async def page(scope: Scope, receive: Receive, send: Send) -> None:
        response = PlainTextResponse(
            "<p>chat</p>",
            media_type="text/html",
            headers={"Content-Security-Policy": "default-src 'self'", "X-Frame-Options": "x"},
        )
        await response(scope, receive, send)

    response = TestClient(SecurityHeaders(page)).get("/")
    assert response.headers["content-security-policy"] == "default-src 'self'"
    assert response.headers["x-frame-options"] == "x"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_hsts_only_over_https(engine: ScriptedEngine) -> None:
    app = build_app(engine)
    with TestClient(app, base_url="https://testserver") as client:
        assert client.get("/health").headers["strict-transport-security"] == HSTS
    with TestClient(app) as client:
        assert "strict-transport-security" not in client.get("/health").headers


@pytest.mark.parametrize(
    ("peer", "header", "hsts"),
    [
        ("10.0.0.1", ("X-Forwarded-Proto", "https"), True),
        ("10.0.0.1", ("CloudFront-Forwarded-Proto", "https"), True),
        ("10.0.0.1", ("X-Forwarded-Proto", "http"), False),
        ("203.0.113.5", ("X-Forwarded-Proto", "https"), False),
    ],
)
def test_hsts_behind_a_trusted_proxy(
    engine: ScriptedEngine, peer: str, header: tuple[str, str], hsts: bool
) -> None:
    app = build_app(engine, trusted_proxies="10.0.0.0/8")
    with TestClient(app, client=(peer, 1234)) as client:
        response = client.get("/health", headers=dict([header]))
    assert ("strict-transport-security" in response.headers) is hsts
