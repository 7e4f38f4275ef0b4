"""Answers come with the passages they draw on, numbered as the answer cites them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from application.ask import AskApplicant
from application.search import SearchProfile
from bootstrap import create_app
from domain.models import Message, RetrievedPassage
from domain.ports import SemanticSearch
from infrastructure.knowledge import Bm25KnowledgeIndex
from infrastructure.offline_engine import OfflineEngine
from settings import SAMPLE_PROFILE_DIR, Settings
from tests.fakes import InMemoryConversations, ScriptedEngine, small_profile
from tests.sse_client import Answer, parse_sse


def ask_with(engine: ScriptedEngine, semantic: SemanticSearch | None = None) -> AskApplicant:
    profile = small_profile()
    return AskApplicant(
        profile,
        engine,
        InMemoryConversations(),
        default_model="m",
        allowed_models=frozenset(),
        max_input_chars=500,
        search=SearchProfile(profile, semantic=semantic),
    )


async def test_sources_are_the_relevant_passages_in_the_question_language() -> None:
    engine = ScriptedEngine()
    ask = ask_with(engine)
    stream = await ask.start([Message("user", "쿠버네티스 경험이 있나요?")])
    await stream.events.aclose()
    assert stream.sources
    assert all(source.source == "ko/profile.md" for source in stream.sources)


async def test_nothing_relevant_means_no_sources_and_no_grounding() -> None:
    engine = ScriptedEngine()
    ask = ask_with(engine)
    answer = await ask.answer([Message("user", "What is her favourite colour?")])
    assert answer.sources == ()
    assert engine.requests[0].grounding == ()


@pytest.fixture
def client() -> Iterator[TestClient]:
    knowledge = Bm25KnowledgeIndex.from_folder(SAMPLE_PROFILE_DIR)
    app = create_app(
        Settings(_env_file=None),  # type: ignore[call-arg]
        knowledge=knowledge,
        engine=OfflineEngine(knowledge),
        conversations=InMemoryConversations(),
    )
    with TestClient(app) as test_client:
        yield test_client


def test_sources_event_comes_before_the_answer_and_matches_its_citations(
    client: TestClient,
) -> None:
    with client.stream("POST", "/openai-response/sse", json={"input": "When can she start?"}) as r:
        answer = Answer(parse_sse(r.iter_text()))
    assert answer.names[:3] == ["meta", "sources", "message"]
    sources = answer.data_of("sources")
    assert sources
    assert [s["id"] for s in sources] == list(range(1, len(sources) + 1))
    assert set(sources[0]) >= {"id", "source", "heading", "snippet"}
    assert len(sources[0]["snippet"]) <= 240
    for source in sources:
        assert f"— [{source['id']}] {source['source']}" in answer.text


def test_uncovered_question_has_an_empty_sources_event(client: TestClient) -> None:
    with client.stream("POST", "/openai-response/sse", json={"input": "Favourite food?"}) as r:
        answer = Answer(parse_sse(r.iter_text()))
    assert answer.data_of("sources") == []
    assert "does not cover" in answer.text


def test_json_answer_lists_its_sources(client: TestClient) -> None:
    body = client.post("/openai-response", json={"input": "영어를 할 수 있나요?"}).json()
    assert body["sources"]
    assert any("\uac00" <= char <= "\ud7a3" for char in body["sources"][0]["snippet"])
    assert "[1]" in body["output_text"]


def test_the_sample_profile_declines_salary_questions(client: TestClient) -> None:
    body = client.post("/openai-response", json={"input": "연봉은 얼마를 원하나요?"}).json()
    assert "직접 협의" in body["output_text"]
    assert body["sources"] == []


class MeaningOnlySearch:
    """A semantic search that knows one paraphrase the lexical search cannot see."""

    def __init__(self, passage_text: str) -> None:
        self.passage_text = passage_text
        self.queries: list[str] = []

    async def similar(self, query: str, limit: int) -> list[RetrievedPassage]:
        self.queries.append(query)
        passage = next(p for p in small_profile().passages if self.passage_text in p.text)
        return [RetrievedPassage(passage, 0.8)]


async def test_a_paraphrase_found_by_meaning_becomes_a_source() -> None:
    semantic = MeaningOnlySearch("led the search team")
    engine = ScriptedEngine()
    ask = ask_with(engine, semantic=semantic)
    # The glossary lets lexical search match "manage" to "led": this paraphrase it cannot see.
    answer = await ask.answer([Message("user", "Who reported to her?")])
    assert semantic.queries == ["Who reported to her?"]
    assert [s.text.split("\n")[0] for s in answer.sources] == [
        "Jane Doe led the search team at Example Corp from 2020 to 2024."
    ]
    assert engine.requests[0].grounding[0].score == 0.8
