"""Follow-ups carry the previous question's subject over: "And before that?" is answered with
the entry that precedes the one the previous question was about, through the service's own
conversation (stored or sent by the client), in Korean and English."""

from __future__ import annotations

import re

import pytest

from application.ask import AskApplicant
from application.search import SearchProfile
from domain.disclosure import DisclosurePolicy, UndisclosedTopic
from domain.follow_up import anchor, asks_before, leans_on_previous, preceding, timeline
from domain.models import Message
from domain.topics import applicant_names, profile_topic
from infrastructure.knowledge import Bm25KnowledgeIndex, split_markdown
from infrastructure.offline_engine import OfflineEngine
from tests.fakes import InMemoryConversations

RESUME_EN = """\
# Alex Park

Email: alex@example.com

## Experience

### Nimbus Robotics — Staff Engineer (May 2022 – present)

- Owns the fleet telemetry pipeline, 2 billion events a day.

### Cobalt Maps — Senior Engineer (March 2019 – April 2022)

- Built the tile rendering service behind the map viewer.

### Ember Games — Engineer (2016 – 2019)

- Built the matchmaking queue for a racing game.

## Skills

Go, Rust, Kafka
"""

RESUME_KO = """\
# 박서준 이력서

## 경력 요약

- 누리랩스 — 백엔드 개발자 (2021년 3월 ~ 현재)
- 하늘소프트 — 주니어 개발자 (2018년 1월 ~ 2021년 2월)

## 누리랩스 프로젝트

사내 결제 게이트웨이를 만들었고, 팀은 4명이었습니다.
"""


def index(language: str = "en") -> Bm25KnowledgeIndex:
    """One applicant's résumé: Alex Park's in English, or 박서준's in Korean."""
    if language == "ko":
        return Bm25KnowledgeIndex(split_markdown("이력서.md", RESUME_KO))
    return Bm25KnowledgeIndex(split_markdown("resume.md", RESUME_EN))


def ask_applicant(knowledge: Bm25KnowledgeIndex) -> AskApplicant:
    return AskApplicant(
        knowledge,
        OfflineEngine(knowledge),
        InMemoryConversations(),
        default_model="offline",
        allowed_models=frozenset(),
        max_input_chars=2_000,
    )


@pytest.mark.parametrize(
    "question",
    [
        "And before that?",
        "What did he do before that?",
        "그 전에는 어디서 일했나요?",
        "그 전에는요?",
        "그전엔?",
        "전에는 어디서 일했나요?",
        "그 이전 회사는?",
        "What did she do previously?",
    ],
)
def test_questions_about_what_came_before_are_recognised(question: str) -> None:
    assert asks_before(question)
    assert leans_on_previous(question)


@pytest.mark.parametrize(
    "question",
    [
        "Where did he work before joining Nimbus Robotics as a staff engineer?",
        "전 직장에서 맡았던 업무와 성과를 자세히 알려주세요",
        "그 전문성은 어떻게 쌓았나요?",
        "입사 전에는 무엇을 준비했나요?",
        "What did he previously build at Cobalt Maps?",
    ],
)
def test_a_question_that_names_its_subject_does_not_lean_on_the_previous_one(
    question: str,
) -> None:
    assert not asks_before(question)


def test_the_timeline_holds_dated_sections_and_dated_lines_in_groups() -> None:
    entries = timeline([*index().passages, *index("ko").passages])
    labels = {entry.label: entry for entry in entries}
    nimbus = labels["Nimbus Robotics — Staff Engineer (May 2022 – present)"]
    assert nimbus.ongoing
    assert nimbus.start == (2022, 5)
    assert labels["Ember Games — Engineer (2016 – 2019)"].start == (2016, 0)
    nuri = labels["누리랩스 — 백엔드 개발자 (2021년 3월 ~ 현재)"]
    assert nuri.ongoing
    assert nuri.kind == "line"
    # Each job precedes in time the one above it, within its own group only.
    assert preceding(entries, nimbus).label.startswith("Cobalt Maps")  # type: ignore[union-attr]
    assert preceding(entries, nuri).label.startswith("하늘소프트")  # type: ignore[union-attr]
    ember = labels["Ember Games — Engineer (2016 – 2019)"]
    assert preceding(entries, ember) is None


def test_the_anchor_of_a_question_about_now_is_an_ongoing_entry() -> None:
    entries = timeline(index().passages)
    found = anchor(entries, "Where does he work now?", [])
    assert found is not None
    assert found.ongoing


def test_nothing_is_anchored_when_nothing_points_at_an_entry() -> None:
    entries = timeline(index().passages)
    assert anchor(entries, "What are his skills?", []) is None


async def answer_after(ask: AskApplicant, first: str, follow_up: str) -> str:
    opened = await ask.answer([Message("user", first)])
    answer = await ask.answer(
        [Message("user", follow_up)], conversation_id=opened.meta.conversation_id
    )
    return answer.text


@pytest.mark.parametrize(
    ("first", "follow_up", "fact"),
    [
        ("Where does he work now?", "And before that?", "Cobalt Maps"),
        ("What did he build at Cobalt Maps?", "Where did he work before that?", "Ember Games"),
        ("현재 어디서 일하나요?", "그 전에는 어디서 일했나요?", "하늘소프트"),
    ],
)
async def test_before_that_follows_the_stored_conversation(
    first: str, follow_up: str, fact: str
) -> None:
    knowledge = index("ko" if fact == "하늘소프트" else "en")
    assert fact in await answer_after(ask_applicant(knowledge), first, follow_up)


async def test_before_that_follows_a_conversation_the_client_sends() -> None:
    ask = ask_applicant(index())
    answer = await ask.answer(
        [
            Message("user", "Where does he work now?"),
            Message("assistant", "He is a staff engineer at Nimbus Robotics."),
            Message("user", "And before that?"),
            Message("assistant", "Cobalt Maps."),
            Message("user", "And before that?"),
        ]
    )
    assert "Ember Games" in answer.text
    assert "Cobalt Maps" not in answer.text


@pytest.mark.parametrize("company", ["Cobalt Maps", "Ember Games"])
async def test_a_short_follow_up_prefers_the_previous_subject(company: str) -> None:
    # Both jobs' lines say "Built": the previous question says which job is meant.
    found = await SearchProfile(index()).search(
        "What did he build?", earlier=[f"Tell me about {company}"]
    )
    assert found.passages[0].passage.heading_path[-1].startswith(company)


# --- questions about the whole profile (domain/topics.py) -----------------------------------


@pytest.mark.parametrize(
    ("question", "topic"),
    [
        ("Summarize her career", "overview"),
        ("What is her main experience?", "overview"),
        ("경력을 요약해 주세요", "overview"),
        ("어디서 일했나요?", "employers"),
        ("Where has he worked?", "employers"),
        ("현재 어느 회사에 다니고 있나요?", "current_employer"),
        ("Where does Alex Park work now?", "current_employer"),
        ("What was his first job?", "first_employer"),
        ("Where did he start his career?", "first_employer"),
        ("첫 직장은 어디였나요?", "first_employer"),
        ("What was his first project at Cobalt Maps?", None),
        ("Summarize the telemetry pipeline project", None),
        ("Where would he like to work?", None),
        ("무슨 일을 했나요?", None),
    ],
)
def test_questions_about_the_whole_profile(question: str, topic: str | None) -> None:
    knowledge = index("ko" if re.search("[가-힣]", question) else "en")
    names = applicant_names(knowledge.passages, knowledge.contact())
    assert profile_topic(question, names) == topic


async def test_the_current_employer_comes_from_the_timeline() -> None:
    found = await SearchProfile(index()).search("Where does he work now?")
    assert [hit.passage.heading_path[-1] for hit in found.passages] == [
        "Nimbus Robotics — Staff Engineer (May 2022 – present)"
    ]


async def test_where_he_worked_grounds_every_job() -> None:
    found = await SearchProfile(index()).search("Where has he worked?")
    headings = " ".join(hit.passage.heading for hit in found.passages)
    for company in ("Nimbus Robotics", "Cobalt Maps", "Ember Games"):
        assert company in headings


async def test_the_current_employer_from_a_list_of_jobs() -> None:
    found = await SearchProfile(index("ko")).search("현재 어디서 일하나요?")
    assert [hit.passage.text for hit in found.passages] == [
        "누리랩스 — 백엔드 개발자 (2021년 3월 ~ 현재)"
    ]


@pytest.mark.parametrize(
    ("language", "question", "first"),
    [
        ("en", "What was his first job?", "Ember Games"),
        ("ko", "첫 직장은 어디였나요?", "하늘소프트"),
    ],
)
async def test_the_first_job_is_the_one_that_started_first(
    language: str, question: str, first: str
) -> None:
    found = await SearchProfile(index(language)).search(question)
    assert len(found.passages) == 1
    assert first in "\n".join((found.passages[0].passage.heading, found.passages[0].passage.text))


async def test_nothing_is_walked_back_from_a_declined_question() -> None:
    policy = DisclosurePolicy((UndisclosedTopic("pay", ("salary",), {"en": "Ask him."}),))
    search = SearchProfile(index(), disclosure=policy)
    found = await search.search(
        "And before that?", earlier=["What was his salary at Nimbus Robotics?"]
    )
    assert all("Cobalt Maps" not in hit.passage.heading for hit in found.passages)
