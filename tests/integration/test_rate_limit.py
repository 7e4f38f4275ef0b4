"""RATE_LIMIT_PER_MINUTE on the chat routes, with counters in memory and in Redis.

Redis comes from TEST_REDIS_URL (default: the local server, database 15, flushed before each
test). Elsewhere its tests skip with the reason printed; in CI (CI=true) they must run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bootstrap import create_app
from infrastructure.rate_limit import KEY_PREFIX, build_rate_limiter
from settings import Settings
from tests.fakes import InMemoryConversations, ScriptedEngine, small_profile

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"
SSE = "/openai-response/sse"
JSON = "/openai-response"
LIMIT = 3
PROXY = ("10.0.0.1", 1234)
QUESTION = {"input": "Where did Jane work?"}


def _redis_problem() -> str | None:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
        return None
    except Exception as error:
        return f"{type(error).__name__}: {error}"


def fresh_redis() -> None:
    """Skip (in CI: fail) unless Redis answers; then empty its test database."""
    problem = _redis_problem()
    if problem is not None:
        message = f"Redis at TEST_REDIS_URL is not reachable ({problem})"
        if IN_CI:
            pytest.fail(f"{message}; CI must run the Redis tests")
        pytest.skip(message)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings for the counters' storage: this process, or a flushed Redis database."""
    if request.param == "memory":
        return {}
    fresh_redis()
    return {"redis_url": REDIS_URL}


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


def build_app(engine: ScriptedEngine, **overrides: Any) -> FastAPI:
    values: dict[str, Any] = {"rate_limit_per_minute": LIMIT}
    values.update(overrides)
    return create_app(
        Settings(_env_file=None, **values),  # type: ignore[call-arg]
        knowledge=small_profile(),
        engine=engine,
        conversations=InMemoryConversations(),
    )


@pytest.fixture
def client(engine: ScriptedEngine, storage: dict[str, Any]) -> Iterator[TestClient]:
    with TestClient(build_app(engine, **storage)) as test_client:
        yield test_client


def assert_rate_limited(response: Any, limit: int = LIMIT) -> None:
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "rate_limited"
    assert set(body) == {"code", "message"}
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert body["message"] == (
        f"Too many questions from your address: the limit is {limit} per minute. "
        f"Try again in {retry_after} seconds."
    )
    assert response.headers["x-ratelimit-limit"] == str(limit)


def test_fourth_question_in_a_minute_is_refused(client: TestClient, engine: ScriptedEngine) -> None:
    for _ in range(LIMIT):
        assert client.post(JSON, json=QUESTION).status_code == 200
    assert_rate_limited(client.post(JSON, json=QUESTION))
    assert len(engine.requests) == LIMIT


def test_both_chat_routes_share_one_budget(client: TestClient, engine: ScriptedEngine) -> None:
    assert client.post(JSON, json=QUESTION).status_code == 200
    with client.stream("POST", SSE, json=QUESTION) as stream:
        assert stream.status_code == 200
        stream.read()
    assert client.post(JSON, json=QUESTION).status_code == 200
    refused = client.post(SSE, json=QUESTION)
    assert_rate_limited(refused)
    assert refused.headers["content-type"] == "application/json"
    assert len(engine.requests) == LIMIT


def test_the_ai_sdk_route_shares_the_budget(client: TestClient, engine: ScriptedEngine) -> None:
    chat = {
        "id": "chat-id-0123456789",
        "messages": [{"id": "q", "role": "user", "parts": [{"type": "text", "text": "Where?"}]}],
    }
    for _ in range(LIMIT - 1):
        assert client.post(JSON, json=QUESTION).status_code == 200
    with client.stream("POST", "/api/chat", json=chat) as stream:
        assert stream.status_code == 200
        stream.read()
    assert_rate_limited(client.post("/api/chat", json=chat))
    assert len(engine.requests) == LIMIT


def test_other_routes_are_not_limited(client: TestClient) -> None:
    for _ in range(LIMIT):
        client.post(JSON, json=QUESTION)
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200


@pytest.mark.parametrize(
    "invalid",
    [
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        {"json": {"input": ""}},
        {"json": {"input": "hi", "temperature": 2}},
        {"content": b"", "headers": {"content-type": "application/json"}},
    ],
)
def test_invalid_bodies_are_counted_and_limited(
    client: TestClient, engine: ScriptedEngine, invalid: dict[str, Any]
) -> None:
    for _ in range(LIMIT):
        assert client.post(JSON, **invalid).status_code == 422
    assert_rate_limited(client.post(JSON, **invalid))
    assert_rate_limited(client.post(SSE, json=QUESTION))
    assert engine.requests == []


def test_clients_behind_a_trusted_proxy_are_counted_apart(
    engine: ScriptedEngine, storage: dict[str, Any]
) -> None:
    app = build_app(
        engine, trusted_proxies="10.0.0.0/8", trusted_proxy_kind="cloudfront", **storage
    )
    with TestClient(app, client=PROXY) as client:

        def ask(viewer: str) -> int:
            headers = {"X-Forwarded-For": f"{viewer}, 10.0.0.2"}
            return client.post(JSON, json=QUESTION, headers=headers).status_code

        assert [ask("198.51.100.1") for _ in range(LIMIT)] == [200] * LIMIT
        assert ask("198.51.100.1") == 429
        assert ask("198.51.100.2") == 200
        # CloudFront's header names the viewer too, and wins over X-Forwarded-For.
        viewer = {"CloudFront-Viewer-Address": "198.51.100.1:50123"}
        assert client.post(JSON, json=QUESTION, headers=viewer).status_code == 429
        viewer = {"CloudFront-Viewer-Address": "2001:db8::7:50123"}
        assert client.post(JSON, json=QUESTION, headers=viewer).status_code == 200


def test_a_rotated_viewer_header_cannot_dodge_the_limit_behind_another_proxy(
    engine: ScriptedEngine, storage: dict[str, Any]
) -> None:
    # A proxy that is not CloudFront passes the client's CloudFront-Viewer-Address through.
    app = build_app(engine, trusted_proxies="10.0.0.0/8", **storage)
    with TestClient(app, client=PROXY) as client:
        statuses = [
            client.post(
                JSON,
                json=QUESTION,
                headers={
                    "X-Forwarded-For": "198.51.100.1, 10.0.0.2",
                    "CloudFront-Viewer-Address": f"203.0.113.{n}:443",
                },
            ).status_code
            for n in range(LIMIT + 1)
        ]
    assert statuses == [200] * LIMIT + [429]


def test_an_untrusted_client_cannot_dodge_the_limit_with_headers(
    engine: ScriptedEngine, storage: dict[str, Any]
) -> None:
    app = build_app(engine, trusted_proxies="10.0.0.0/8", **storage)
    with TestClient(app, client=("203.0.113.5", 1234)) as client:
        statuses = [
            client.post(
                JSON,
                json=QUESTION,
                headers={
                    "X-Forwarded-For": f"198.51.100.{n}",
                    "CloudFront-Viewer-Address": f"198.51.100.{n}:443",
                },
            ).status_code
            for n in range(LIMIT + 1)
        ]
    assert statuses == [200] * LIMIT + [429]


def test_zero_turns_the_limit_off(engine: ScriptedEngine, storage: dict[str, Any]) -> None:
    app = build_app(engine, **{**storage, "rate_limit_per_minute": 0})
    with TestClient(app) as client:
        assert client.app_state["container"].rate_limiter is None
        statuses = {client.post(JSON, json=QUESTION).status_code for _ in range(LIMIT * 4)}
    assert statuses == {200}


def test_replicas_sharing_redis_share_the_counters(engine: ScriptedEngine) -> None:
    fresh_redis()
    first, second = build_app(engine, redis_url=REDIS_URL), build_app(engine, redis_url=REDIS_URL)
    with TestClient(first) as one, TestClient(second) as two:
        assert one.post(JSON, json=QUESTION).status_code == 200
        assert two.post(JSON, json=QUESTION).status_code == 200
        assert one.post(JSON, json=QUESTION).status_code == 200
        assert_rate_limited(two.post(JSON, json=QUESTION))
        assert_rate_limited(one.post(JSON, json=QUESTION))
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = client.keys(f"{KEY_PREFIX}:*")
    finally:
        client.close()
    assert len(keys) == 1
    assert b"testclient" in keys[0]


def test_replicas_counting_in_memory_do_not_share(engine: ScriptedEngine) -> None:
    with TestClient(build_app(engine)) as one, TestClient(build_app(engine)) as two:
        for _ in range(LIMIT):
            assert one.post(JSON, json=QUESTION).status_code == 200
        assert one.post(JSON, json=QUESTION).status_code == 429
        assert two.post(JSON, json=QUESTION).status_code == 200


def test_unreachable_redis_lets_questions_through_and_says_why(
    engine: ScriptedEngine, caplog: pytest.LogCaptureFixture
) -> None:
    secret_url = "redis://:hunter2-secret@127.0.0.1:1/0"
    app = build_app(engine, redis_url=secret_url)
    with caplog.at_level(logging.WARNING), TestClient(app) as client:
        statuses = [client.post(JSON, json=QUESTION).status_code for _ in range(LIMIT + 2)]
    assert statuses == [200] * (LIMIT + 2)
    warnings = [r.getMessage() for r in caplog.records if r.name == "infrastructure.rate_limit"]
    # One warning for the outage, not one per question; the type only, never the URL.
    assert len(warnings) == 1
    assert "ConnectionError" in warnings[0]
    assert "hunter2" not in caplog.text


async def test_limiter_counts_each_client_and_says_when_to_retry(storage: dict[str, Any]) -> None:
    limiter = build_rate_limiter(
        Settings(_env_file=None, rate_limit_per_minute=2, **storage)  # type: ignore[call-arg]
    )
    assert limiter is not None
    try:
        first, second, third = [await limiter.hit("203.0.113.5") for _ in range(3)]
        assert first.allowed
        assert second.allowed
        assert not third.allowed
        assert third.limit == 2
        # The oldest request leaves the window a minute after it came.
        assert 58 <= third.retry_after_seconds <= 60
        assert (await limiter.hit("203.0.113.6")).allowed
    finally:
        await limiter.close()
