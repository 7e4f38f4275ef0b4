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
