"""POST /api/chat read by the AI SDK itself: the `ai` package's transport and reader (tests/js).

The app runs under uvicorn; node runs tests/js/ai_sdk_chat.mjs, which asks in one chat as
useChat does and prints what the package assembled.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx2
import pytest

from domain.errors import UPSTREAM_MESSAGES, ErrorCode
from testing.app_server import RunningApp
from testing.fake_responses_api import RunningFake, Scenario
from tests.e2e.test_streaming import TRICKY_DELTAS
from tests.js_clients import run_js

pytestmark = pytest.mark.e2e


def chat_id() -> str:
    return secrets.token_urlsafe(16)


def ask_in_one_chat(app: RunningApp, questions: list[str], chat: str | None = None) -> Any:
    result = run_js("ai_sdk_chat.mjs", app.base_url, chat or chat_id(), json.dumps(questions))
    turns: list[dict[str, Any]] = result["turns"]
    return turns


def test_ai_sdk_rebuilds_the_answer_and_its_follow_up_exactly(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    follow_up = ["Before that, ", "Sora Logistics.\n\n", "- 2017–2021"]
    upstream.api.enqueue(Scenario(deltas=TRICKY_DELTAS), Scenario(deltas=follow_up))
    first, second = ask_in_one_chat(openai_app, ["요약해 주세요", "And before that?"])

    for turn in (first, second):
        assert turn["status"] == 200
        assert turn["header"] == "v1"
        assert turn["errors"] == []
        types = turn["chunkTypes"]
        assert types[0] == "start"
        assert types[-1] == "finish"
        assert types[-2] == "text-end"
        assert "text-delta" in types
    # JSON chunks carry every character, carriage returns included.
    assert first["message"]["text"] == "".join(TRICKY_DELTAS)
    assert second["message"]["text"] == "".join(follow_up)

    metadata = first["message"]["metadata"]
    assert metadata["mode"] == "openai"
    assert metadata["model"] == "gpt-fake"
    assert metadata["finish_reason"] == "stop"
    assert metadata["usage"]["total_tokens"] > 0
    conversation_id = metadata["conversation_id"]
    # The follow-up continued the same stored conversation, from the metadata useChat kept.
    assert second["message"]["metadata"]["conversation_id"] == conversation_id
    stored = openai_app.stored_messages(conversation_id)
    assert [m["content"] for m in stored] == [
        "요약해 주세요",
        "".join(TRICKY_DELTAS),
        "And before that?",
        "".join(follow_up),
    ]
    _, *history = upstream.api.requests[1]["body"]["input"]
    assert [t["role"] for t in history] == ["user", "assistant", "user"]


def test_sources_arrive_as_source_documents_citing_their_numbers(
    offline_app: RunningApp,
) -> None:
    [turn] = ask_in_one_chat(offline_app, ["어떤 프로젝트를 했나요?"])
    sources = turn["message"]["sources"]
    assert sources, "the sample profile covers projects"
    assert [s["sourceId"] for s in sources] == [str(n) for n in range(1, len(sources) + 1)]
    for source in sources:
        assert source["filename"]
        assert source["title"]
        assert source["mediaType"]
        assert source["providerMetadata"]["askTheApplicant"]["snippet"]
    stored = offline_app.stored_messages(turn["message"]["metadata"]["conversation_id"])
    assert stored[1]["content"] == turn["message"]["text"]


def test_ai_sdk_reports_an_error_after_text(openai_app: RunningApp, upstream: RunningFake) -> None:
    upstream.api.enqueue(Scenario(deltas=["Part of it"], terminal="failed"))
    [turn] = ask_in_one_chat(openai_app, ["Where does Minji work?"])
    assert turn["status"] == 200
    assert turn["errors"] == [UPSTREAM_MESSAGES[ErrorCode.UPSTREAM_FAILED]]
    assert turn["chunkTypes"][-1] == "error"
    assert turn["message"]["text"] == "Part of it"
    metadata = turn["message"]["metadata"]
    assert metadata["error_code"] == "upstream_failed"
    stored = openai_app.stored_messages(metadata["conversation_id"])
    assert (stored[1]["content"], stored[1]["status"]) == ("Part of it", "failed")


def test_a_chat_id_claims_no_one_elses_conversation(offline_app: RunningApp) -> None:
    # Two clients that chose the same chat id get two conversations.
    shared = chat_id()
    [mine] = ask_in_one_chat(offline_app, ["Where does Minji work?"], shared)
    [theirs] = ask_in_one_chat(offline_app, ["어떤 프로젝트를 했나요?"], shared)
    mine_id = mine["message"]["metadata"]["conversation_id"]
    assert theirs["message"]["metadata"]["conversation_id"] != mine_id
    assert len(offline_app.stored_messages(mine_id)) == 2

    # A conversation id nobody issued is refused before anything is stored or streamed.
    body = {
        "id": shared,
        "messages": [
            {"id": "a", "role": "user", "parts": [{"type": "text", "text": "Hi"}]},
            {
                "id": "b",
                "role": "assistant",
                "metadata": {"conversation_id": "not-a-real-conversation"},
                "parts": [{"type": "text", "text": "Hello"}],
            },
            {"id": "c", "role": "user", "parts": [{"type": "text", "text": "Where?"}]},
        ],
        "trigger": "submit-message",
    }
    response = httpx2.post(f"{offline_app.base_url}/api/chat", json=body, timeout=10)
    assert response.status_code == 404
    assert response.json()["code"] == "conversation_not_found"
