"""Which SSE client libraries rebuild an answer exactly: the README's "Clients" section, tested.

A model's answer has deltas that start with line breaks or are nothing else ("\\n\\n\\n"); the
SSE spec sends those as empty ``data:`` lines, which a compliant parser joins back with ``\\n``.
"""

from __future__ import annotations

import json
import secrets

import httpx2
import pytest
from httpx_sse import connect_sse

from testing.app_server import RunningApp
from testing.fake_responses_api import RunningFake, Scenario
from tests.e2e.test_streaming import TRICKY_DELTAS
from tests.js_clients import run_js

pytestmark = pytest.mark.e2e

DELTAS = [*TRICKY_DELTAS, "\n\nA paragraph after two line breaks.", "\n"]
# The SSE spec reads a lone CR or CRLF as a line end: an SSE stream carries "\n" for both.
SSE_TEXT = "".join(DELTAS).replace("\r\n", "\n")
QUESTION = {"input": "요약해 주세요"}
# Apart, so that the relay sends each delta as its own event (it joins deltas read together).
ANSWER = Scenario(deltas=DELTAS, delay_between_deltas=0.03)


def native(client: str, app: RunningApp) -> str:
    url = f"{app.base_url}/openai-response/sse"
    text: str = run_js("sse_clients.mjs", client, url, json.dumps(QUESTION))["text"]
    return text


def test_eventsource_parser_rebuilds_the_answer_exactly(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(ANSWER)
    assert native("eventsource-parser", openai_app) == SSE_TEXT


def test_httpx_sse_rebuilds_the_answer_exactly(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(ANSWER)
    text = ""
    with (
        httpx2.Client(timeout=10) as client,
        connect_sse(
            client, "POST", f"{openai_app.base_url}/openai-response/sse", json=QUESTION
        ) as source,
    ):
        for event in source.iter_sse():
            if event.event == "message":  # httpx-sse names unnamed events "message"
                text += event.data
    assert text == SSE_TEXT


def test_fetch_event_source_drops_leading_line_breaks_of_a_delta(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    # Azure/fetch-event-source issue #50 (open; 2.0.1 is the latest release): an event whose
    # first data lines are empty loses them. The README warns about it; this test says when a
    # release fixes it.
    upstream.api.enqueue(ANSWER)
    rebuilt = native("fetch-event-source", openai_app)
    assert rebuilt != SSE_TEXT
    assert rebuilt.replace("\n", "") == SSE_TEXT.replace("\n", "")


def test_fetch_event_source_reading_api_chat_rebuilds_the_answer_exactly(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    # The workaround: POST /api/chat carries each delta as a JSON string on one data line.
    upstream.api.enqueue(ANSWER)
    body = {
        "id": secrets.token_urlsafe(16),
        "messages": [{"id": "q", "role": "user", "parts": [{"type": "text", "text": "요약"}]}],
    }
    url = f"{openai_app.base_url}/api/chat"
    result = run_js("sse_clients.mjs", "fetch-event-source-chat", url, json.dumps(body))
    assert result["text"] == "".join(DELTAS)
