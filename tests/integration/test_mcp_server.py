"""The applicant's MCP server at /mcp/, spoken to by the ``mcp`` client over real HTTP.

The app runs in process under uvicorn on a free port in a background thread (offline
engine, the sample profile, SQLite in a temporary folder).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
import uvicorn
from fastapi.testclient import TestClient
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent, TextResourceContents

from api.mcp_server import render_document
from bootstrap import create_app
from domain.models import Passage
from settings import Settings

SAMPLE_DOCUMENTS = {
    "en/about.md",
    "en/logistics.md",
    "en/projects.md",
    "en/resume.md",
    "faq.txt",
    "ko/이력서.md",
    "ko/자기소개.md",
    "ko/채용정보.md",
    "ko/프로젝트.md",
}
JSON_RPC_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-06-18",
}


def settings_for(folder: Path, **values: Any) -> Settings:
    values = {"rate_limit_per_minute": 0, **values}  # every request comes from 127.0.0.1
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{folder / 'conversations.db'}",
        knowledge_watch=False,
        **values,
    )


@contextmanager
def serve(settings: Settings, startup_timeout: float = 20.0) -> Iterator[str]:
    """The app under uvicorn on a free port in a thread; yields the MCP endpoint's URL."""
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_config=None, access_log=False))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"app:{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the app failed to start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app did not start in {startup_timeout}s")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/mcp/"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def mcp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(settings_for(tmp_path_factory.mktemp("mcp"))) as url:
        yield url


def structured(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    assert result.is_error
    (content,) = result.content
    assert isinstance(content, TextContent)
    return content.text


async def test_both_tools_are_listed_with_their_argument_schemas(mcp_url: str) -> None:
    async with Client(mcp_url) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == {"search_profile", "ask_applicant"}
    search = tools["search_profile"].input_schema
    assert search["required"] == ["query"]
    assert search["properties"]["query"]["type"] == "string"
    ask = tools["ask_applicant"].input_schema
    assert ask["required"] == ["question"]
    assert ask["properties"]["question"]["type"] == "string"
    assert "conversation_id" in ask["properties"]
    assert tools["search_profile"].annotations is not None
    assert tools["search_profile"].annotations.read_only_hint is True


@pytest.mark.parametrize(
    ("query", "language_source"),
    [("쿠버네티스 마이그레이션 경험", "ko/"), ("Kubernetes migration experience", "en/")],
)
async def test_search_profile_returns_passages_with_sources(
    mcp_url: str, query: str, language_source: str
) -> None:
    async with Client(mcp_url) as client:
        results = structured(await client.call_tool("search_profile", {"query": query}))["result"]

    assert results
    assert [item["id"] for item in results] == list(range(1, len(results) + 1))
    for item in results:
        assert item["source"] in SAMPLE_DOCUMENTS
        assert item["source"].startswith(language_source)
        assert item["text"]
        assert item["citation"].startswith(item["source"])
    assert any("Kubernetes" in item["text"] for item in results)


async def test_search_profile_finds_nothing_for_what_the_profile_does_not_cover(
    mcp_url: str,
) -> None:
    async with Client(mcp_url) as client:
        result = await client.call_tool("search_profile", {"query": "underwater basket weaving"})

    assert structured(result)["result"] == []


async def test_search_profile_declines_what_the_service_does_not_discuss(mcp_url: str) -> None:
    async with Client(mcp_url) as client:
        protected = await client.call_tool("search_profile", {"query": "Is she married?"})
        undisclosed = await client.call_tool("search_profile", {"query": "연봉"})
        empty = await client.call_tool("search_profile", {"query": "  "})

    assert "marital status" in error_text(protected)
    assert "김민지" in error_text(undisclosed)  # the applicant's own words from policy.yaml
    assert "'query' is empty" in error_text(empty)


async def test_ask_applicant_answers_with_sources_and_takes_a_follow_up(mcp_url: str) -> None:
    async with Client(mcp_url) as client:
        first = structured(
            await client.call_tool("ask_applicant", {"question": "What did she do at Hanbit Pay?"})
        )
        follow_up = structured(
            await client.call_tool(
                "ask_applicant",
                {
                    "question": "한빛페이에서 어떤 일을 했나요?",
                    "conversation_id": first["conversation_id"],
                },
            )
        )

    assert "Hanbit Pay" in first["answer"]
    assert first["mode"] == "offline"
    assert first["sources"]
    assert {"id", "source", "heading", "snippet"} <= set(first["sources"][0])
    assert f"[1] {first['sources'][0]['source']}" in first["answer"]
    assert follow_up["conversation_id"] == first["conversation_id"]
    assert follow_up["sources"]


async def test_ask_applicant_reports_bad_input_as_a_tool_error_without_a_trace(
    mcp_url: str,
) -> None:
    async with Client(mcp_url) as client:
        empty = await client.call_tool("ask_applicant", {"question": " "})
        unknown = await client.call_tool(
            "ask_applicant", {"question": "And then?", "conversation_id": "no-such-conversation"}
        )
        too_long = await client.call_tool("ask_applicant", {"question": "a" * 5000})

    assert "'question' is empty" in error_text(empty)
    assert "No conversation has this 'conversation_id'" in error_text(unknown)
    assert "the limit is 4000" in error_text(too_long)
    for result in (empty, unknown, too_long):
        assert "Traceback" not in error_text(result)


async def test_every_document_is_a_resource_with_its_text(mcp_url: str) -> None:
    async with Client(mcp_url) as client:
        resources = (await client.list_resources()).resources
        by_name = {resource.name: resource for resource in resources}
        korean = await client.read_resource(by_name["ko/이력서.md"].uri)
        faq = await client.read_resource(by_name["faq.txt"].uri)

    assert set(by_name) == SAMPLE_DOCUMENTS
    assert by_name["ko/이력서.md"].uri == "profile://documents/" + quote("ko/이력서.md")
    assert by_name["en/resume.md"].mime_type == "text/markdown"
    assert by_name["faq.txt"].mime_type == "text/plain"
    (content,) = korean.contents
    assert isinstance(content, TextResourceContents)
    assert content.text.startswith("# 김민지")
    assert "한빛페이" in content.text
    (faq_content,) = faq.contents
    assert isinstance(faq_content, TextResourceContents)
    assert "\n\n" in faq_content.text


def test_a_pdf_resource_is_its_text_under_its_headings_page_by_page() -> None:
    passages = [
        Passage("resume.pdf", ("Minji Kim",), "Platform engineer.", page=1),
        Passage("resume.pdf", ("Minji Kim", "Experience"), "Hanbit Pay, 2021-.", page=1),
        Passage("resume.pdf", ("Minji Kim", "Experience"), "Sora Logistics, 2017-2020.", page=2),
        Passage("resume.pdf", ("Minji Kim", "Education"), "KAIST, 2016.", page=2),
    ]

    assert render_document(passages) == (
        "[p. 1]\n\n# Minji Kim\n\nPlatform engineer.\n\n## Experience\n\nHanbit Pay, 2021-.\n\n"
        "[p. 2]\n\nSora Logistics, 2017-2020.\n\n## Education\n\nKAIST, 2016.\n"
    )


async def test_an_unknown_resource_is_an_error(mcp_url: str) -> None:
    async with Client(mcp_url) as client:
        with pytest.raises(MCPError, match=r"No document at profile://documents/secret\.md"):
            await client.read_resource("profile://documents/secret.md")


async def test_clients_of_the_handshake_era_are_served_too(mcp_url: str) -> None:
    """Claude Desktop (through mcp-remote) and most IDEs still speak 2025-era MCP."""
    async with Client(mcp_url, mode="legacy") as client:
        assert client.protocol_version.startswith("2025")
        result = await client.call_tool("search_profile", {"query": "PostgreSQL"})

    assert structured(result)["result"]


def test_the_endpoint_answers_without_the_trailing_slash(mcp_url: str) -> None:
    response = httpx2.post(
        mcp_url.rstrip("/"),
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers=JSON_RPC_HEADERS,
    )

    assert response.status_code == 200


def test_no_stream_is_held_open_for_a_get(mcp_url: str) -> None:
    """Stateless: a GET would otherwise open an SSE stream that never ends."""
    response = httpx2.get(mcp_url, headers=JSON_RPC_HEADERS, timeout=5)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_a_browser_on_another_origin_is_refused(mcp_url: str) -> None:
    response = httpx2.post(
        mcp_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={**JSON_RPC_HEADERS, "Origin": "https://evil.example"},
    )

    assert response.status_code == 403
    assert "Origin" in response.json()["error"]["message"]


async def test_tool_calls_over_the_rate_limit_get_a_clear_error(tmp_path: Path) -> None:
    with serve(settings_for(tmp_path, rate_limit_per_minute=2)) as url:
        async with Client(url) as client:
            # Listing and reading are free: only tool calls are questions.
            for _ in range(3):
                await client.list_tools()
            for query in ("Go", "Kafka"):
                structured(await client.call_tool("search_profile", {"query": query}))
            with pytest.raises(MCPError, match="Too many questions") as raised:
                await client.call_tool("ask_applicant", {"question": "Where does she work?"})
        raw = httpx2.post(
            url,
            json={
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": {"name": "search_profile", "arguments": {"query": "Go"}},
            },
            headers=JSON_RPC_HEADERS,
        )

    assert "limit is 2 per minute" in str(raised.value)
    assert raw.status_code == 429
    assert int(raw.headers["Retry-After"]) >= 1
    assert raw.headers["X-RateLimit-Limit"] == "2"
    body = raw.json()
    assert body["id"] == 7
    assert body["error"]["data"]["code"] == "rate_limited"


def test_the_endpoint_is_absent_when_disabled(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path, mcp_server_enabled=False))
    with TestClient(app) as client:
        response = client.post(
            "/mcp/",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers=JSON_RPC_HEADERS,
        )

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 20_000 + b"]" * 20_000, "nested too deeply"),
        (
            b'{"jsonrpc": "2.0", "id": 1, "params": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
            "nested",
        ),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "ping\xff"}', "not UTF-8"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{not json", "not valid JSON"),
    ],
)
def test_a_body_the_server_cannot_parse_gets_a_json_rpc_parse_error(
    tmp_path: Path, body: bytes, reason: str
) -> None:
    app = create_app(settings_for(tmp_path))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/mcp/", content=body, headers=JSON_RPC_HEADERS)
        alive = client.post(
            "/mcp/",
            json={"jsonrpc": "2.0", "id": 2, "method": "ping"},
            headers=JSON_RPC_HEADERS,
        )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32700
    assert reason in error["message"]
    assert alive.status_code == 200


async def test_nul_in_a_question_or_an_id_is_a_clear_tool_error(mcp_url: str) -> None:
    async with Client(mcp_url) as client:
        in_question = await client.call_tool("ask_applicant", {"question": "hi\u0000there"})
        in_id = await client.call_tool(
            "ask_applicant", {"question": "And then?", "conversation_id": "a\u0000" * 11}
        )

    assert "contains a NUL character" in error_text(in_question)
    assert "No conversation has this 'conversation_id'" in error_text(in_id)
