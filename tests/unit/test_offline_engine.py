from __future__ import annotations

import re

import pytest

from domain.models import AnswerDone, AnswerRequest, Message, Passage, TextDelta
from infrastructure.knowledge import Bm25KnowledgeIndex
from infrastructure.offline_engine import OfflineEngine
from settings import SAMPLE_PROFILE_DIR

TEMPLATE_LINES = {
    "지원자의 프로필 문서에서 찾은 내용입니다.",
    "Here is what the applicant's profile says.",
}


@pytest.fixture(scope="module")
def sample() -> Bm25KnowledgeIndex:
    return Bm25KnowledgeIndex.from_folder(SAMPLE_PROFILE_DIR)


def request_for(sample: Bm25KnowledgeIndex, question: str) -> AnswerRequest:
    return AnswerRequest(
        messages=(Message("user", question),),
        model="offline",
        grounding=tuple(sample.search(question, 4)),
        contact=sample.contact(),
    )


async def answer(sample: Bm25KnowledgeIndex, question: str) -> str:
    events = [e async for e in OfflineEngine(sample).stream_answer(request_for(sample, question))]
    assert isinstance(events[-1], AnswerDone)
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def assert_only_quotes(text: str, passages: list[Passage]) -> None:
    """Every line is a template line, a citation, or a quote of a passage: nothing invented."""
    corpus = "\n".join(p.text for p in passages)
    citations = {p.citation for p in passages}
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        if line in TEMPLATE_LINES:
            continue
        if line.startswith("> - ") and any(line[4:] in p.heading_path for p in passages):
            continue
        if line.startswith("— "):
            assert re.sub(r"^\[\d+\] ", "", line[2:]) in citations, line
            continue
        assert line.startswith("> "), line
        quoted = line[2:]
        assert quoted in corpus or all(
            sentence in corpus for sentence in re.split(r"(?<=[.!?])\s+", quoted)
        ), quoted


async def test_english_question_quotes_the_resume(sample: Bm25KnowledgeIndex) -> None:
    text = await answer(sample, "What is her biggest achievement?")
    assert text.startswith("Here is what the applicant's profile says.")
    assert "820 ms" in text
    assert "— [1] en/" in text
    assert_only_quotes(text, list(sample.passages))


async def test_korean_question_is_answered_from_korean_documents(
    sample: Bm25KnowledgeIndex,
) -> None:
    text = await answer(sample, "어떤 프로젝트를 했나요?")
    assert text.startswith("지원자의 프로필 문서에서 찾은 내용입니다.")
    assert "— [1] ko/프로젝트.md" in text
    assert_only_quotes(text, list(sample.passages))


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What is her favorite food?", "The applicant's profile does not cover this question."),
        ("좋아하는 음식은 무엇인가요?", "지원자의 프로필 문서에는 이 질문에 대한 내용이 없습니다."),
    ],
)
async def test_uncovered_question_says_so_and_gives_the_contact(
    sample: Bm25KnowledgeIndex, question: str, expected: str
) -> None:
    text = await answer(sample, question)
    assert text.startswith(expected)
    assert "minji.kim@example.com" in text


async def test_answer_streams_line_by_line_and_rebuilds_exactly(
    sample: Bm25KnowledgeIndex,
) -> None:
    engine = OfflineEngine(sample)
    request = request_for(sample, "When can she start?")
    chunks = engine.compose(request)
    assert len(chunks) > 3
    assert all(len([line for line in chunk.splitlines() if line.strip()]) == 1 for chunk in chunks)
    streamed = [e async for e in engine.stream_answer(request)]
    assert "".join(e.text for e in streamed if isinstance(e, TextDelta)) == "".join(chunks)


def test_offline_engine_reports_its_own_model(sample: Bm25KnowledgeIndex) -> None:
    assert OfflineEngine(sample).model_for("gpt-4.1") == "offline"


async def test_overview_sections_list_what_they_contain(sample: Bm25KnowledgeIndex) -> None:
    text = await answer(sample, "어떤 프로젝트를 했나요?")
    titles = [line for line in text.splitlines() if line.startswith("> - 프로젝트 ")]
    assert len(titles) == 5


async def test_lines_are_chosen_by_the_question_words_and_their_synonyms() -> None:
    lines = [
        "- Based in Busan.",
        "- Prefers a hybrid setup.",
        "- Speaks Korean and English.",
        "- Holds a CKA certificate.",
        "- Reads a lot.",
        "- Earliest start date: March 3, 2027.",
    ]
    index = Bm25KnowledgeIndex([Passage("en/logistics.md", ("Logistics",), "\n".join(lines))])
    text = await answer(index, "When could she join?")  # join: a synonym of start
    assert "> - Earliest start date: March 3, 2027." in text
    assert_only_quotes(text, list(index.passages))
