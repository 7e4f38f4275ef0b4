"""The questions people try first get the right answer: every example question of the README
and every suggested question of the chat page, read from those files (so a new example cannot
slip in untested), asked through the service with the offline engine and the bundled sample
profile. A follow-up is asked in the same conversation as the question before it.

Each question must have its expected fact below: a new example fails here until it has one.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.container import Container
from bootstrap import bootstrap
from domain.models import Message
from evaluation.evaluate import contains_fact, refusal_markers
from settings import SAMPLE_PROFILE_DIR, Settings
from tests.fakes import InMemoryConversations

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CHAT_PAGE = ROOT / "api" / "static" / "index.html"

EXPECTED: dict[str, tuple[tuple[str, ...], ...]] = {
    # Each entry: groups of alternatives; the answer must hold one of each group.
    "어떤 프로젝트를 했나요?": (("pg-cutover",), ("결제 플랫폼 마이그레이션",)),
    "When can she start?": (("January 4, 2027",),),
    "현재 어디서 일하나요?": (("한빛페이",),),
    "그 전에는 어디서 일했나요?": (("소라물류", "Sora Logistics"),),
    "What is her main experience?": (("about 8 years",),),
    "언제부터 출근할 수 있나요?": (("2027년 1월 4일",),),
    # Tried by newcomers on the bundled profile and refused before (issue 14).
    "어디서 일했나요?": (("한빛페이",), ("소라물류",)),
    "Summarize her career": (("about 8 years",),),
    "What is her biggest weakness?": (("take on too much work",),),
}
TRIED_BY_NEWCOMERS = ("어디서 일했나요?", "Summarize her career", "What is her biggest weakness?")


@dataclass(frozen=True)
class Example:
    question: str
    after: str | None = None
    """The question a follow-up continues, in the same conversation."""


_CODE_BLOCK = re.compile(r"```[a-z]*\n(.*?)```", re.DOTALL)
_README_QUESTION = re.compile(
    r"""(?P<curl>"input":"(?P<input>[^"]+)"(?P<rest>[^}]*)})"""
    r"""|uv run ask (?P<options>(?:--\S+ )*)"(?P<asked>[^"]+)\""""
    r"""|echo "(?P<piped>[^"]+)" \| uv run ask"""
)


def readme_examples() -> list[Example]:
    """The README's questions in its shell examples; one sent with a conversation is a
    follow-up of the question before it in the same block (or, if that block has none, in
    another block where the same follow-up has one)."""
    examples: list[Example] = []
    orphans: list[str] = []
    for block in _CODE_BLOCK.findall(README.read_text(encoding="utf-8")):
        previous: str | None = None
        for match in _README_QUESTION.finditer(block):
            question = match["input"] or match["asked"] or match["piped"]
            follow_up = "conversation_id" in (match["rest"] or "") or "--conversation" in (
                match["options"] or ""
            )
            if not follow_up:
                previous = question
                examples.append(Example(question))
            elif previous is not None:
                examples.append(Example(question, previous))
            else:
                orphans.append(question)
    for question in orphans:
        assert any(e.question == question and e.after for e in examples), (
            f"the README's follow-up {question!r} never shows the question it follows"
        )
    return examples


def chat_page_examples() -> list[Example]:
    page = CHAT_PAGE.read_text(encoding="utf-8")
    return [Example(q) for q in re.findall(r'data-question="([^"]+)"', page)]


def all_examples() -> list[Example]:
    unique: dict[tuple[str, str | None], Example] = {}
    for example in [
        *readme_examples(),
        *chat_page_examples(),
        *(Example(q) for q in TRIED_BY_NEWCOMERS),
    ]:
        unique.setdefault((example.question, example.after), example)
    return list(unique.values())


def test_the_examples_are_found_in_the_files() -> None:
    readme = readme_examples()
    assert {"When can she start?", "그 전에는 어디서 일했나요?"} <= {e.question for e in readme}
    assert any(e.after for e in readme)
    assert len(chat_page_examples()) >= 3


@pytest.fixture
async def container() -> AsyncIterator[Container]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        engine="offline",
        knowledge_dir=SAMPLE_PROFILE_DIR,
        knowledge_watch=False,
    )
    async with bootstrap(settings, conversations=InMemoryConversations()) as built:
        yield built


@pytest.mark.parametrize(
    "example",
    all_examples(),
    ids=lambda e: e.question if e.after is None else f"{e.after} → {e.question}",
)
async def test_every_example_gets_the_right_answer(example: Example, container: Container) -> None:
    assert example.question in EXPECTED, (
        f"a new example question {example.question!r}: add its expected fact to EXPECTED"
    )
    conversation_id = None
    if example.after is not None:
        first = await container.ask.answer([Message("user", example.after)])
        conversation_id = first.meta.conversation_id
    answer = await container.ask.answer(
        [Message("user", example.question)], conversation_id=conversation_id
    )
    assert not any(marker in answer.text for marker in refusal_markers()), answer.text
    for alternatives in EXPECTED[example.question]:
        assert contains_fact(answer.text, alternatives), (alternatives, answer.text)
