"""Fuzz every endpoint against the running app: no 5xx, no hang.

The OpenAPI operations come from the app's own schema; the MCP endpoint (not in that schema)
from a small OpenAPI description of its JSON-RPC requests below. Hostile bodies that no
schema describes (bytes that are not UTF-8, JSON nested 20,000 levels deep, NUL and lone
surrogates) go to every POST endpoint, on SQLite and PostgreSQL. Each run is bounded: a fixed
number of examples per operation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from testing.app_server import RunningApp, run_app
from tests.databases import DATABASES, empty_database

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 40
MCP_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-06-18",
}
_TEXT = {"type": "string"}
_REQUEST_ID = {"oneOf": [{"type": "integer"}, {"type": "string"}]}


def _json_rpc(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "jsonrpc": {"type": "string", "enum": ["2.0"]},
        "id": _REQUEST_ID,
        "method": {"type": "string", "enum": [method]},
    }
    if params is not None:
        properties["params"] = params
    return {"type": "object", "properties": properties, "required": ["jsonrpc", "id", "method"]}


def _tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return _json_rpc(
        "tools/call",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": [name]},
                "arguments": {"type": "object", "properties": arguments},
            },
            "required": ["name", "arguments"],
        },
    )


MCP_SCHEMA: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "The MCP endpoint's JSON-RPC requests", "version": "1"},
    "paths": {
        "/mcp/": {
            "post": {
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    _json_rpc("ping"),
                                    _json_rpc("tools/list"),
                                    _json_rpc("resources/list"),
                                    _json_rpc(
                                        "resources/read",
                                        {"type": "object", "properties": {"uri": _TEXT}},
                                    ),
                                    _tool_call("search_profile", {"query": _TEXT}),
                                    _tool_call(
                                        "ask_applicant",
                                        {"question": _TEXT, "conversation_id": _TEXT},
                                    ),
                                    # Anything at all: the server must still answer 4xx.
                                    {},
                                ]
                            }
                        }
                    },
                },
                "responses": {"200": {"description": "The JSON-RPC answer."}},
            }
        }
    },
}


def fuzz(schema: schemathesis.schemas.BaseSchema, base_url: str) -> int:
    """Run every operation of ``schema`` with a bounded number of examples; count them."""
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            # The timeout is the "no hang" check. Only server errors fail: the service rejects
            # some schema-valid bodies on purpose (e.g. a blank question) with a clear 422.
            case.call_and_validate(
                base_url=base_url, headers=MCP_HEADERS, timeout=10, checks=[not_a_server_error]
            )

        check()
    return len(operations)


def test_no_input_makes_the_server_fail_or_hang(offline_app: RunningApp) -> None:
    schema = schemathesis.openapi.from_url(f"{offline_app.base_url}/openapi.json")
    assert fuzz(schema, offline_app.base_url) >= 7


def test_no_json_rpc_request_makes_the_mcp_endpoint_fail_or_hang(offline_app: RunningApp) -> None:
    schema = schemathesis.openapi.from_dict(MCP_SCHEMA)
    assert fuzz(schema, offline_app.base_url) == 1


@pytest.fixture(params=DATABASES)
def app_on_each_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningApp]:
    database = asyncio.run(empty_database(request.param, tmp_path))
    with run_app({"ENGINE": "offline", "DATABASE_URL": database}) as app:
        yield app


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


HOSTILE_BODIES = {
    "not UTF-8": b'{"input": "caf\xe9"}',
    "a UTF-16 byte order mark": b'\xff\xfe{"input": "x"}',
    "20,000 levels deep": _deep(20_000),
    "an input 20,000 levels deep": b'{"input": ' + _deep(20_000) + b"}",
    "a role that is an object": b'{"input": [{"role": {}, "content": "x"}]}',
    "a lone surrogate in the input": b'{"input": "hi \\ud800"}',
    "a NUL in the input": b'{"input": "hi\\u0000"}',
    "a NUL in a message": b'{"input": [{"role": "user", "content": "\\u0000"}]}',
    "a NUL in the conversation id": b'{"input": "hi", "conversation_id": "a\\u0000b"}',
    "a lone surrogate in the conversation id": b'{"input": "hi", "conversation_id": "\\udc00"}',
    "a lone surrogate in an MCP question": json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "ask_applicant", "arguments": {"question": "hi \ud800"}},
        }
    ).encode(),
    "a NUL in an MCP question": json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": "ask_applicant",
                "arguments": {"question": "hi\x00", "conversation_id": "\x00"},
            },
        }
    ).encode(),
}


def test_hostile_bodies_get_a_4xx_on_every_endpoint(app_on_each_database: RunningApp) -> None:
    app = app_on_each_database
    schema = httpx2.get(f"{app.base_url}/openapi.json").json()
    paths = [path for path, item in schema["paths"].items() if "post" in item and "{" not in path]
    paths.append("/mcp/")
    assert {"/openai-response", "/openai-response/sse", "/mcp/"} <= set(paths)
    failures = []
    with httpx2.Client(base_url=app.base_url, timeout=10) as client:
        for path in paths:
            for name, body in HOSTILE_BODIES.items():
                response = client.post(path, content=body, headers=MCP_HEADERS)
                status = response.status_code
                # The MCP SDK reports a tool's failure in a 200 JSON-RPC result (isError).
                mcp_tool_error = path == "/mcp/" and status == 200 and "isError" in response.text
                if not (400 <= status < 500 or mcp_tool_error):
                    failures.append(f"{path} with {name}: {status} {response.text[:200]}")
    assert failures == []
    assert '"level": "ERROR"' not in app.log()
