"""The agents' direct routing (``domain/routing.py``) measured on its labelled questions.

``uv run python -m evaluation.routing`` prints, per split, how many questions the rule sent
straight to a specialist, how many of those went to the wrong one (the costly error: a
specialist answers outside its topics), and how many clear questions it left to the triage
model (a missed saving, no harm). Each question is routed twice: on its words alone, and with
what the sample profile's search finds for it (the engine routes with both).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from application.search import SearchProfile
from domain.models import RetrievedPassage
from domain.routing import direct_specialist
from infrastructure.disclosure_file import load_disclosure_policy
from infrastructure.knowledge import Bm25KnowledgeIndex, load_passages

QUESTIONS = Path(__file__).parent / "routing" / "questions.yaml"
SAMPLE_PROFILE = Path(__file__).parent.parent / "sample_profile"
TRIAGE = "triage"

Split = Literal["dev", "heldout"]


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    expected: str
    """A specialist's name, or ``triage`` when the choice is not clear from the question."""
    language: Literal["en", "ko"]
    split: Split


@dataclass(frozen=True, slots=True)
class Rates:
    questions: int
    clear: int
    """Questions labelled with a specialist."""
    direct: int
    """Questions the rule sent straight to a specialist."""
    wrong: tuple[Example, ...]
    """Sent straight to a specialist other than the labelled one (or labelled ``triage``)."""
    missed: tuple[Example, ...]
    """Labelled with a specialist, left to the triage model."""

    @property
    def coverage(self) -> float:
        """The share of clear questions routed directly (and rightly)."""
        return (self.clear - len(self.missed) - self._wrong_clear) / self.clear

    @property
    def _wrong_clear(self) -> int:
        return sum(example.expected != TRIAGE for example in self.wrong)


def load_examples(path: Path = QUESTIONS) -> list[Example]:
    rows = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Example(**row) for row in rows]


Router = Callable[[Example], str | None]


def measure(route: Router, examples: Sequence[Example]) -> Rates:
    wrong: list[Example] = []
    missed: list[Example] = []
    direct = 0
    for example in examples:
        chosen = route(example)
        if chosen is not None:
            direct += 1
            if chosen != example.expected:
                wrong.append(example)
        elif example.expected != TRIAGE:
            missed.append(example)
    clear = sum(example.expected != TRIAGE for example in examples)
    return Rates(len(examples), clear, direct, tuple(wrong), tuple(missed))


def by_words(example: Example) -> str | None:
    return direct_specialist(example.text)


def with_sample_search(examples: Sequence[Example]) -> Router:
    """A router that also sees what the sample profile's search finds, as the engine does."""
    search = SearchProfile(
        Bm25KnowledgeIndex(load_passages(SAMPLE_PROFILE)),
        disclosure=load_disclosure_policy(SAMPLE_PROFILE),
    )

    async def found_all() -> dict[str, tuple[RetrievedPassage, ...]]:
        return {e.text: (await search.search(e.text)).passages for e in examples}

    found = asyncio.run(found_all())
    return lambda example: direct_specialist(example.text, found[example.text])


def main() -> None:
    examples = load_examples()
    searched = with_sample_search(examples)
    for split in ("dev", "heldout"):
        chosen = [e for e in examples if e.split == split]
        for name, route in (("words", by_words), ("words+search", searched)):
            rates = measure(route, chosen)
            print(
                f"{split:8} {name:13} questions={rates.questions} clear={rates.clear} "
                f"direct={rates.direct} wrong={len(rates.wrong)} missed={len(rates.missed)} "
                f"coverage={rates.coverage:.0%}"
            )
            for example in rates.wrong:
                print(f"    wrong: {example.text!r} (expected {example.expected})")


if __name__ == "__main__":
    main()
