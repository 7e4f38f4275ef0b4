"""The agents' direct routing: its targets on the held-out half of the labelled questions, in
both languages, and the cases where it must leave the choice to the triage model."""

from __future__ import annotations

import pytest

from domain.models import Passage, RetrievedPassage
from domain.policy import SPECIALISTS
from domain.routing import (
    CAREER,
    LOGISTICS,
    MAX_ROUTED_CHARS,
    PROJECTS,
    VOCABULARY,
    direct_specialist,
)
from evaluation.routing import by_words, load_examples, measure, with_sample_search

COVERAGE_TARGET = 0.80
"""Of the questions labelled with a specialist, the share that skips the triage model."""


def test_the_labelled_set_is_bilingual_and_split_in_halves() -> None:
    examples = load_examples()
    for split in ("dev", "heldout"):
        for language in ("en", "ko"):
            chosen = [e for e in examples if e.split == split and e.language == language]
            assert len(chosen) >= 20, (split, language)
            assert {e.expected for e in chosen} == {*VOCABULARY, "triage"}
    assert len({e.text for e in examples}) == len(examples)


def test_the_held_out_half_is_never_routed_to_the_wrong_specialist() -> None:
    held_out = [e for e in load_examples() if e.split == "heldout"]
    for route in (by_words, with_sample_search(held_out)):
        rates = measure(route, held_out)
        assert rates.wrong == (), rates.wrong
        assert rates.coverage >= COVERAGE_TARGET, rates.missed


def test_the_router_knows_every_specialist_and_no_other() -> None:
    assert set(VOCABULARY) == {name for name, _, _ in SPECIALISTS}


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("When can she start?", LOGISTICS),
        ("언제부터 근무할 수 있나요?", LOGISTICS),
        ("What projects did Minji lead?", PROJECTS),
        ("어떤 프로젝트를 했나요?", PROJECTS),
        ("Which companies has she worked for?", CAREER),
        ("학력이 어떻게 되나요?", CAREER),
    ],
)
def test_a_question_that_names_one_topic_goes_to_its_specialist(
    question: str, expected: str
) -> None:
    assert direct_specialist(question) == expected


@pytest.mark.parametrize(
    "question",
    [
        "Hello!",
        "안녕하세요",
        "Tell me more about that.",
        "좀 더 자세히 설명해 주세요.",
        "What projects has she done, and when can she start?",
        "기술 스택과 희망 근무 지역을 알려 주세요.",
    ],
)
def test_greetings_follow_ups_and_two_topics_go_to_the_triage_model(question: str) -> None:
    assert direct_specialist(question) is None


def test_a_long_question_goes_to_the_triage_model() -> None:
    question = "When can she start? " + "Please be precise. " * 20
    assert len(question) > MAX_ROUTED_CHARS
    assert direct_specialist(question) is None


def found(*headings: str) -> tuple[RetrievedPassage, ...]:
    return tuple(
        RetrievedPassage(Passage("en/profile.md", ("Profile", heading), "..."), 0.5)
        for heading in headings
    )


def test_the_search_can_overrule_the_words_but_never_choose_alone() -> None:
    question = "Does she know Kubernetes?"
    assert direct_specialist(question, found("Technical Skills")) == PROJECTS
    # Found under a heading that is no specialist's topic, or under two: no objection.
    assert direct_specialist(question, found("Summary", "Why She Is Looking")) == PROJECTS
    assert direct_specialist(question, found("Work Experience", "Technical Skills")) == PROJECTS
    # Found only under another specialist's heading: the triage model decides.
    assert direct_specialist(question, found("Work Experience of Minji Kim")) is None
    assert direct_specialist("쿠버네티스를 써 봤나요?", found("김민지 경력")) is None
    # Headings alone never route a question whose words name no topic.
    assert direct_specialist("Tell me more.", found("Technical Skills")) is None
