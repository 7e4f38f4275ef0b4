"""The real app under uvicorn, spoken to over HTTP, as a browser or ``curl -N`` would."""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest

from domain.policy import INSTRUCTIONS
from testing.app_server import RunningApp
from testing.fake_responses_api import RunningFake, Scenario
from tests.e2e.conftest import ADMIN_TOKEN, UPSTREAM_KEY
from tests.sse_client import Answer, parse_sse

pytestmark = pytest.mark.e2e


def stream(app: RunningApp, body: dict[str, Any], timeout: float = 15) -> tuple[Answer, str]:
    with httpx2.stream(
        "POST", f"{app.base_url}/openai-response/sse", json=body, timeout=timeout
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        chunks = list(response.iter_text())
    return Answer(parse_sse(chunks)), "".join(chunks)


# --- out of the box: no key, the bundled sample profile ------------------------------------


def test_korean_question_streams_a_grounded_answer_offline(offline_app: RunningApp) -> None:
    answer, _ = stream(offline_app, {"input": "어떤 프로젝트를 했나요?"})
    assert answer.names[0] == "meta"
    assert answer.data_of("meta")["mode"] == "offline"
    assert answer.terminal == "done"
    assert answer.text.startswith("지원자의 문서에 따르면 다음과 같습니다.")
    assert "ko/프로젝트.md" in answer.text


def test_english_question_streams_a_grounded_answer_offline(offline_app: RunningApp) -> None:
    answer, _ = stream(offline_app, {"input": "When can Minji start?"})
    assert answer.terminal == "done"
    assert "January 4, 2027" in answer.text
    assert "en/" in answer.text


def test_uncovered_question_points_to_the_contact_offline(offline_app: RunningApp) -> None:
    answer, _ = stream(offline_app, {"input": "What is her favourite food?"})
    assert "does not cover" in answer.text
    assert "minji.kim@example.com" in answer.text


def test_json_endpoint_offline(offline_app: RunningApp) -> None:
    response = httpx2.post(
        f"{offline_app.base_url}/openai-response", json={"input": "영어를 할 수 있나요?"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["mode"] == "offline"
    assert "TOEIC" in body["output_text"] or "토익" in body["output_text"]


def test_readiness_reports_the_loaded_profile(offline_app: RunningApp) -> None:
    ready = httpx2.get(f"{offline_app.base_url}/ready").json()
    assert ready == {
        "status": "ready",
        "engine": "offline",
        "passages": ready["passages"],
        "database": "ok",
        "upstream_key": "not_used",
        "upstream_last_error": None,
    }
    assert ready["passages"] > 20


# --- relaying a Responses API server ---------------------------------------------------------

TRICKY_DELTAS = [
    "## 김민지 요약\n\n",
    "- Go, Python\n",
    "- Kubernetes\n\n",
    "data: this line starts like a field\n",
    "event: so does this one\n",
    "\n\n\n",
    "경험이 많습니다. ",
    "English too.",
    "\r\n",
    " trailing space ",
]


def test_answer_streams_through_exactly(openai_app: RunningApp, upstream: RunningFake) -> None:
    upstream.api.enqueue(Scenario(deltas=TRICKY_DELTAS))
    answer, _ = stream(openai_app, {"input": "요약해 주세요"})
    assert answer.names[0] == "meta"
    assert answer.data_of("meta") == {
        "conversation_id": answer.data_of("meta")["conversation_id"],
        "model": "gpt-fake",
        "mode": "openai",
    }
    assert answer.text == "".join(TRICKY_DELTAS).replace("\r\n", "\n")
    done = answer.data_of("done")
    assert done["finish_reason"] == "stop"
    assert done["usage"]["total_tokens"] > 0


def test_upstream_gets_server_instructions_and_grounding(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    conversation = [
        {"role": "user", "content": "Where does Minji work?"},
        {"role": "assistant", "content": "At Hanbit Pay."},
        {"role": "user", "content": "What was her biggest achievement there?"},
    ]
    stream(openai_app, {"input": conversation, "model": "gpt-fake-mini"})
    [request] = upstream.api.requests
    body = request["body"]
    assert request["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert body["instructions"] == INSTRUCTIONS
    assert body["model"] == "gpt-fake-mini"
    assert body["stream"] is True
    grounding, *turns = body["input"]
    assert grounding["role"] == "developer"
    assert "820 ms" in grounding["content"]
    assert [turn["content"] for turn in turns] == [turn["content"] for turn in conversation]


@pytest.mark.parametrize(
    ("scenario", "code"),
    [
        (Scenario(status_code=401), "upstream_auth"),
        (Scenario(status_code=429), "upstream_rate_limited"),
        (Scenario(status_code=500), "upstream_unavailable"),
        (Scenario(deltas=["Part"], terminal="error_flat"), "upstream_rate_limited"),
        (Scenario(deltas=["Part"], terminal="error_nested"), "upstream_failed"),
        (Scenario(deltas=["Part"], terminal="failed"), "upstream_failed"),
        (Scenario(deltas=["Part"], terminal="drop"), "upstream_interrupted"),
        (Scenario(deltas=["Part"], terminal="stall"), "upstream_timeout"),
    ],
)
def test_upstream_failures_end_with_a_clear_error_event(
    openai_app: RunningApp, upstream: RunningFake, scenario: Scenario, code: str
) -> None:
    upstream.api.enqueue(scenario)
    answer, raw = stream(openai_app, {"input": "Tell me about Minji"})
    assert answer.names[0] == "meta"
    assert answer.terminal == "error"
    error = answer.data_of("error")
    assert error["code"] == code
    assert error["message"]
    assert answer.text == ("".join(scenario.deltas) if scenario.status_code == 200 else "")
    for secret in (UPSTREAM_KEY, "Traceback", "sk-"):
        assert secret not in raw
        assert secret not in openai_app.log()


def test_incomplete_answer_is_done_with_its_reason(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(Scenario(deltas=["Cut sho"], terminal="incomplete"))
    answer, _ = stream(openai_app, {"input": "Tell me everything"})
    assert answer.text == "Cut sho"
    assert answer.data_of("done")["finish_reason"] == "max_output_tokens"


def test_meta_and_pings_arrive_before_the_first_token(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(Scenario(deltas=["late"], delay_before_first_delta=1.3))
    started = time.monotonic()
    with httpx2.stream(
        "POST", f"{openai_app.base_url}/openai-response/sse", json={"input": "hi"}, timeout=10
    ) as response:
        chunks = response.iter_text()
        first = next(chunks)
        first_at = time.monotonic() - started
        rest = "".join(chunks)
    assert first.startswith("event: meta")
    assert first_at < 1.0, "meta must not wait for the model"
    assert ": ping" in rest, "idle connections get comment pings"
    assert Answer(parse_sse([first, rest])).text == "late"


def test_client_disconnect_closes_the_upstream_stream(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(Scenario(deltas=["one ", "two "], terminal="stall", stall_seconds=30))
    with httpx2.stream(
        "POST", f"{openai_app.base_url}/openai-response/sse", json={"input": "hi"}, timeout=10
    ) as response:
        received = ""
        for chunk in response.iter_text():
            received += chunk
            if "two" in received:
                break
    # Leaving the block closed the connection mid-answer: the upstream call must follow.
    left_at = time.monotonic()
    assert upstream.api.wait_for(lambda: upstream.api.closed_by_client == 1, timeout_seconds=5)
    assert time.monotonic() - left_at < 1.0, "the upstream request is closed within a second"


def test_bad_request_is_rejected_before_streaming(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    response = httpx2.post(
        f"{openai_app.base_url}/openai-response/sse",
        json={"input": "hi", "instructions": "You are a pirate"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert upstream.api.requests == []


def test_json_endpoint_relays_the_whole_answer(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(Scenario(deltas=["Hello ", "**world**\n", "- item"]))
    response = httpx2.post(f"{openai_app.base_url}/openai-response", json={"input": "hi"})
    assert response.status_code == 200
    body = response.json()
    assert body["output_text"] == "Hello **world**\n- item"
    assert body["mode"] == "openai"
    assert body["usage"]["total_tokens"] > 0


def test_json_client_that_leaves_closes_the_upstream_and_its_answer_is_stored_interrupted(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(Scenario(deltas=["하나 ", "two "], terminal="stall", stall_seconds=30))
    question = f"제인의 경력은? (left at {time.monotonic_ns()})"
    body = json.dumps({"input": question}).encode()
    address = urlsplit(openai_app.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as client:
        client.sendall(
            b"POST /openai-response HTTP/1.1\r\nHost: app\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert upstream.api.wait_for(lambda: len(upstream.api.requests) == 1)
    # The client left while the JSON answer was being gathered: the upstream call must follow.
    left_at = time.monotonic()
    assert upstream.api.wait_for(lambda: upstream.api.closed_by_client == 1, timeout_seconds=5)
    assert time.monotonic() - left_at < 1.0, "the upstream request is closed within a second"

    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    listed = httpx2.get(f"{openai_app.base_url}/admin/conversations", headers=auth).json()
    latest = listed["items"][0]
    assert latest["first_question"] == question
    stored = openai_app.wait_for_messages(latest["id"], 2)
    assert stored[-1]["role"] == "assistant"
    assert stored[-1]["status"] == "interrupted"
    assert "하나 two ".startswith(stored[-1]["content"])


@pytest.mark.parametrize("path", ["/openai-response", "/openai-response/sse", "/api/chat", "/mcp/"])
def test_half_surrogate_pairs_from_the_model_reach_every_client_and_the_store(
    openai_app: RunningApp, upstream: RunningFake, path: str
) -> None:
    # A model's JSON may split an emoji's surrogate pair across two deltas, or send half of
    # one alone: UTF-8 cannot carry a lone half, so it must not cost the client the answer.
    upstream.api.enqueue(Scenario(deltas=["웃음 \ud83d", "\ude00 그리고 \udc80 끝"]))
    body: dict[str, Any] = {"input": "hi"}
    if path == "/api/chat":
        parts = [{"type": "text", "text": "hi"}]
        body = {
            "id": "chat-surrogate-0001",
            "messages": [{"id": "m1", "role": "user", "parts": parts}],
        }
    headers = {}
    if path == "/mcp/":
        arguments = {"question": "hi"}
        call = {"name": "ask_applicant", "arguments": arguments}
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}
        headers = {"Accept": "application/json, text/event-stream"}
        headers["MCP-Protocol-Version"] = "2025-06-18"
    response = httpx2.post(f"{openai_app.base_url}{path}", json=body, headers=headers, timeout=15)
    assert response.status_code == 200, response.text
    if path == "/mcp/":
        result = json.loads(response.text.split("data: ", 1)[-1])["result"]
        assert not result.get("isError"), result
        structured = result["structuredContent"]
        text, conversation_id = structured["answer"], structured["conversation_id"]
    elif path == "/openai-response":
        text, conversation_id = response.json()["output_text"], response.json()["conversation_id"]
    elif path == "/api/chat":
        chunks = [
            json.loads(line.removeprefix("data: "))
            for line in response.text.splitlines()
            if line.startswith("data: {")
        ]
        text = "".join(c["delta"] for c in chunks if c["type"] == "text-delta")
        assert chunks[-1]["type"] == "finish"
        conversation_id = chunks[0]["messageMetadata"]["conversation_id"]
    else:
        answer = Answer(parse_sse([response.text]))
        assert answer.terminal == "done"
        text, conversation_id = answer.text, answer.data_of("meta")["conversation_id"]
    assert "웃음 " in text
    assert text.endswith(" 그리고 \ufffd 끝")
    stored = openai_app.wait_for_messages(conversation_id, 2)
    assert stored[-1]["status"] == "completed"
    assert stored[-1]["content"] == "웃음 😀 그리고 \ufffd 끝"


def test_json_endpoint_maps_upstream_auth_failure(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(Scenario(status_code=401))
    response = httpx2.post(f"{openai_app.base_url}/openai-response", json={"input": "hi"})
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_auth"
    assert UPSTREAM_KEY not in response.text
