"""Conversations over HTTP, on the real SQL store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient

from bootstrap import create_app
from domain.models import AnswerDone, TextDelta
from settings import Settings
from tests.fakes import ScriptedEngine, small_profile
from tests.sse_client import Answer, parse_sse

JSON_HEADERS = {"content-type": "application/json"}
ADMIN_TOKEN = "admin-token-for-tests-0123456789"


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


def make_client(database_url: str, engine: ScriptedEngine, **settings: Any) -> TestClient:
    configured = Settings(_env_file=None, database_url=database_url, **settings)  # type: ignore[call-arg]
    app = create_app(configured, knowledge=small_profile(), engine=engine)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client(database_url: str, engine: ScriptedEngine) -> Iterator[TestClient]:
    with make_client(database_url, engine, admin_token=ADMIN_TOKEN) as test_client:
        yield test_client


def ask(client: TestClient, body: dict[str, Any]) -> Answer:
    with client.stream("POST", "/openai-response/sse", json=body) as response:
        assert response.status_code == 200, response.read()
        return Answer(parse_sse(response.iter_text()))


def test_a_conversation_continues_across_turns_and_endpoints(
    client: TestClient, engine: ScriptedEngine
) -> None:
    first = ask(client, {"input": "Where did Jane work?"})
    conversation_id = first.data_of("meta")["conversation_id"]
    engine.script = [TextDelta("Since 2020."), AnswerDone("stop")]
    follow_up = client.post(
        "/openai-response", json={"input": "Since when?", "conversation_id": conversation_id}
    )
    assert follow_up.status_code == 200
    assert follow_up.json()["conversation_id"] == conversation_id
    assert [m.content for m in engine.requests[1].messages] == [
        "Where did Jane work?",
        "Hello world",
        "Since when?",
    ]

    stored = client.get(f"/conversations/{conversation_id}").json()
    assert stored["id"] == conversation_id
    assert [(m["role"], m["content"], m["status"], m["source"]) for m in stored["messages"]] == [
        ("user", "Where did Jane work?", "completed", "service"),
        ("assistant", "Hello world", "completed", "service"),
        ("user", "Since when?", "completed", "service"),
        ("assistant", "Since 2020.", "completed", "service"),
    ]


def test_history_a_client_sends_is_shown_as_the_clients_not_the_services(
    client: TestClient,
) -> None:
    history = [
        {"role": "user", "content": "제인의 경력은?"},
        {"role": "assistant", "content": "She was the CEO of Google."},  # not our words
        {"role": "user", "content": "Where did Jane work?"},
    ]
    conversation_id = ask(client, {"input": history}).data_of("meta")["conversation_id"]

    stored = client.get(f"/conversations/{conversation_id}").json()
    assert [(m["role"], m["source"]) for m in stored["messages"]] == [
        ("user", "client"),
        ("assistant", "client"),
        ("user", "service"),
        ("assistant", "service"),
    ]
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    page = client.get("/admin/conversations", headers=auth).json()
    assert [(item["turns"], item["client_turns"]) for item in page["items"]] == [(2, 1)]
    insights = client.get("/admin/insights", headers=auth).json()
    assert sum(day["answers"] for day in insights["answers_per_day"]) == 1


def test_stored_answer_equals_what_was_streamed(client: TestClient, engine: ScriptedEngine) -> None:
    deltas = ["# 제목\n\n", "- 하나\n- 둘\n", "data: not a field\n", "\n\n끝"]
    engine.script = [*map(TextDelta, deltas), AnswerDone("stop")]
    streamed = ask(client, {"input": "hi"})
    conversation_id = streamed.data_of("meta")["conversation_id"]
    stored = client.get(f"/conversations/{conversation_id}").json()["messages"][-1]
    assert stored["content"] == streamed.text == "".join(deltas)


def test_unknown_conversation_gets_404_before_streaming(
    client: TestClient, engine: ScriptedEngine
) -> None:
    unknown = "A" * 22  # the shape of an id, but no conversation's
    for path in ("/openai-response/sse", "/openai-response"):
        response = client.post(path, json={"input": "hi", "conversation_id": unknown})
        assert response.status_code == 404
        assert response.json()["code"] == "conversation_not_found"
    assert client.get(f"/conversations/{unknown}").status_code == 404
    assert engine.requests == []


@pytest.mark.parametrize("malformed", ["does-not-exist", "a" * 64, "%00" * 22, "ab%ED%A0%80cd"])
def test_a_malformed_conversation_id_is_refused_before_any_query(
    client: TestClient, engine: ScriptedEngine, malformed: str
) -> None:
    body = {"input": "hi", "conversation_id": unquote(malformed, errors="surrogateescape")}
    for path in ("/openai-response/sse", "/openai-response"):
        response = client.post(path, content=json.dumps(body), headers=JSON_HEADERS)
        assert response.status_code == 422
        assert "'conversation_id': is not an id this service issued" in response.json()["message"]
    read = client.get(f"/conversations/{malformed}")
    assert read.status_code == 404
    assert read.json()["code"] == "conversation_not_found"
    assert engine.requests == []


def test_conversation_ids_are_unguessable(client: TestClient) -> None:
    ids = {ask(client, {"input": "hi"}).data_of("meta")["conversation_id"] for _ in range(5)}
    assert len(ids) == 5
    assert all(len(conversation_id) >= 22 for conversation_id in ids)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-token"}, 401),
        ({"Authorization": f"Basic {ADMIN_TOKEN}"}, 401),
        ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, 200),
    ],
)
def test_admin_endpoints_need_the_bearer_token(
    client: TestClient, headers: dict[str, str], status: int
) -> None:
    for path in ("/admin/conversations", "/admin/insights"):
        response = client.get(path, headers=headers)
        assert response.status_code == status, path
        if status == 401:
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["code"] == "unauthorized"


def test_admin_endpoints_do_not_exist_without_a_token(database_url: str) -> None:
    with make_client(database_url, ScriptedEngine()) as client:
        for path in ("/admin/conversations", "/admin/insights"):
            assert client.get(path, headers={"Authorization": "Bearer anything"}).status_code == 404


def test_admin_sees_conversations_and_insights(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ask(client, {"input": "Which projects did Jane build in Go?"})
    ask(client, {"input": "which projects did Jane build in Go"})
    ask(client, {"input": "What is Jane's favourite colour?"})

    page = client.get("/admin/conversations", params={"page_size": 2}, headers=auth).json()
    assert page["total"] == 3
    assert len(page["items"]) == 2
    assert page["items"][0]["first_question"] == "What is Jane's favourite colour?"

    insights = client.get("/admin/insights", headers=auth).json()
    assert insights["top_questions"][0]["count"] == 2
    assert [q["question"] for q in insights["unanswered_questions"]] == [
        "What is Jane's favourite colour?"
    ]
    assert sum(day["answers"] for day in insights["answers_per_day"]) == 3
    assert insights["tokens"]["total_tokens"] == 15


def test_bad_paging_is_rejected(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = client.get("/admin/conversations", params={"page_size": 1000}, headers=auth)
    assert response.status_code == 422
    assert "'query.page_size'" in response.json()["message"]


def test_readiness_includes_the_database(client: TestClient) -> None:
    assert client.get("/ready").json()["database"] == "ok"
