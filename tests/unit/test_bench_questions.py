"""``bench.relay`` asks the questions it is given (``--questions``, ``--semantic-questions``),
so that another applicant's documents (KNOWLEDGE_DIR) are benchmarked with questions of their
own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.relay import (
    QUESTIONS,
    SEMANTIC_QUESTIONS,
    Questions,
    parse_arguments,
    read_questions,
    request_bodies,
)

OWN = Questions(plain=("어디서 일했나요?", "Which databases?"), semantic=("Has he led a team?",))


def asked(bodies: list[str]) -> list[str]:
    return [json.loads(body)["input"] for body in bodies]


def test_a_file_gives_one_question_a_line(tmp_path: Path) -> None:
    path = tmp_path / "questions.txt"
    lines = "# a recruiter's questions\n어디서 일했나요?\n\n  Which databases?  \n"
    path.write_text(lines, "utf-8")
    assert read_questions(path) == ("어디서 일했나요?", "Which databases?")
    path.write_text("# only a comment\n\n", "utf-8")
    with pytest.raises(ValueError, match="no questions"):
        read_questions(path)


def test_each_target_asks_the_questions_given() -> None:
    assert asked(request_bodies("app", OWN)) == list(OWN.plain)
    assert asked(request_bodies("app-agents", OWN)) == list(OWN.plain)
    assert asked(request_bodies("app-semantic", OWN)) == list(OWN.semantic)
    new = asked(request_bodies("app-semantic-new", OWN))
    assert all(question.startswith("Has he led a team? (q") for question in new)
    assert len(set(new)) == len(new), "a new question every time"
    direct = [json.loads(body)["input"][-1]["content"] for body in request_bodies("direct", OWN)]
    assert direct == list(OWN.plain)


def test_without_files_the_sample_questions_are_asked(tmp_path: Path) -> None:
    _, plan = parse_arguments(["--quick"])
    assert plan.questions == Questions(QUESTIONS, SEMANTIC_QUESTIONS)
    plain, semantic = tmp_path / "plain.txt", tmp_path / "semantic.txt"
    plain.write_text("Where?\n", "utf-8")
    semantic.write_text("Why?\nHow?\n", "utf-8")
    _, plan = parse_arguments(
        ["--quick", "--questions", str(plain), "--semantic-questions", str(semantic)]
    )
    assert plan.questions == Questions(("Where?",), ("Why?", "How?"))


def evaluation_set(path: Path, *rows: str) -> Path:
    """An evaluation set of ``rows``; an answerable question's expected fact is "a"."""
    refused = ("unanswerable", "protected")
    facts = [", expected_facts: [a]" if not any(k in row for k in refused) else "" for row in rows]
    lines = [f"  - {{{row}{fact}}}" for row, fact in zip(rows, facts, strict=True)]
    path.write_text("questions:\n" + "\n".join(lines) + "\n", "utf-8")
    return path


def test_an_evaluation_set_gives_its_held_out_half(tmp_path: Path) -> None:
    path = evaluation_set(
        tmp_path / "questions.yaml",
        'id: en-direct-01, lang: en, kind: direct, question: "Where does he work?"',
        'id: en-direct-02, lang: en, kind: direct, question: "The dev half, tuned on"',
        'id: ko-para-03, lang: ko, kind: paraphrase, question: "어떤 언어를 쓰나요?"',
        'id: en-follow-01, lang: en, kind: follow_up, after: "Where?", question: "Before?"',
        'id: en-protected-01, lang: en, kind: protected, question: "How old is he?"',
        'id: en-unans-05, lang: en, kind: unanswerable, question: "What was his GPA?"',
    )
    held_out = ("Where does he work?", "어떤 언어를 쓰나요?", "What was his GPA?")
    assert read_questions(path) == held_out
    dev_only = evaluation_set(
        tmp_path / "dev.yaml", 'id: en-direct-02, lang: en, kind: direct, question: "Dev"'
    )
    with pytest.raises(ValueError, match="no held-out questions"):
        read_questions(dev_only)


def test_the_evaluation_sets_of_the_repository_can_be_benchmarked() -> None:
    for path in sorted(Path("evaluation/profiles").glob("*/questions.yaml")):
        assert len(read_questions(path)) >= 10, path
