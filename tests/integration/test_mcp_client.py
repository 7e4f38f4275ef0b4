"""The MCP client (MCP_SERVERS) against a small stdio MCP server started by the test."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agents.mcp import MCPServer
from fastapi.testclient import TestClient
from mcp.shared.exceptions import MCPError

from bootstrap import bootstrap, create_app
from infrastructure.mcp_client import (
    McpServersFileError,
    McpToolbox,
    StdioServerConfig,
    StreamableHttpServerConfig,
    load_mcp_servers,
    open_mcp_toolbox,
)
from settings import Settings
from tests.fakes import InMemoryConversations, ScriptedEngine, small_profile

ECHO_SERVER = Path(__file__).resolve().parents[1] / "support" / "echo_mcp_server.py"
DEADLINE_SECONDS = 20.0


def echo_entry(name: str = "echo") -> dict[str, Any]:
    return {
        "name": name,
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(ECHO_SERVER)],
        "timeout_seconds": 15,
    }


def broken_entry(name: str = "broken") -> dict[str, Any]:
    """A command that exits at once: it never speaks MCP."""
    return {
        "name": name,
        "transport": "stdio",
        "command": sys.executable,
        "args": ["-c", "raise SystemExit(3)"],
        "timeout_seconds": 5,
    }


def write_servers(folder: Path, entries: Any, name: str = "mcp.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def agents_settings(servers: Path, **values: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        engine="agents",
        openai_base_url="http://127.0.0.1:9/v1",  # never called: nothing is asked here
        mcp_servers=servers,
        semantic_search=False,
        knowledge_watch=False,
        **values,
    )


async def text_of(server: MCPServer, tool: str, arguments: dict[str, Any]) -> str:
    result = await server.call_tool(tool, arguments)
    assert not result.is_error
    return str(result.content[0].text)  # type: ignore[union-attr]


async def wait_for(condition: Any, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


# --- The MCP_SERVERS file -------------------------------------------------------------------


def test_a_json_list_and_a_yaml_mapping_are_both_read(tmp_path: Path) -> None:
    as_json = write_servers(tmp_path, [echo_entry()])
    as_yaml = tmp_path / "mcp.yaml"
    as_yaml.write_text(
        "servers:\n"
        "  - name: github\n"
        "    transport: streamable_http\n"
        "    url: https://api.githubcopilot.com/mcp/\n"
        "    headers: {Authorization: Bearer abc}\n",
        encoding="utf-8",
    )

    (stdio,) = load_mcp_servers(as_json)
    (http,) = load_mcp_servers(as_yaml)

    assert isinstance(stdio, StdioServerConfig)
    assert stdio.command == sys.executable
    assert stdio.timeout_seconds == 15
    assert isinstance(http, StreamableHttpServerConfig)
    assert http.headers == {"Authorization": "Bearer abc"}
    assert http.timeout_seconds == 10.0


def test_environment_variables_are_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_GITHUB_TOKEN", "s3cret")
    path = write_servers(
        tmp_path,
        [
            {
                "name": "github",
                "transport": "streamable_http",
                "url": "https://api.githubcopilot.com/mcp/",
                "headers": {"Authorization": "Bearer ${TEST_GITHUB_TOKEN}"},
            }
        ],
    )

    (server,) = load_mcp_servers(path)

    assert isinstance(server, StreamableHttpServerConfig)
    assert server.headers["Authorization"] == "Bearer s3cret"


def test_an_unset_variable_is_named_but_no_value_is_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_UNSET_TOKEN", raising=False)
    entry = {**echo_entry(), "env": {"TOKEN": "${TEST_UNSET_TOKEN}", "OTHER": "visible-secret"}}
    path = write_servers(tmp_path, [entry])

    with pytest.raises(McpServersFileError) as raised:
        load_mcp_servers(path)

    message = str(raised.value)
    assert str(path) in message
    assert "servers.0.env.TOKEN" in message
    assert "TEST_UNSET_TOKEN" in message
    assert "visible-secret" not in message


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [
        ("[{", "mcp.json", "not valid JSON"),
        ("servers: [", "mcp.yaml", "not valid YAML"),
        ('"just text"', "mcp.json", "expected a list of servers"),
        ('[{"name": "x", "transport": "carrier pigeon"}]', "mcp.json", "servers.0"),
        ('[{"name": "x", "transport": "stdio"}]', "mcp.json", "servers.0.stdio.command"),
        (
            '[{"name": "x", "transport": "streamable_http", "url": "ftp://example.com"}]',
            "mcp.json",
            "must start with http:// or https://",
        ),
        ("[]", "mcp.toml", "must end in .json, .yaml or .yml"),
    ],
)
def test_a_malformed_file_is_refused_with_a_message_naming_it(
    tmp_path: Path, content: str, name: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")

    with pytest.raises(McpServersFileError) as raised:
        load_mcp_servers(path)

    assert f"MCP_SERVERS {path}" in str(raised.value)
    assert expected in str(raised.value)


def test_server_names_must_be_unique(tmp_path: Path) -> None:
    path = write_servers(tmp_path, [echo_entry("same"), broken_entry("same")])

    with pytest.raises(McpServersFileError, match="repeated: same"):
        load_mcp_servers(path)


async def test_a_malformed_file_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "servers.yaml"
    path.write_text("- name: github\n  transport: streamable_http\n", encoding="utf-8")

    with pytest.raises(McpServersFileError, match=f"MCP_SERVERS {path}: servers.0"):
        async with bootstrap(
            agents_settings(path),
            knowledge=small_profile(),
            conversations=InMemoryConversations(),
        ):
            pass


# --- Connecting and keeping connected -------------------------------------------------------


async def test_connected_servers_are_listed_with_their_tools(tmp_path: Path) -> None:
    settings = agents_settings(write_servers(tmp_path, [echo_entry()]))

    async with open_mcp_toolbox(settings) as toolbox:
        assert toolbox is not None
        (server,) = toolbox.connected()
        assert server.name == "echo"
        assert [tool.name for tool in await server.list_tools()] == ["echo", "pid", "freeze"]
        assert await text_of(server, "echo", {"text": "안녕하세요"}) == "안녕하세요"


async def test_a_broken_server_is_skipped_and_the_good_one_still_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = agents_settings(write_servers(tmp_path, [broken_entry(), echo_entry()]))

    async with open_mcp_toolbox(settings) as toolbox:
        assert toolbox is not None
        assert [server.name for server in toolbox.connected()] == ["echo"]
        assert toolbox.names == ["broken", "echo"]
        assert await text_of(toolbox.connected()[0], "echo", {"text": "still here"}) == (
            "still here"
        )
    assert any(
        "MCP server broken could not connect" in record.getMessage() for record in caplog.records
    )


async def test_a_server_that_dies_is_reconnected(tmp_path: Path) -> None:
    configs = load_mcp_servers(write_servers(tmp_path, [echo_entry()]))
    toolbox = McpToolbox(configs, check_interval=0.1, backoff_initial=0.05)

    async with toolbox.running():
        (first,) = toolbox.connected()
        pid = int(await text_of(first, "pid", {}))
        os.kill(pid, signal.SIGKILL)

        await wait_for(lambda: toolbox.connected() == [], "the dead server to be dropped")
        (second,) = await wait_for(toolbox.connected, "a fresh server")

        assert second is not first
        assert int(await text_of(second, "pid", {})) != pid
        assert await text_of(second, "echo", {"text": "back"}) == "back"


async def test_the_servers_are_not_started_for_an_engine_without_tools(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, engine="offline", mcp_servers=write_servers(tmp_path, [echo_entry()])
    )

    async with open_mcp_toolbox(settings) as toolbox:
        assert toolbox is None


async def test_the_toolbox_is_wired_into_the_container(tmp_path: Path) -> None:
    settings = agents_settings(write_servers(tmp_path, [echo_entry()]))

    async with bootstrap(
        settings, knowledge=small_profile(), conversations=InMemoryConversations()
    ) as container:
        assert container.mcp_toolbox is not None
        assert [server.name for server in container.mcp_toolbox.connected()] == ["echo"]


async def test_only_the_allowed_tools_are_offered_and_health_says_so(tmp_path: Path) -> None:
    entries = [{**echo_entry(), "tools": ["echo", "not_offered"]}, broken_entry()]
    settings = agents_settings(write_servers(tmp_path, entries))

    async with open_mcp_toolbox(settings) as toolbox:
        assert toolbox is not None
        (server,) = toolbox.connected()
        assert [tool.name for tool in await server.list_tools()] == ["echo"]
        echo, broken = toolbox.health()
        assert (echo.name, echo.connected, echo.tools, echo.last_error) == (
            "echo",
            True,
            ("echo",),
            None,
        )
        assert (broken.connected, broken.tools) == (False, ())
        assert broken.last_error is not None
        assert broken.failures >= 1


async def test_a_frozen_server_is_bounded_by_its_timeout(tmp_path: Path) -> None:
    settings = agents_settings(write_servers(tmp_path, [{**echo_entry(), "timeout_seconds": 3}]))

    async with open_mcp_toolbox(settings) as toolbox:
        assert toolbox is not None
        (server,) = toolbox.connected()
        started = time.monotonic()
        with pytest.raises(MCPError):
            await server.call_tool("freeze", {})
        assert time.monotonic() - started < 3 + 2


async def test_a_stdio_servers_stderr_becomes_log_lines_without_its_secrets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2"
    line = (
        f"GET https://api.example.com/repos?token=s3cr3t-query&page=2 "
        f"Authorization: Bearer {token} from env-secret-value"
    )
    entry = {**echo_entry(), "env": {"ECHO_STDERR": line, "API_KEY": "env-secret-value"}}
    settings = agents_settings(write_servers(tmp_path, [entry]))

    with caplog.at_level(logging.INFO, logger="infrastructure.mcp_client.stderr"):
        async with open_mcp_toolbox(settings) as toolbox:
            assert toolbox is not None
            records = await wait_for(
                lambda: [r for r in caplog.records if r.name == "infrastructure.mcp_client.stderr"],
                "the server's stderr line",
            )
    [record] = records
    message = record.getMessage()
    assert message.startswith("MCP server echo: GET https://api.example.com/repos?token=")
    assert "page=2" in message
    for secret in ("s3cr3t-query", token, "env-secret-value"):
        assert secret not in message
    assert getattr(record, "mcp_server", None) == "echo"
    assert line not in capfd.readouterr().err  # nothing raw on the app's own stderr


def test_a_server_name_must_fit_in_a_tool_name(tmp_path: Path) -> None:
    path = write_servers(tmp_path, [echo_entry("GitHub (local)")])
    with pytest.raises(McpServersFileError, match=r"servers\.0\.stdio\.name"):
        load_mcp_servers(path)


def test_mcp_server_health_is_in_metrics_and_the_admin_api(tmp_path: Path) -> None:
    token = "admin-token-for-tests-0123456789"
    settings = agents_settings(
        write_servers(tmp_path, [{**echo_entry(), "tools": ["echo"]}, broken_entry()]),
        admin_token=token,
    )
    app = create_app(
        settings,
        knowledge=small_profile(),
        engine=ScriptedEngine(),
        conversations=InMemoryConversations(),
    )
    with TestClient(app) as client:
        metrics = client.get("/metrics").text
        servers = client.get(
            "/admin/mcp-servers", headers={"Authorization": f"Bearer {token}"}
        ).json()

    assert 'mcp_server_up{server="echo"} 1.0' in metrics
    assert 'mcp_server_up{server="broken"} 0.0' in metrics
    assert 'mcp_server_tools{server="echo"} 1.0' in metrics
    assert 'mcp_server_failures_total{server="broken"}' in metrics
    echo, broken = sorted(servers, key=lambda server: server["name"], reverse=True)
    assert (echo["name"], echo["connected"], echo["tools"], echo["last_error"]) == (
        "echo",
        True,
        ["echo"],
        None,
    )
    assert (broken["connected"], broken["tools"]) == (False, [])
    assert broken["last_error"]
    assert broken["failures"] >= 1


@pytest.fixture(autouse=True)
async def _no_stray_tasks() -> AsyncIterator[None]:
    """Every supervisor task ends with its toolbox."""
    yield
    stray = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("mcp-server:") and not task.done()
    ]
    assert stray == []
