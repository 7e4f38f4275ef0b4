"""Conversations survive everything a deployment goes through: drops, disconnects, restarts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx2
import pytest

from testing.app_server import RunningApp, run_app
from testing.fake_responses_api import RunningFake, Scenario
from tests.databases import empty_database
from tests.e2e.conftest import sqlite_url
from tests.sse_client import Answer, ask, parse_sse

pytestmark = pytest.mark.e2e


def test_follow_up_reaches_the_model_with_the_stored_turns(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(Scenario(deltas=["Hanbit Pay,\n", "since 2021."]))
    first = ask(openai_app, {"input": "Where does Minji work?"})
    conversation_id = first.data_of("meta")["conversation_id"]
    upstream.api.enqueue(Scenario(deltas=["Sora Logistics."]))
    second = ask(openai_app, {"input": "And before that?", "conversation_id": conversation_id})
    assert second.data_of("meta")["conversation_id"] == conversation_id
    _, *turns = upstream.api.requests[1]["body"]["input"]
    assert [(t["role"], t["content"]) for t in turns] == [
        ("user", "Where does Minji work?"),
        ("assistant", "Hanbit Pay,\nsince 2021."),
        ("user", "And before that?"),
    ]
    stored = openai_app.stored_messages(conversation_id)
    assert [m["content"] for m in stored] == [
        "Where does Minji work?",
        "Hanbit Pay,\nsince 2021.",
        "And before that?",
        "Sora Logistics.",
    ]


def test_partial_answer_after_an_upstream_drop_is_kept(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(Scenario(deltas=["Minji led ", "the migr"], terminal="drop"))
    answer = ask(openai_app, {"input": "What did Minji lead?"})
    assert answer.terminal == "error"
    stored = openai_app.stored_messages(answer.data_of("meta")["conversation_id"])
    assert stored[-1] == {**stored[-1], "content": "Minji led the migr", "status": "failed"}


def test_answer_cut_by_the_model_is_incomplete(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(Scenario(deltas=["Long answ"], terminal="incomplete"))
    answer = ask(openai_app, {"input": "Tell me everything"})
    stored = openai_app.stored_messages(answer.data_of("meta")["conversation_id"])
    assert (stored[-1]["content"], stored[-1]["status"]) == ("Long answ", "incomplete")


def test_client_disconnect_stores_the_partial_answer_as_interrupted(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(Scenario(deltas=["one ", "two "], terminal="stall", stall_seconds=30))
    received = ""
    with httpx2.stream(
        "POST", f"{openai_app.base_url}/openai-response/sse", json={"input": "hi"}, timeout=10
    ) as response:
        for chunk in response.iter_text():
            received += chunk
            if "two" in received:
                break
    conversation_id = Answer(parse_sse([received])).data_of("meta")["conversation_id"]
    stored = openai_app.wait_for_messages(conversation_id, 2)
    assert (stored[-1]["content"], stored[-1]["status"]) == ("one two ", "interrupted")
    assert upstream.api.wait_for(lambda: upstream.api.closed_by_client == 1, timeout_seconds=5)


def test_conversation_survives_a_server_restart(tmp_path: Path) -> None:
    environment = {"ENGINE": "offline", "DATABASE_URL": sqlite_url(tmp_path)}
    with run_app(environment) as app:
        first = ask(app, {"input": "What is her biggest achievement?"})
        conversation_id = first.data_of("meta")["conversation_id"]
    with run_app(environment) as restarted:
        before = restarted.stored_messages(conversation_id)
        assert [m["content"] for m in before] == ["What is her biggest achievement?", first.text]
        follow_up = ask(
            restarted, {"input": "그 프로젝트의 결과는?", "conversation_id": conversation_id}
        )
        assert follow_up.terminal == "done"
        assert len(restarted.stored_messages(conversation_id)) == 4


def test_answer_in_flight_during_shutdown_ends_with_an_error_and_is_kept(
    fake_upstream: RunningFake, tmp_path: Path
) -> None:
    fake_upstream.api.reset()
    fake_upstream.api.enqueue(
        Scenario(deltas=["Half ", "an answer"], terminal="stall", stall_seconds=30)
    )
    environment = {
        "OPENAI_API_KEY": "sk-test-shutdown",
        "OPENAI_BASE_URL": fake_upstream.base_url,
        "UPSTREAM_MAX_RETRIES": "0",
        "SEMANTIC_SEARCH": "false",
        "DATABASE_URL": sqlite_url(tmp_path),
        "SHUTDOWN_GRACE_SECONDS": "1",
    }
    with run_app(environment) as app:
        received = ""
        terminated_at = 0.0
        with httpx2.stream(
            "POST", f"{app.base_url}/openai-response/sse", json={"input": "hi"}, timeout=15
        ) as response:
            for chunk in response.iter_text():
                received += chunk
                if "an answer" in received and not terminated_at:
                    app.process.terminate()  # SIGTERM, as `docker stop` sends
                    terminated_at = time.monotonic()
        ended_after = time.monotonic() - terminated_at
        app.process.wait(timeout=15)
    answer = Answer(parse_sse([received]))
    assert answer.terminal == "error"
    assert answer.data_of("error")["code"] == "server_shutting_down"
    assert 0.5 < ended_after < 5, "the stream ends when the grace period is over"
    fake_upstream.api.release_stalled_streams()
    with run_app({**environment, "ENGINE": "offline"}) as restarted:
        stored = restarted.stored_messages(answer.data_of("meta")["conversation_id"])
    assert (stored[-1]["role"], stored[-1]["content"]) == ("assistant", "Half an answer")
    assert stored[-1]["status"] == "failed"


def test_a_conversation_on_mysql_keeps_korean_and_emoji_exactly(
    fake_upstream: RunningFake, tmp_path: Path
) -> None:
    """The app on MySQL (MariaDB here and in CI): migrated at start-up, a Korean question with
    emoji answered in Korean with emoji, a follow-up, everything read back as it was sent,
    and again after a restart."""
    database_url = asyncio.run(empty_database("mysql", tmp_path))
    fake_upstream.api.reset()
    environment = {
        "OPENAI_API_KEY": "sk-test-mysql",
        "OPENAI_BASE_URL": fake_upstream.base_url,
        "UPSTREAM_MAX_RETRIES": "0",
        "SEMANTIC_SEARCH": "false",
        "DATABASE_URL": database_url,
    }
    question = "민지 님의 가장 큰 성과는? 🚀 👩‍💻 (café)"
    deltas = ["한빛페이에서 ", "결제 플랫폼을 ", "이끌었습니다 💳👍🏽\n\n- 지연 ", "40% 감소 🇰🇷"]
    with run_app(environment) as app:
        fake_upstream.api.enqueue(Scenario(deltas=deltas))
        first = ask(app, {"input": question})
        assert first.terminal == "done"
        assert first.text == "".join(deltas)
        conversation_id = first.data_of("meta")["conversation_id"]
        fake_upstream.api.enqueue(Scenario(deltas=["그 전에는 ", "소라물류 📦"]))
        second = ask(app, {"input": "그 전에는요? 🤔", "conversation_id": conversation_id})
        assert second.terminal == "done"
        expected = [question, "".join(deltas), "그 전에는요? 🤔", "그 전에는 소라물류 📦"]
        assert [m["content"] for m in app.wait_for_messages(conversation_id, 4)] == expected
    with run_app({**environment, "ENGINE": "offline"}) as restarted:
        stored = restarted.stored_messages(conversation_id)
    assert [m["content"] for m in stored] == expected
    assert [m["status"] for m in stored if m["role"] == "assistant"] == ["completed"] * 2
