"""The labelled question sets are well-formed, the evaluation runs, and every profile meets
the targets (``python -m evaluation.evaluate --check``), its held-out half included."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from evaluation.evaluate import (
    KINDS,
    Question,
    breakdown,
    contains_fact,
    evaluate,
    is_acceptable,
    last_heading,
    load_questions,
    main,
    profiles,
    refusal_markers,
    run,
    split_of,
)
from infrastructure.knowledge import Bm25KnowledgeIndex
from settings import SAMPLE_PROFILE_DIR


@pytest.fixture(scope="module")
def index() -> Bm25KnowledgeIndex:
    return Bm25KnowledgeIndex.from_folder(SAMPLE_PROFILE_DIR)


@pytest.fixture(scope="module")
def questions() -> list[Question]:
    return load_questions()


def test_the_set_is_large_and_balanced(questions: list[Question]) -> None:
    assert len(questions) >= 60
    languages = Counter(q.lang for q in questions)
    assert set(languages) == {"ko", "en"}
    assert all(count >= 0.45 * len(questions) for count in languages.values()), languages
    assert {q.kind for q in questions} == set(KINDS) - {"follow_up"}
    assert len({q.id for q in questions}) == len(questions)


def test_answerable_questions_have_facts_and_sources(questions: list[Question]) -> None:
    for question in questions:
        if question.answerable:
            assert question.expected_facts, question.id
            assert question.sources, question.id
        else:
            assert not question.expected_facts, question.id
            assert not question.sources, question.id


def test_every_source_names_a_passage_of_the_profile(
    index: Bm25KnowledgeIndex, questions: list[Question]
) -> None:
    known = {(p.source, last_heading(p)) for p in index.passages}
    for question in questions:
        for ref in question.sources:
            assert (ref.source, ref.heading) in known, (question.id, ref)


def test_every_expected_fact_is_stated_by_an_acceptable_source(
    index: Bm25KnowledgeIndex, questions: list[Question]
) -> None:
    """Each alternative is grounded, and each listed source states one of them."""
    for question in questions:
        if not question.answerable:
            continue
        sources = [p for p in index.passages if is_acceptable(p, question)]
        for fact in question.expected_facts:
            assert any(contains_fact(p.text, [fact]) for p in sources), (question.id, fact)
        for ref in question.sources:
            named = [
                p
                for p in index.passages
                if p.source == ref.source and last_heading(p) == ref.heading
            ]
            assert any(contains_fact(p.text, question.expected_facts) for p in named), (
                question.id,
                ref,
            )


def test_refusals_are_recognised() -> None:
    markers = refusal_markers()
    assert any(m.startswith("The applicant's profile does not cover") for m in markers)
    assert any(m.startswith("지원자의 프로필 문서에는") for m in markers)


def test_the_evaluation_runs_and_reports_rates(questions: list[Question]) -> None:
    outcomes = run(SAMPLE_PROFILE_DIR)
    assert len(outcomes) == len(questions)
    rows = breakdown(outcomes)
    assert {"overall", "lang: ko", "lang: en"} <= set(rows)
    assert {f"kind: {kind}" for kind in KINDS if kind != "follow_up"} <= set(rows)
    overall = rows["overall"]
    for value in (
        overall.recall_at_3,
        overall.fact_rate,
        overall.false_refusal_rate,
        overall.refusal_accuracy,
    ):
        assert value is not None
        assert 0.0 <= value <= 1.0


def test_the_set_splits_into_a_dev_half_and_a_held_out_half(questions: list[Question]) -> None:
    assert split_of(Question("en-direct-02", "en", "q", "direct", ("f",))) == "dev"
    assert split_of(Question("ko-para-11", "ko", "q", "paraphrase", ("f",))) == "held-out"
    splits = Counter(split_of(q) for q in questions)
    assert set(splits) == {"dev", "held-out"}
    # Dev grows as questions are written to find weaknesses; held-out stays as it was.
    assert splits["held-out"] >= 50
    assert splits["dev"] >= splits["held-out"] - 5
    rows = breakdown(run(SAMPLE_PROFILE_DIR))
    assert rows["split: dev"].questions + rows["split: held-out"].questions == len(questions)


def test_protected_questions_are_declined_before_retrieval(
    index: Bm25KnowledgeIndex,
) -> None:
    [outcome] = evaluate(index, [Question("age", "en", "How old is she?", "protected")])
    assert outcome.declined is not None
    assert outcome.refused


def test_the_command_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results.json"
    assert main(["--json", str(out), "--profile", "sample"]) == 0
    assert "recall@3" in capsys.readouterr().out
    results = json.loads(out.read_text(encoding="utf-8"))
    assert 0.0 <= results["metrics"]["overall"]["recall_at_3"] <= 1.0
    assert len(results["questions"]) == len(load_questions())


ONE_LANGUAGE_PROFILES = [p for p in profiles() if p.name != "sample"]


def test_there_are_one_language_profiles_with_fifty_balanced_questions() -> None:
    assert len(ONE_LANGUAGE_PROFILES) >= 2
    for profile in ONE_LANGUAGE_PROFILES:
        questions = load_questions(profile.questions_file)
        assert len(questions) >= 50, profile.name
        languages = Counter(q.lang for q in questions)
        assert abs(languages["ko"] - languages["en"]) <= 2, (profile.name, languages)
        assert {q.kind for q in questions} == set(KINDS), profile.name
        # Dev grows as questions are written to find weaknesses; held-out stays as it was.
        splits = Counter(split_of(q) for q in questions)
        assert min(splits.values()) >= 25, (profile.name, splits)


@pytest.mark.parametrize("profile", ONE_LANGUAGE_PROFILES, ids=lambda p: p.name)
def test_every_expected_fact_is_in_the_profile(profile: Any) -> None:
    passages = Bm25KnowledgeIndex.from_folder(profile.knowledge_dir).passages
    for question in load_questions(profile.questions_file):
        for fact in question.expected_facts:
            # An answer names the section it quotes (the employer in a heading) too.
            stated = ["\n".join((*p.heading_path, p.text)) for p in passages]
            assert any(contains_fact(text, [fact]) for text in stated), (question.id, fact)


def test_a_follow_up_is_searched_with_the_question_it_follows() -> None:
    [profile] = [p for p in ONE_LANGUAGE_PROFILES if p.name == "jaehyun_oh"]
    outcomes = run(profile.knowledge_dir, profile.questions_file)
    follow_ups = [o for o in outcomes if o.question.kind == "follow_up"]
    assert follow_ups
    assert all(o.question.after for o in follow_ups)


def test_recall_of_a_follow_up_is_measured_on_what_the_service_retrieves_for_it() -> None:
    """A "before that" is resolved against the question before it (the job before the one it
    was about), as the service grounds it, not searched as two questions run together."""
    [profile] = [p for p in ONE_LANGUAGE_PROFILES if p.name == "jaehyun_oh"]
    index = Bm25KnowledgeIndex.from_folder(profile.knowledge_dir)
    before_that = Question(
        "en-follow-x",
        "en",
        "Where did he work before that?",
        "follow_up",
        ("Dalbit Games",),
        after="What does he do at Hanbit Logistics?",
    )
    [outcome] = evaluate(index, [before_that])
    assert outcome.recall_hit
    assert outcome.source_rank == 1
    assert "Dalbit Games" in (last_heading(outcome.retrieved[0].passage) or "")


def test_every_profile_meets_the_targets_held_out_half_included(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What CI enforces: ``python -m evaluation.evaluate --check`` over every profile."""
    status = main(["--check", "--quiet"])
    report = capsys.readouterr().out
    assert status == 0, report
    for profile in profiles():
        assert f"## {profile.name}" in report
