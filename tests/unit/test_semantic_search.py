"""Embeddings-based search against respx-mocked OpenAI embeddings, and hybrid fusion."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import numpy as np
import pytest
import respx
from openai import AsyncOpenAI

from domain.models import Passage, RetrievedPassage
from domain.policy import fuse
from infrastructure.knowledge import Bm25KnowledgeIndex
from infrastructure.semantic import EmbeddingCache, EmbeddingSearch
from testing.fake_responses_api import base64_embedding
from tests.tasks import only_this_tests_tasks

BASE_URL = "https://upstream.test/v1"

# A toy embedding model: one dimension per concept, whatever the language.
CONCEPTS = {
    "start": ("start", "join", "입사", "출근"),
    "salary": ("salary", "연봉"),
    "kubernetes": ("kubernetes", "쿠버네티스", "eks"),
    "english": ("english", "영어", "toeic"),
}


def toy_vector(text: str) -> list[float]:
    lowered = text.lower()
    vector = [float(any(word in lowered for word in words)) for words in CONCEPTS.values()]
    return [*vector, 0.1]  # never all zeros


PASSAGES = [
    Passage("en/logistics.md", ("Availability",), "Minji can start on January 4, 2027."),
    Passage("en/resume.md", ("Skills",), "Kubernetes on Amazon EKS, Terraform."),
    Passage("en/resume.md", ("Languages",), "English: TOEIC 925."),
]


# OpenAI answers base64 when asked; a compatible server may send floats all the same.
@pytest.fixture(params=["base64", "floats regardless"])
def embeddings(request: pytest.FixtureRequest) -> Iterator[respx.Route]:
    def reply(sent: httpx2.Request) -> httpx2.Response:
        body = json.loads(sent.content)
        assert body["encoding_format"] == "base64"
        encode = base64_embedding if request.param == "base64" else list
        data = [
            {"object": "embedding", "index": i, "embedding": encode(toy_vector(text))}
            for i, text in enumerate(body["input"])
        ]
        usage = {"prompt_tokens": 1, "total_tokens": 1}
        return httpx2.Response(
            200, json={"object": "list", "data": data, "model": "toy", "usage": usage}
        )

    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        yield router.post("/embeddings").mock(side_effect=reply)


def search(tmp_path: Path) -> EmbeddingSearch:
    client = AsyncOpenAI(api_key="sk-test", base_url=BASE_URL, max_retries=0)
    return EmbeddingSearch(
        client,
        Bm25KnowledgeIndex(PASSAGES),
        EmbeddingCache(tmp_path / "embeddings.sqlite3"),
        model="toy",
        min_similarity=0.5,
    )


async def test_a_korean_question_finds_the_english_passage(
    embeddings: respx.Route, tmp_path: Path
) -> None:
    hits = await search(tmp_path).similar("언제 입사할 수 있나요?", limit=2)
    assert hits[0].passage.heading_path == ("Availability",)
    assert hits[0].score == 1.0
    assert hits[1].score < 0.5


async def test_documents_are_embedded_once_and_cached_across_restarts(
    embeddings: respx.Route, tmp_path: Path
) -> None:
    first = search(tmp_path)
    await first.similar("영어 실력은?", limit=1)
    await first.similar("쿠버네티스 경험은?", limit=1)
    # One call for the documents, one per question.
    assert embeddings.call_count == 3
    restarted = search(tmp_path)
    await restarted.similar("연봉은?", limit=1)
    assert embeddings.call_count == 4, "a restart embeds the question only"
    assert len(json.loads(embeddings.calls.last.request.content)["input"]) == 1


async def test_an_unavailable_embeddings_service_means_lexical_search_alone(
    tmp_path: Path,
) -> None:
    with respx.mock(base_url=BASE_URL) as router:
        router.post("/embeddings").mock(return_value=httpx2.Response(500, json={"error": {}}))
        assert await search(tmp_path).similar("영어 실력은?", limit=2) == []


@pytest.mark.parametrize("embedding", ["not base64!", base64.b64encode(b"odd").decode(), ""])
async def test_a_vector_that_cannot_be_read_means_lexical_search_alone(
    tmp_path: Path, embedding: str
) -> None:
    data = [{"object": "embedding", "index": 0, "embedding": embedding}]
    body = {"object": "list", "data": data, "model": "toy", "usage": {}}
    with respx.mock(base_url=BASE_URL) as router:
        router.post("/embeddings").mock(return_value=httpx2.Response(200, json=body))
        assert await search(tmp_path).similar("영어 실력은?", limit=2) == []


async def test_vectors_are_matched_to_texts_by_their_index(tmp_path: Path) -> None:
    """A server may list a batch's vectors in any order: each ``index`` names its text."""

    def reply(sent: httpx2.Request) -> httpx2.Response:
        texts = json.loads(sent.content)["input"]
        data = [
            {"object": "embedding", "index": i, "embedding": base64_embedding(toy_vector(t))}
            for i, t in enumerate(texts)
        ]
        return httpx2.Response(200, json={"object": "list", "data": data[::-1], "model": "toy"})

    with respx.mock(base_url=BASE_URL) as router:
        router.post("/embeddings").mock(side_effect=reply)
        hits = await search(tmp_path).similar("언제 입사할 수 있나요?", limit=1)
    assert hits[0].passage.heading_path == ("Availability",)


ONE = "AACAPw=="  # base64 of the float32 1.0


@pytest.mark.parametrize(
    "data_for",
    [
        lambda n: None,
        lambda n: [{"index": i, "embedding": ONE} for i in range(n - 1)],
        lambda n: [{"index": 0, "embedding": ONE} for _ in range(n)],
        lambda n: [{"index": str(i), "embedding": ONE} for i in range(n)],
        lambda n: [{"index": i} for i in range(n)],
    ],
    ids=["no data", "a vector short", "one index twice", "an index not a number", "no vector"],
)
async def test_a_response_that_is_not_one_vector_per_text_means_lexical_search_alone(
    tmp_path: Path, data_for: Callable[[int], object]
) -> None:
    def reply(sent: httpx2.Request) -> httpx2.Response:
        data = data_for(len(json.loads(sent.content)["input"]))
        return httpx2.Response(200, json={"object": "list", "data": data})

    searching = search(tmp_path)
    with respx.mock(base_url=BASE_URL) as router:
        router.post("/embeddings").mock(side_effect=reply)
        assert await searching.similar("영어 실력은?", limit=2) == []


def hit(name: str, score: float) -> RetrievedPassage:
    return RetrievedPassage(Passage(f"{name}.md", (), name), score)


def test_fusion_keeps_what_either_search_found_with_its_best_score() -> None:
    lexical = [hit("a", 0.9), hit("b", 0.3)]
    semantic = [hit("c", 0.8), hit("b", 0.7)]
    fused = fuse(lexical, semantic, limit=3)
    assert [h.passage.text for h in fused] == ["b", "a", "c"]
    assert [h.score for h in fused] == [0.7, 0.9, 0.8]


def test_fusion_with_one_list_keeps_its_order() -> None:
    lexical = [hit("a", 0.9), hit("b", 0.3)]
    assert fuse(lexical, [], limit=5) == lexical


def toy_reply(request: httpx2.Request) -> httpx2.Response:
    data = [
        {"object": "embedding", "index": i, "embedding": base64_embedding(toy_vector(text))}
        for i, text in enumerate(json.loads(request.content)["input"])
    ]
    return httpx2.Response(200, json={"object": "list", "data": data, "model": "toy", "usage": {}})


@dataclass
class HeldEmbeddings:
    """Embeddings that answer a question only once ``release`` is set; documents at once."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    asked: asyncio.Event = field(default_factory=asyncio.Event)
    questions: list[str] = field(default_factory=list)

    async def reply(self, request: httpx2.Request) -> httpx2.Response:
        inputs = json.loads(request.content)["input"]
        if len(inputs) == 1:
            self.questions.append(inputs[0])
            self.asked.set()
            await self.release.wait()
        return toy_reply(request)


@pytest.fixture
def held_embeddings() -> Iterator[HeldEmbeddings]:
    held = HeldEmbeddings()
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        router.post("/embeddings").mock(side_effect=held.reply)
        yield held


Asking = asyncio.Task[list[RetrievedPassage]]


async def asked_twice(
    tmp_path: Path, held: HeldEmbeddings
) -> tuple[EmbeddingSearch, Asking, Asking]:
    """A search with its documents embedded, a question to it whose call is held, and the
    same question asked again while the call is out."""
    searcher = search(tmp_path)
    await searcher.refresh()
    asker = asyncio.create_task(searcher.similar("영어 실력은?", limit=1))
    await held.asked.wait()
    waiter = asyncio.create_task(searcher.similar("영어 실력은?", limit=1))
    await asyncio.sleep(0.01)
    return searcher, asker, waiter


async def test_the_same_question_asked_twice_at_once_is_embedded_once(
    held_embeddings: HeldEmbeddings, tmp_path: Path
) -> None:
    _, first, second = await asked_twice(tmp_path, held_embeddings)
    held_embeddings.release.set()

    hits = await asyncio.gather(first, second)

    assert held_embeddings.questions == ["영어 실력은?"]
    assert hits[0] == hits[1]
    assert hits[0][0].passage.heading_path == ("Languages",)


async def test_when_the_asker_gives_up_the_one_waiting_for_its_call_searches_lexically(
    held_embeddings: HeldEmbeddings, tmp_path: Path
) -> None:
    searcher, asker, waiter = await asked_twice(tmp_path, held_embeddings)

    asker.cancel()

    assert await waiter == []  # not cancelled with it: semantic search was unavailable
    assert asker.cancelled()
    held_embeddings.release.set()
    assert (await searcher.similar("영어 실력은?", limit=1))[0].score == 1.0  # asked again
    assert held_embeddings.questions == ["영어 실력은?", "영어 실력은?"]


class SlowCache(EmbeddingCache):
    """A disk cache whose read takes a while, so the question's call is back first."""

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        time.sleep(0.05)
        return super().get_many(keys)


async def test_a_failed_question_leaves_no_document_embedding_running(tmp_path: Path) -> None:
    """The question's vector fails while the documents are still being looked up: the search
    answers lexically at once and stops the document refresh, rather than leave it to call
    the embeddings endpoint later, unawaited and past its timeout."""
    data = [{"object": "embedding", "index": 0, "embedding": "not base64!"}]
    with respx.mock(base_url=BASE_URL) as router:
        route = router.post("/embeddings").mock(
            return_value=httpx2.Response(200, json={"object": "list", "data": data, "model": "toy"})
        )
        searcher = EmbeddingSearch(
            AsyncOpenAI(api_key="sk-test", base_url=BASE_URL, max_retries=0),
            Bm25KnowledgeIndex(PASSAGES),
            SlowCache(tmp_path / "embeddings.sqlite3"),
            model="toy",
            min_similarity=0.5,
        )
        async with only_this_tests_tasks():
            assert await searcher.similar("영어 실력은?", limit=2) == []
            await asyncio.sleep(0.1)  # past the slow read: a refresh still running would call
            assert route.call_count == 1, "only the question was sent"
            assert asyncio.all_tasks() == {asyncio.current_task()}
