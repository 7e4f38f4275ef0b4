"""One search of the profile: what it finds and declines, and that the chat, the MCP tool and
the agents' tool all go through it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agents.testing import ModelStep, ScriptedModel, function_call
from mcp.server.mcpserver.exceptions import ToolError

from api.container import Container
from api.mcp_server import ProfileServer
from application.ask import AskApplicant
from application.search import CONFIDENT_COVERAGE, SearchProfile, lexically_confident
from bootstrap import bootstrap
from domain.disclosure import DisclosurePolicy, UndisclosedTopic
from domain.models import AnswerRequest, Message, Passage, RetrievedPassage
from domain.policy import MIN_COVERAGE, passage_language
from infrastructure.agents_engine import AgentsEngine
from infrastructure.disclosure_file import load_disclosure_policy
from infrastructure.knowledge import Bm25KnowledgeIndex, load_passages, split_markdown
from settings import Settings
from tests.agents_fakes import ScriptedProvider, streamed_text
from tests.fakes import PROFILE_EN, InMemoryConversations, ScriptedEngine, small_profile

SAMPLE_PROFILE_DIR = Path(__file__).resolve().parents[2] / "sample_profile"

LEDGER_UNDISCLOSED = "Jane prefers to discuss the ledger directly."
LEDGER_POLICY = f"""\
undisclosed:
  - topic: the ledger
    keywords: [ledger]
    answer:
      en: {LEDGER_UNDISCLOSED}
"""


def ledger_policy() -> DisclosurePolicy:
    return DisclosurePolicy(
        (UndisclosedTopic("the ledger", ("ledger",), {"en": LEDGER_UNDISCLOSED}),)
    )


def texts(passages: tuple[RetrievedPassage, ...]) -> list[str]:
    return [hit.passage.text.split("\n")[0] for hit in passages]


class SemanticFake:
    """A semantic search that finds one passage by meaning and records what it was asked."""

    def __init__(self, passage_text: str, score: float = 0.8) -> None:
        self.passage_text = passage_text
        self.score = score
        self.asked: list[tuple[str, int]] = []

    async def similar(self, query: str, limit: int) -> list[RetrievedPassage]:
        self.asked.append((query, limit))
        passage = next(p for p in small_profile().passages if self.passage_text in p.text)
        return [RetrievedPassage(passage, self.score)]


# --- the search itself -------------------------------------------------------------------------


async def test_the_passages_that_cover_the_query_come_in_its_language() -> None:
    search = SearchProfile(small_profile())

    korean = await search.search("쿠버네티스 경험")
    english = await search.search("Kubernetes platform")

    assert [hit.passage.source for hit in korean.passages] == ["ko/profile.md"]
    assert [hit.passage.source for hit in english.passages] == ["en/profile.md"]
    assert korean.decline is None
    assert english.decline is None


async def test_the_language_given_overrides_the_query_s() -> None:
    found = await SearchProfile(small_profile()).search("Kubernetes platform", language="ko")

    assert [hit.passage.source for hit in found.passages] == ["ko/profile.md"]


async def test_what_the_profile_does_not_cover_finds_nothing() -> None:
    found = await SearchProfile(small_profile()).search("What is her favourite colour?")

    assert found.passages == ()
    assert found.decline is None


async def test_a_passage_that_only_shares_a_word_is_not_found() -> None:
    # "Jane" is in every passage; the contact block covers nothing else of the query.
    found = await SearchProfile(small_profile()).search("Jane payments ledger", limit=4)

    assert texts(found.passages) == ["- Payments ledger in Go, 3,000 transactions per second."]


async def test_limit_caps_the_passages() -> None:
    found = await SearchProfile(small_profile()).search("Kubernetes platform", limit=1)

    assert len(found.passages) == 1


async def test_a_protected_question_is_declined_without_passages() -> None:
    found = await SearchProfile(small_profile()).search("Is Jane married?")

    assert found.passages == ()
    assert found.decline is not None
    assert found.decline.reason == "protected: marital_status"


async def test_an_undisclosed_topic_is_declined_in_the_applicant_s_words() -> None:
    found = await SearchProfile(small_profile(), disclosure=ledger_policy()).search(
        "payments ledger"
    )

    assert found.passages == ()
    assert found.decline is not None
    assert found.decline.text.startswith(LEDGER_UNDISCLOSED)
    assert "jane@example.com" in found.decline.text  # with the contact details


async def test_a_weak_follow_up_is_searched_with_the_earlier_question() -> None:
    search = SearchProfile(small_profile())

    alone = await search.search("And when?")
    follow_up = await search.search("And when?", earlier=["Where did Jane lead the search team?"])

    assert alone.passages == ()
    assert texts(follow_up.passages) == [
        "Jane Doe led the search team at Example Corp from 2020 to 2024."
    ]


async def test_a_follow_up_that_matches_by_itself_keeps_its_own_passages() -> None:
    found = await SearchProfile(small_profile()).search(
        "Which projects did Jane build in Go?", earlier=["Where did Jane lead the search team?"]
    )

    assert texts(found.passages) == ["- Payments ledger in Go, 3,000 transactions per second."]


async def test_a_paraphrase_found_by_meaning_is_fused_with_the_lexical_passages() -> None:
    semantic = SemanticFake("led the search team")
    search = SearchProfile(small_profile(), semantic=semantic)

    found = await search.search("Who reported to her?")

    assert semantic.asked == [("Who reported to her?", 4)]
    assert texts(found.passages) == [
        "Jane Doe led the search team at Example Corp from 2020 to 2024."
    ]
    assert found.passages[0].score == 0.8


async def test_each_retriever_brings_the_candidates_asked_for_and_at_least_the_limit() -> None:
    semantic = SemanticFake("led the search team")
    search = SearchProfile(small_profile(), semantic=semantic)

    await search.search("Who reported to her?", limit=5, candidates=10)
    await search.search("Who reported to her?", limit=6)

    assert [limit for _, limit in semantic.asked] == [10, 6]


async def test_a_question_lexical_search_answers_fully_skips_the_embeddings_call() -> None:
    semantic = SemanticFake("led the search team")
    search = SearchProfile(small_profile(), semantic=semantic)

    found = await search.search("Kubernetes platform")

    assert semantic.asked == []
    assert "Kubernetes platform" in found.passages[0].passage.text


async def test_a_question_lexical_search_covers_only_in_part_asks_the_embeddings() -> None:
    semantic = SemanticFake("led the search team")
    search = SearchProfile(small_profile(), semantic=semantic)
    partly = small_profile().search("Go ledger hobbies", 4)
    assert partly
    assert MIN_COVERAGE <= partly[0].score < CONFIDENT_COVERAGE

    await search.search("Go ledger hobbies")

    assert semantic.asked == [("Go ledger hobbies", 4)]


def test_lexical_confidence_is_the_best_passage_covering_the_whole_question() -> None:
    passage = small_profile().passages[0]
    assert lexically_confident([RetrievedPassage(passage, 1.0)], "en")
    assert lexically_confident([RetrievedPassage(passage, CONFIDENT_COVERAGE)], "en")
    assert not lexically_confident([RetrievedPassage(passage, CONFIDENT_COVERAGE - 0.01)], "en")
    # The first lexical passage decides, as it ranks first: a full match further down does not.
    assert not lexically_confident(
        [RetrievedPassage(passage, 0.4), RetrievedPassage(passage, 1.0)], "en"
    )
    assert not lexically_confident([], "en")


def english_and_korean() -> tuple[Passage, Passage]:
    profile = small_profile()
    english = next(p for p in profile.passages if passage_language(p) == "en")
    korean = next(p for p in profile.passages if passage_language(p) == "ko")
    return english, korean


def test_a_full_match_in_the_other_language_is_not_confident() -> None:
    english, korean = english_and_korean()

    assert not lexically_confident([RetrievedPassage(english, 1.0)], "ko")
    assert not lexically_confident([RetrievedPassage(korean, 1.0)], "en")
    assert lexically_confident([RetrievedPassage(korean, 1.0)], "ko")


def test_a_full_match_tied_with_another_language_s_passage_is_not_confident() -> None:
    english, korean = english_and_korean()
    tied = [RetrievedPassage(english, 1.0), RetrievedPassage(korean, 1.0)]

    assert not lexically_confident(tied, "en")
    # Below the best, a passage in the other language does not matter.
    assert lexically_confident([tied[0], RetrievedPassage(korean, 0.9)], "en")


def test_a_full_match_tied_with_its_own_translation_is_confident() -> None:
    english, korean = english_and_korean()
    twins = {korean: english, english: korean}
    tied = [RetrievedPassage(korean, 1.0), RetrievedPassage(english, 1.0)]

    assert lexically_confident(tied, "en", twin=twins.get)
    assert lexically_confident(tied, "ko", twin=twins.get)
    assert not lexically_confident(tied, "en", twin={}.get)


def test_a_follow_up_is_never_confident() -> None:
    english, _ = english_and_korean()

    assert not lexically_confident([RetrievedPassage(english, 1.0)], "en", follow_up=True)


async def test_a_question_fully_matched_in_the_other_language_asks_the_embeddings() -> None:
    english_only = Bm25KnowledgeIndex(split_markdown("en/profile.md", PROFILE_EN))
    [best] = english_only.search("쿠버네티스 플랫폼", 4)
    assert best.score >= CONFIDENT_COVERAGE
    semantic = SemanticFake("led the search team")
    search = SearchProfile(english_only, semantic=semantic)

    await search.search("쿠버네티스 플랫폼")

    assert semantic.asked == [("쿠버네티스 플랫폼", 4)]


async def test_a_follow_up_lexical_search_answers_fully_still_asks_the_embeddings() -> None:
    semantic = SemanticFake("led the search team")
    search = SearchProfile(small_profile(), semantic=semantic)

    await search.search("Kubernetes platform", earlier=["Where does she work?"])

    assert semantic.asked == [("Kubernetes platform", 4)]


# --- every caller goes through it ----------------------------------------------------------


async def test_the_chat_grounds_and_declines_with_the_search_it_is_given() -> None:
    engine = ScriptedEngine()
    profile = small_profile()
    ask = AskApplicant(
        profile,
        engine,
        InMemoryConversations(),
        default_model="m",
        allowed_models=frozenset(),
        max_input_chars=500,
        search=SearchProfile(profile, disclosure=ledger_policy()),
    )

    declined = await ask.answer([Message("user", "Tell me about the payments ledger")])

    assert declined.sources == ()
    assert declined.text.startswith(LEDGER_UNDISCLOSED)
    assert engine.requests == []


@pytest.fixture
async def container(tmp_path: Path) -> AsyncIterator[Container]:
    """The wiring the service runs with, over the small profile and a ledger policy."""
    (tmp_path / "policy.yaml").write_text(LEDGER_POLICY, encoding="utf-8")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, knowledge_dir=tmp_path, knowledge_watch=False
    )
    async with bootstrap(
        settings, knowledge=small_profile(), conversations=InMemoryConversations()
    ) as container:
        yield container


async def test_the_mcp_tool_returns_what_the_container_s_search_finds(
    container: Container,
) -> None:
    server = ProfileServer(container)

    results = await server.search_profile("Kubernetes platform")
    found = await container.search.search("Kubernetes platform", limit=5, candidates=10)

    assert [(r.source, r.heading, r.text) for r in results] == [
        (hit.passage.source, hit.passage.heading, hit.passage.text) for hit in found.passages
    ]


async def test_the_mcp_tool_never_returns_an_undisclosed_topic(container: Container) -> None:
    with pytest.raises(ToolError, match=LEDGER_UNDISCLOSED):
        await ProfileServer(container).search_profile("payments ledger")


def search_once(query: str) -> ScriptedModel:
    """The projects specialist searches for ``query``, then answers."""
    return ScriptedModel(
        [
            ModelStep(
                output=[function_call("transfer_to_projects_and_skills", {}, call_id="handoff")]
            ),
            ModelStep(output=[function_call("search_profile", {"query": query}, call_id="search")]),
            streamed_text("Done."),
        ]
    )


async def agents_tool_output(search: SearchProfile, question: str, query: str) -> str:
    """What the agents' ``search_profile`` tool returned for ``query``."""
    model = search_once(query)
    # The script hands off first: the triage model routes (direct routing has its own tests).
    engine = AgentsEngine(
        search, ScriptedProvider(model), max_output_tokens=100, direct_routing=False
    )
    request = AnswerRequest(messages=(Message("user", question),), model="m", grounding=())
    _ = [event async for event in engine.stream_answer(request)]
    tool_output = model.calls[-1].input[-1]
    assert tool_output["type"] == "function_call_output"
    output = tool_output["output"]
    assert isinstance(output, str)
    return output


async def test_the_agents_tool_never_returns_an_undisclosed_topic() -> None:
    search = SearchProfile(small_profile(), disclosure=ledger_policy())

    output = await agents_tool_output(search, "What did Jane build in Go?", "payments ledger")

    assert output.startswith(LEDGER_UNDISCLOSED)
    assert "3,000 transactions" not in output


async def test_the_agents_tool_chooses_passages_in_the_recruiter_s_language() -> None:
    search = SearchProfile(small_profile())

    output = await agents_tool_output(search, "쿠버네티스 경험이 있나요?", "Kubernetes platform")

    assert 'source="ko/profile.md"' in output
    assert 'source="en/profile.md"' not in output


async def test_a_salary_the_policy_file_withholds_never_reaches_the_model_through_the_agents(
    tmp_path: Path,
) -> None:
    """Issue 20's scenario: a salary figure in the documents, salary marked not for disclosure
    in policy.yaml (the sample profile's), the agents search for "salary expectations"."""
    (tmp_path / "policy.yaml").write_text(
        (SAMPLE_PROFILE_DIR / "policy.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "logistics.md").write_text(
        "# Minji Kim\n\n## Salary expectations\n\nMinji Kim expects a salary of "
        "KRW 98,000,000 a year.\n\n## Start date\n\nMinji Kim can start on January 4, 2027.\n",
        encoding="utf-8",
    )
    search = SearchProfile(
        Bm25KnowledgeIndex(load_passages(tmp_path)), disclosure=load_disclosure_policy(tmp_path)
    )

    output = await agents_tool_output(
        search, "What are Minji's salary expectations?", "salary expectations"
    )

    assert output.startswith("Minji Kim prefers to discuss compensation directly")
    assert "98,000,000" not in output
