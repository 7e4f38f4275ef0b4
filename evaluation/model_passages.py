"""Do the model engines get the right passages? ``uv run python -m evaluation.model_passages``.

Every answerable question of every profile (``evaluation.evaluate.profiles``) is asked through
the real ``AskApplicant``, wired by ``bootstrap`` with ``ENGINE=responses`` against the
repository's fake Responses API (``testing.fake_responses_api``, on loopback). The fake's
request log then shows what the model was sent: a question counts when the
``<profile_documents>`` block of the grounding (developer) message holds one of its expected
facts. A follow-up is asked in the same conversation as the question it follows (stored, as
the service keeps it).

``--semantic`` also turns semantic search on: the fake serves ``/v1/embeddings``, but its
vectors are hashed words (texts that share words are close), not meanings, so this shows that
fusing a second ranking keeps the right passages, not what real embeddings would add.

A question the disclosure policy declines never reaches the model; it is counted apart.
See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from bootstrap import bootstrap
from domain.models import Message
from evaluation.evaluate import (
    Profile,
    Question,
    contains_fact,
    load_questions,
    profiles,
    split_of,
)
from settings import Settings
from testing.conversations import InMemoryConversations
from testing.fake_responses_api import FakeResponsesAPI, RunningFake, run_fake_responses_api

_DOCUMENTS = re.compile(r"<profile_documents>(.*?)</profile_documents>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Sent:
    """What the model was sent for one answerable question."""

    question: Question
    declined: bool
    """Declined by the disclosure policy: no model request."""
    fact_sent: bool
    documents: str
    """The ``<profile_documents>`` block, unescaped."""


@dataclass(frozen=True, slots=True)
class Rates:
    questions: int
    declined: int
    overall: float | None
    cross_language: float | None
    dev: float | None
    held_out: float | None


def grounding_documents(body: dict[str, object]) -> str:
    """The ``<profile_documents>`` block of a Responses API request's developer message."""
    items = body.get("input")
    if not isinstance(items, list):
        return ""
    for item in items:
        if isinstance(item, dict) and item.get("role") == "developer":
            content = item.get("content")
            text = content if isinstance(content, str) else str(content)
            found = _DOCUMENTS.search(text)
            return html.unescape(found.group(1)) if found else ""
    return ""


def _settings(fake: RunningFake, knowledge_dir: Path, semantic: bool, scratch: Path) -> Settings:
    return Settings(
        _env_file=None,
        engine="responses",
        openai_api_key=SecretStr("sk-evaluation"),
        openai_base_url=fake.base_url,
        knowledge_dir=knowledge_dir,
        knowledge_watch=False,
        semantic_search=semantic,
        embeddings_cache=scratch / "embeddings.sqlite3",
        fallback_to_offline=False,
        redis_url=None,
        mcp_servers=None,
    )


async def _measure(
    fake: RunningFake, profile: Profile, questions: Sequence[Question], semantic: bool
) -> list[Sent]:
    results: list[Sent] = []
    with tempfile.TemporaryDirectory() as scratch:
        settings = _settings(fake, profile.knowledge_dir, semantic, Path(scratch))
        async with bootstrap(settings, conversations=InMemoryConversations()) as container:
            for question in questions:
                if not question.answerable:
                    continue
                conversation_id = None
                if question.after:
                    first = await container.ask.answer([Message("user", question.after)])
                    conversation_id = first.meta.conversation_id
                asked_before = len(fake.api.requests)
                answer = await container.ask.answer(
                    [Message("user", question.question)], conversation_id=conversation_id
                )
                sent = [
                    r for r in fake.api.requests[asked_before:] if r["path"].endswith("/responses")
                ]
                documents = grounding_documents(sent[-1]["body"]) if sent else ""
                results.append(
                    Sent(
                        question,
                        declined=answer.declined is not None,
                        fact_sent=contains_fact(documents, question.expected_facts),
                        documents=documents,
                    )
                )
    return results


def measure(
    profile: Profile, *, semantic: bool = False, fake: RunningFake | None = None
) -> list[Sent]:
    """Ask every answerable question of ``profile`` through the service with a model engine
    (the fake Responses API) and record what the model was sent."""
    questions = load_questions(profile.questions_file)
    if fake is not None:
        return asyncio.run(_measure(fake, profile, questions, semantic))
    with run_fake_responses_api(FakeResponsesAPI()) as running:
        return asyncio.run(_measure(running, profile, questions, semantic))


def _rate(sent: Sequence[Sent]) -> float | None:
    reached = [s for s in sent if not s.declined]
    return sum(s.fact_sent for s in reached) / len(reached) if reached else None


def rates(sent: Sequence[Sent]) -> Rates:
    """The share of the questions that reached the model whose fact was sent, overall, for
    the cross-language questions and for each half of the set."""
    return Rates(
        questions=len(sent),
        declined=sum(s.declined for s in sent),
        overall=_rate(sent),
        cross_language=_rate([s for s in sent if s.question.kind == "cross_language"]),
        dev=_rate([s for s in sent if split_of(s.question) == "dev"]),
        held_out=_rate([s for s in sent if split_of(s.question) == "held-out"]),
    )


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.model_passages",
        description="Whether the passage holding the fact reaches the model (ENGINE=responses, "
        "against the fake Responses API).",
    )
    parser.add_argument(
        "--profile", action="append", help="only this profile (repeatable; default: all)"
    )
    parser.add_argument(
        "--semantic", action="store_true", help="also measure with semantic search on"
    )
    parser.add_argument("--quiet", action="store_true", help="no list of questions missed")
    args = parser.parse_args(argv)
    chosen = [p for p in profiles() if not args.profile or p.name in args.profile]
    unknown = set(args.profile or ()) - {p.name for p in chosen}
    if unknown:
        parser.error(f"unknown profile(s): {', '.join(sorted(unknown))}")
    print(
        "| profile | search | questions | declined | fact sent | cross-language | dev "
        "| held-out |\n|---|---|---:|---:|---:|---:|---:|---:|"
    )
    missed: list[str] = []
    with run_fake_responses_api(FakeResponsesAPI()) as fake:
        for profile in chosen:
            for semantic in (False, True) if args.semantic else (False,):
                sent = measure(profile, semantic=semantic, fake=fake)
                r = rates(sent)
                search = "lexical + fake embeddings" if semantic else "lexical"
                print(
                    f"| {profile.name} | {search} | {r.questions} | {r.declined} "
                    f"| {_cell(r.overall)} | {_cell(r.cross_language)} | {_cell(r.dev)} "
                    f"| {_cell(r.held_out)} |"
                )
                missed += [
                    f"- {profile.name} ({search}) {s.question.id} [{s.question.kind}] "
                    f"{s.question.question}"
                    for s in sent
                    if not s.declined and not s.fact_sent
                ]
    if not args.quiet and missed:
        print("\nFact not sent to the model:\n" + "\n".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
