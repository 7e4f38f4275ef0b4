"""Resumable streams across replicas: two uvicorn processes of the app sharing Redis and
PostgreSQL (as a deployment behind a load balancer), the fake Responses API pacing a long
answer. A client drops mid-answer on one replica and resumes on the other; and the `ai`
package's own `reconnectToStream` resumes a chat.

Needs PostgreSQL (TEST_DATABASE_URL) and Redis (TEST_REDIS_URL); without them the tests skip,
except in CI.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

import httpx2
import pytest

from testing.app_server import RunningApp, run_app
from testing.fake_responses_api import (
    SAMPLE_ANSWER_MARKDOWN,
    RunningFake,
    Scenario,
    split_into_deltas,
)
from tests.databases import empty_database, empty_redis
from tests.e2e.conftest import UPSTREAM_KEY
from tests.js_clients import run_js
from tests.sse_client import parse_sse

pytestmark = pytest.mark.e2e

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
# Long enough that the client drops in the middle: about 3 s of paced deltas.
LONG_ANSWER = SAMPLE_ANSWER_MARKDOWN * 2
DELTAS = split_into_deltas(LONG_ANSWER)
PACING = 3.0 / len(DELTAS)


@pytest.fixture(scope="module")
def replicas(
    fake_upstream: RunningFake, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningApp, RunningApp]]:
    empty_redis(REDIS_URL, "TEST_REDIS_URL")
    database = asyncio.run(empty_database("postgresql", tmp_path_factory.mktemp("resume")))
    environment = {
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "OPENAI_BASE_URL": fake_upstream.base_url,
        "OPENAI_MODEL": "gpt-fake",
        "UPSTREAM_MAX_RETRIES": "0",
        "SEMANTIC_SEARCH": "false",
        "FALLBACK_TO_OFFLINE": "false",
        "KNOWLEDGE_WATCH": "false",
        "DATABASE_URL": database,
        "REDIS_URL": REDIS_URL,
        # RESUME_WINDOW_SECONDS: the default (15 s).
    }
    with run_app(environment) as one, run_app({**environment, "MIGRATE_ON_START": "false"}) as two:
        yield one, two


def read_until(response: httpx2.Response, text_events: int) -> tuple[list[str], str, str]:
    """Read ``response`` until ``text_events`` unnamed events arrived: their data, the id of
    the last event and the conversation id (from ``meta``)."""
    parser_chunks: list[bytes] = []
    for chunk in response.iter_bytes():
        parser_chunks.append(chunk)
        events = parse_sse(parser_chunks)
        texts = [e.data for e in events if e.type == "message"]
        if len(texts) >= text_events:
            meta = next(e for e in events if e.type == "meta")
            conversation_id = meta.data.split('"conversation_id":"')[1].split('"')[0]
            # Only whole events count: the last one parsed is the last one received.
            return texts, events[-1].last_event_id, conversation_id
    raise AssertionError("the answer ended before the client dropped")


def test_a_dropped_stream_resumes_on_another_replica(
    replicas: tuple[RunningApp, RunningApp], upstream: RunningFake
) -> None:
    one, two = replicas
    upstream.api.enqueue(Scenario(deltas=DELTAS, delay_between_deltas=PACING))
    with httpx2.stream(
        "POST",
        f"{one.base_url}/openai-response/sse",
        json={"input": "요약해 주세요"},
        timeout=15,
    ) as response:
        assert response.status_code == 200
        received, last_id, conversation_id = read_until(response, 20)
    # The connection is gone; the answer goes on on replica one, and replica two resumes it.
    assert last_id.count(".") == 1
    with httpx2.stream(
        "GET",
        f"{two.base_url}/conversations/{conversation_id}/stream",
        headers={"Last-Event-ID": last_id},
        timeout=15,
    ) as resumed:
        assert resumed.status_code == 200
        rest = parse_sse(resumed.iter_bytes())
    assert rest[-1].type == "done"
    assert rest[0].type == "message"  # the next delta, not the meta again
    text = "".join(received) + "".join(e.data for e in rest if e.type == "message")
    assert text == LONG_ANSWER
    stored = two.wait_for_messages(conversation_id, 2)
    assert (stored[1]["content"], stored[1]["status"]) == (text, "completed")
    # Nothing is left in flight once the answer is over... but it is kept a minute.
    again = httpx2.get(
        f"{one.base_url}/conversations/{conversation_id}/stream",
        headers={"Last-Event-ID": rest[-1].last_event_id},
        timeout=5,
    )
    assert (again.status_code, again.content) == (200, b"")


def test_an_answer_no_one_comes_back_for_is_interrupted_after_the_window(
    replicas: tuple[RunningApp, RunningApp], upstream: RunningFake
) -> None:
    one, _ = replicas
    upstream.api.enqueue(Scenario(deltas=["Only this"], terminal="stall"))
    with httpx2.stream(
        "POST", f"{one.base_url}/openai-response/sse", json={"input": "Hi"}, timeout=15
    ) as response:
        _, _, conversation_id = read_until(response, 1)
    # Still generating while the window is open (RESUME_WINDOW_SECONDS, 15 s by default)...
    assert upstream.api.closed_by_client == 0
    # ...then closed, and stored interrupted.
    assert upstream.api.wait_for(lambda: upstream.api.closed_by_client == 1, timeout_seconds=25)
    stored = one.wait_for_messages(conversation_id, 2)
    assert (stored[1]["content"], stored[1]["status"]) == ("Only this", "interrupted")


def test_stop_on_another_replica_ends_the_answer(
    replicas: tuple[RunningApp, RunningApp], upstream: RunningFake
) -> None:
    one, two = replicas
    upstream.api.enqueue(Scenario(deltas=["Stop me"], terminal="stall"))
    with httpx2.stream(
        "POST", f"{one.base_url}/openai-response/sse", json={"input": "Hi"}, timeout=15
    ) as response:
        _, _, conversation_id = read_until(response, 1)
    stop = httpx2.delete(f"{two.base_url}/conversations/{conversation_id}/stream", timeout=5)
    assert stop.status_code == 204
    assert upstream.api.wait_for(lambda: upstream.api.closed_by_client == 1, timeout_seconds=5)
    stored = one.wait_for_messages(conversation_id, 2)
    assert stored[1]["status"] == "interrupted"


def test_the_ai_sdk_resumes_a_chat_with_reconnect_to_stream(
    replicas: tuple[RunningApp, RunningApp], upstream: RunningFake
) -> None:
    one, two = replicas
    upstream.api.enqueue(Scenario(deltas=DELTAS, delay_between_deltas=PACING))
    chat_id = secrets.token_urlsafe(16)
    result = run_js("ai_sdk_resume.mjs", one.base_url, two.base_url, chat_id, "요약해 주세요")
    assert result["dropped"] is True
    assert result["statusAfterDrop"] == "error"
    assert result["resumeUrl"] == f"/api/chat/{chat_id}/stream"
    assert result["resumeStatus"] == 200
    assert result["messages"] == 2  # the question and one answer
    assert result["errors"] == []
    assert result["status"] == "ready"
    message = result["message"]
    assert message["text"] == LONG_ANSWER  # replayed from the start: no duplicated text
    conversation_id = message["metadata"]["conversation_id"]
    stored = two.wait_for_messages(conversation_id, 2)
    assert stored[1]["content"] == LONG_ANSWER
    # A chat with no answer in flight: 204, and the package leaves the chat ready, unchanged.
    assert result["idle"] == {"status": "ready", "messages": 0, "resumeStatus": 204}


def test_shutdown_ends_an_answer_no_one_reads_and_stores_it(
    upstream: RunningFake, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("resume-shutdown")
    environment = {
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "OPENAI_BASE_URL": upstream.base_url,
        "UPSTREAM_MAX_RETRIES": "0",
        "SEMANTIC_SEARCH": "false",
        "FALLBACK_TO_OFFLINE": "false",
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'conversations.db'}",
        "SHUTDOWN_GRACE_SECONDS": "1",
    }
    upstream.api.enqueue(Scenario(deltas=["Nobody reads this"], terminal="stall"))
    with run_app(environment) as app:
        with httpx2.stream(
            "POST", f"{app.base_url}/openai-response/sse", json={"input": "Hi"}, timeout=15
        ) as response:
            _, _, conversation_id = read_until(response, 1)
        # The client left; its answer waits for it (the window) when the server is stopped.
        app.process.terminate()
        app.process.wait(timeout=15)
        log = app.log()
        assert "Traceback" not in log
        assert '"level": "ERROR"' not in log, log
    assert upstream.api.wait_for(lambda: upstream.api.open_streams == 0)
    with run_app({**environment, "ENGINE": "offline"}) as restarted:
        stored = restarted.stored_messages(conversation_id)
    assert stored[1]["content"] == "Nobody reads this"
    # Ended by the grace period (failed, server_shutting_down) or cancelled at the end.
    assert stored[1]["status"] in ("failed", "interrupted")
