"""What stands between a question and its first delta (issue 18), against the fake Responses API.

The app runs in process with the real Responses engine and semantic search, both talking over
HTTP to the fake, whose request log tells what reached "OpenAI": the model request overlaps
the question's write and is cancelled when the write fails; a question's vector is asked for
once (in memory, and in Redis across replicas); a question lexical search answers confidently
is not embedded at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bootstrap import create_app
from domain.errors import StorageUnavailable
from settings import Settings
from testing.fake_responses_api import RunningFake, Scenario, run_fake_responses_api
from tests.fakes import InMemoryConversations, small_profile
from tests.sse_client import Answer, parse_sse

NEW_QUESTION = "Who reported to her?"  # no lexical match: semantic search is asked
CONFIDENT_QUESTION = "Kubernetes platform"  # every term in one passage: it is not


@pytest.fixture
def fake() -> Iterator[RunningFake]:
    with run_fake_responses_api() as running:
        yield running


def settings_for(fake: RunningFake, folder: Path, **extra: Any) -> Settings:
    options: dict[str, Any] = {
        "engine": "responses",
        "openai_api_key": "sk-test",
        "openai_base_url": fake.base_url,
        "upstream_max_retries": 0,
        "fallback_to_offline": False,
        "semantic_search": True,
        "embeddings_cache": folder / "embeddings.sqlite3",
        "rate_limit_per_minute": 0,
        "database_url": f"sqlite+aiosqlite:///{folder / 'conversations.db'}",
    }
    return Settings(_env_file=None, **(options | extra))  # type: ignore[call-arg]


def question_embeddings(fake: RunningFake, question: str) -> int:
    """How many embeddings requests asked for ``question``'s vector."""
    return sum(
        1
        for request in fake.api.requests
        if request["path"].endswith("/embeddings") and request["body"]["input"] == [question]
    )


def model_requests(fake: RunningFake) -> int:
    return sum(1 for request in fake.api.requests if request["path"].endswith("/responses"))


def ask(client: TestClient, question: str) -> Answer:
    with client.stream("POST", "/openai-response/sse", json={"input": question}) as response:
        assert response.status_code == 200, response.read()
        return Answer(parse_sse(response.iter_text()))


class StoreFailingOnceTheModelIsAsked(InMemoryConversations):
    """A database that fails the question's write, after the model request has gone out."""

    def __init__(self, fake: RunningFake) -> None:
        super().__init__()
        self._fake = fake

    async def begin_turn(self, *args: Any, **kwargs: Any) -> int:
        assert await self._fake.api.wait_for_async(lambda: model_requests(self._fake) == 1)
        raise StorageUnavailable()


def test_a_failed_store_answers_503_before_any_byte_and_closes_the_started_model_request(
    fake: RunningFake, tmp_path: Path
) -> None:
    fake.api.default_scenario = Scenario(delay_before_first_delta=30)
    app = create_app(
        settings_for(fake, tmp_path, semantic_search=False),
        knowledge=small_profile(),
        conversations=StoreFailingOnceTheModelIsAsked(fake),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/openai-response/sse", json={"input": "Where did Jane work?"})

    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["code"] == "storage_unavailable"
    assert b"event:" not in response.content
    assert fake.api.wait_for(lambda: fake.api.closed_by_client == 1), (
        "the model request that started with the write must be closed"
    )


def test_a_repeated_question_is_embedded_once(fake: RunningFake, tmp_path: Path) -> None:
    app = create_app(settings_for(fake, tmp_path), knowledge=small_profile())
    with TestClient(app) as client:
        first = ask(client, NEW_QUESTION)
        second = ask(client, NEW_QUESTION)

    assert first.data_of("sources") == second.data_of("sources")
    assert question_embeddings(fake, NEW_QUESTION) == 1
    assert model_requests(fake) == 2


def test_a_question_lexical_search_answers_confidently_is_not_embedded(
    fake: RunningFake, tmp_path: Path
) -> None:
    app = create_app(settings_for(fake, tmp_path), knowledge=small_profile())
    with TestClient(app) as client:
        answer = ask(client, CONFIDENT_QUESTION)

    assert "Kubernetes platform" in answer.data_of("sources")[0]["snippet"]
    assert question_embeddings(fake, CONFIDENT_QUESTION) == 0


def test_replicas_share_question_vectors_through_redis(
    fake: RunningFake, tmp_path: Path, redis_url: str
) -> None:
    for replica in ("one", "two"):
        folder = tmp_path / replica
        folder.mkdir()
        app = create_app(settings_for(fake, folder, redis_url=redis_url), knowledge=small_profile())
        with TestClient(app) as client:
            ask(client, NEW_QUESTION)

    assert question_embeddings(fake, NEW_QUESTION) == 1, "the second replica found it in Redis"
