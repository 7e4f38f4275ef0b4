"""The resume contract over HTTP, in process: SSE ids on both protocols, the two GET
endpoints, 204 / 400 / 409, the rate limit and Stop."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bootstrap import create_app
from settings import Settings
from tests.fakes import InMemoryConversations, ScriptedEngine, small_profile
from tests.sse_client import Answer, parse_sse

EVENT_ID = re.compile(r"^id: ([A-Za-z0-9_-]{16})\.([0-9]+)$", re.MULTILINE)
CHAT_ID = "a1B2c3D4e5F6g7H8"


def make_client(**overrides: Any) -> TestClient:
    values: dict[str, Any] = {"max_input_chars": 100, **overrides}
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    app = create_app(
        settings,
        knowledge=small_profile(),
        engine=ScriptedEngine(),
        conversations=InMemoryConversations(),
    )
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with make_client() as test_client:
        yield test_client


def ask(client: TestClient) -> tuple[str, str]:
    response = client.post("/openai-response/sse", json={"input": "Where did Jane work?"})
    assert response.status_code == 200
    return response.text, Answer(parse_sse([response.text])).data_of("meta")["conversation_id"]


def test_every_event_of_an_answer_carries_its_id(client: TestClient) -> None:
    raw, _ = ask(client)
    ids = EVENT_ID.findall(raw)
    assert len(ids) == raw.count("\n\n") == 5  # meta, sources, two deltas, done
    assert {answer for answer, _ in ids} == {ids[0][0]}
    assert [int(number) for _, number in ids] == [1, 2, 3, 4, 5]


def test_the_ai_sdk_stream_carries_ids_too(client: TestClient) -> None:
    body = {
        "id": CHAT_ID,
        "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Hi Jane"}]}],
    }
    raw = client.post("/api/chat", json=body).text
    ids = EVENT_ID.findall(raw)
    assert len(ids) == raw.count("\n\n")
    assert raw.rstrip().endswith("data: [DONE]")


def test_a_resume_replays_or_continues_the_answer(client: TestClient) -> None:
    raw, conversation_id = ask(client)
    url = f"/conversations/{conversation_id}/stream"
    replay = client.get(url)
    assert replay.status_code == 200
    assert replay.headers["content-type"].startswith("text/event-stream")
    assert replay.text == raw  # the same events, ids included

    answer_id, _ = EVENT_ID.findall(raw)[2]
    for response in (
        client.get(url, headers={"Last-Event-ID": f"{answer_id}.3"}),
        client.get(url, params={"last_event_id": f"{answer_id}.3"}),
    ):
        assert response.status_code == 200
        rest = Answer(parse_sse([response.text]))
        assert rest.names == ["message", "done"]
        assert rest.text == " world"


def test_no_answer_in_flight_is_204(client: TestClient) -> None:
    response = client.get("/conversations/" + "x" * 22 + "/stream")
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/api/chat/{CHAT_ID}/stream").status_code == 204


@pytest.mark.parametrize("value", ["nonsense", "abc.1", "0123456789abcdef.x", "…"])
def test_a_malformed_last_event_id_is_400(client: TestClient, value: str) -> None:
    _, conversation_id = ask(client)
    response = client.get(
        f"/conversations/{conversation_id}/stream", params={"last_event_id": value}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_last_event_id"
    assert "Last-Event-ID" in response.json()["message"]


def test_an_id_of_another_answer_is_409(client: TestClient) -> None:
    _, conversation_id = ask(client)
    response = client.get(
        f"/conversations/{conversation_id}/stream",
        headers={"Last-Event-ID": "0123456789abcdef.2"},
    )
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "resume_unavailable"
    assert "GET /conversations/" in body["message"]


def test_the_ai_sdk_resume_replays_the_chats_answer_from_its_start(client: TestClient) -> None:
    body = {
        "id": CHAT_ID,
        "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Hi Jane"}]}],
    }
    raw = client.post("/api/chat", json=body).text
    resumed = client.get(f"/api/chat/{CHAT_ID}/stream")
    assert resumed.status_code == 200
    assert resumed.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert resumed.text == raw
    first = json.loads(resumed.text.split("data: ", 2)[1].split("\n")[0])
    assert first["type"] == "start"
    # The conversation's resume serves it in the protocol it was asked in.
    conversation_id = first["messageMetadata"]["conversation_id"]
    again = client.get(f"/conversations/{conversation_id}/stream")
    assert again.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert client.get("/api/chat/short/stream").status_code == 422


def test_resumes_count_against_the_rate_limit() -> None:
    with make_client(rate_limit_per_minute=2) as client:
        _, conversation_id = ask(client)
        assert client.get(f"/conversations/{conversation_id}/stream").status_code == 200
        refused = client.get(f"/conversations/{conversation_id}/stream")
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"


def test_with_a_window_of_zero_answers_stream_directly_and_nothing_resumes() -> None:
    with make_client(resume_window_seconds=0) as client:
        raw, conversation_id = ask(client)
        assert "id: " not in raw
        assert client.get(f"/conversations/{conversation_id}/stream").status_code == 204


def test_stop_answers_204(client: TestClient) -> None:
    _, conversation_id = ask(client)
    assert client.delete(f"/conversations/{conversation_id}/stream").status_code == 204
    assert client.delete("/conversations/" + "y" * 22 + "/stream").status_code == 204


def test_resume_outcomes_are_counted(client: TestClient) -> None:
    _, conversation_id = ask(client)
    client.get(f"/conversations/{conversation_id}/stream")
    client.get("/conversations/" + "x" * 22 + "/stream")
    client.get(f"/conversations/{conversation_id}/stream", params={"last_event_id": "bad"})
    metrics = client.get("/metrics").text
    assert 'answer_resumes_total{outcome="resumed"} 1.0' in metrics
    assert 'answer_resumes_total{outcome="none"} 1.0' in metrics
    assert 'answer_resumes_total{outcome="invalid_last_event_id"} 1.0' in metrics


def test_a_portfolio_on_another_origin_may_resume_and_stop() -> None:
    origin = "https://portfolio.example"
    with make_client(cors_origins=origin) as client:
        for method, header in (("GET", "last-event-id"), ("DELETE", None)):
            preflight = client.options(
                "/conversations/" + "x" * 22 + "/stream",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": method,
                    **({"Access-Control-Request-Headers": header} if header else {}),
                },
            )
            assert preflight.status_code == 200, (method, preflight.text)
            assert method in preflight.headers["access-control-allow-methods"]
