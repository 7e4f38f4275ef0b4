"""An engine that needs no model: it answers with the applicant's own sentences.

It never writes a fact of its own: every statement it makes is a sentence of a retrieved
passage, verbatim, with its [n]; the frame around them (the first line, the list of sources,
the unsure answer's note, the "not covered" answer with the contact) is fixed text in the
question's language.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from domain.models import AnswerDone, AnswerEvent, AnswerRequest, RetrievedPassage, TextDelta
from domain.policy import (
    Language,
    detect_language,
    not_covered_message,
    passage_language,
    relevant,
    unsure_intro,
    unsure_outro,
)
from domain.ports import KnowledgeIndex
from infrastructure.text_analysis import QueryWord, analyze_query, tokenize

OFFLINE_MODEL = "offline"
MAX_SENTENCES = 3
"""An answer is one to three sentences of the documents."""
MAX_LISTED = 8
"""A list that answers as a whole ("Certifications") is given as one sentence of this many items."""

_INTRO: dict[Language, dict[Language, str]] = {
    # The question's language, then the language of the sentences quoted.
    "ko": {
        "ko": "지원자의 문서에 따르면 다음과 같습니다.",
        "en": "지원자의 영문 문서에 따르면 다음과 같습니다(원문 인용).",
    },
    "en": {
        "en": "According to the applicant's documents:",
        "ko": "According to the applicant's Korean documents (quoted as written):",
    },
}
_SOURCES: dict[Language, str] = {"ko": "출처", "en": "Sources"}
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+")
_ABBREVIATIONS = frozenset(
    "dr mr mrs ms prof inc ltd co corp jr sr st vs etc approx no dept univ".split()
)
"""Words whose period ends no sentence ("Dr. Kim", "Hanbit Co. Ltd."): with "B.Eng." and
"Ph.D." (a period inside the word) and initials ("J. Lee")."""
_ITEM = re.compile(r"^(?:[-*+]|\d{1,2}[.)])\s+")
_QUESTION_LINE = re.compile(r"^(?:Q|질문)\s*[:：]|[?？]$")
_QUANTITY = re.compile(
    r"\bhow (?:much|many|long|fast|big|large|often|soon)\b|\bwhat percent|얼마|몇|어느 정도"
    r"|\b(?:results?|outcomes?|impact|effects?)\b|결과|성과|효과",
    re.IGNORECASE,
)
"""A question that asks for a figure, or for a result (which a profile states as one)."""
_FIGURE = re.compile(r"\d")
_ANSWER_LABEL = re.compile(r"^(?:A|답변?)\s*[:：]\s*")


@runtime_checkable
class _QueryWords(Protocol):
    """An index that reads a question's words against its own documents (romanised names and
    loanwords: ``Bm25KnowledgeIndex.query_words``)."""

    def query_words(self, query: str) -> list[QueryWord]: ...


@dataclass(frozen=True, slots=True)
class _Sentence:
    number: int
    """The [n] of the passage it comes from."""
    position: int
    text: str
    score: int
    """How many of the question's words (or their synonyms) it holds."""


class OfflineEngine:
    """Answers from the grounding alone, framed in the language of the question."""

    mode = "offline"

    def __init__(self, knowledge: KnowledgeIndex) -> None:
        self._knowledge = knowledge

    def model_for(self, requested: str) -> str:
        return OFFLINE_MODEL

    async def stream_answer(self, request: AnswerRequest) -> AsyncGenerator[AnswerEvent, None]:
        for chunk in self.compose(request):
            yield TextDelta(chunk)
        yield AnswerDone(finish_reason="stop", usage=None)

    def compose(self, request: AnswerRequest) -> list[str]:
        """The answer as the chunks it streams in: one per line, so markdown stays intact.

        The one to three sentences of the chosen passages that hold most of the question's
        words (and their glossary synonyms: "join" finds "Earliest start date"), each with
        its [n], then the sources cited, once. With no passage that covers the question, the
        nearest one's best sentence, marked as unsure, and the contact; with none near
        either, "not covered" and the contact.
        """
        language = detect_language(request.question)
        confident = relevant(request.grounding)
        unsure = not confident
        if confident:
            numbered = [(request.grounding.index(hit) + 1, hit) for hit in confident]
        else:
            after = len(request.grounding)
            numbered = [(after + i, hit) for i, hit in enumerate(request.nearest, start=1)]
        if not numbered:
            return _lines(not_covered_message(language, request.contact))
        words = (
            self._knowledge.query_words(request.question)
            if isinstance(self._knowledge, _QueryWords)
            else analyze_query(request.question)
        )
        sentences = self._answering(
            numbered, words, unsure=unsure, quantity=bool(_QUANTITY.search(request.question))
        )
        if not sentences:
            return _lines(not_covered_message(language, request.contact))
        by_number = dict(numbered)
        cited = list(dict.fromkeys(s.number for s in sentences))
        if unsure:
            intro = unsure_intro(language)
        else:
            quoted = {passage_language(by_number[n].passage) for n in cited}
            intro = _INTRO[language][language if language in quoted else quoted.pop()]
        lines = []
        introduced: set[int] = set()
        for sentence in sentences:
            heading_path = by_number[sentence.number].passage.heading_path
            # A section's first sentence says which section: the company, the project.
            label = ""
            if heading_path and sentence.number not in introduced:
                label = f"**{heading_path[-1]}**: "
                introduced.add(sentence.number)
            lines.append(f"- {label}{sentence.text} [{sentence.number}]")
        sources = "\n".join(f"— [{n}] {by_number[n].passage.citation}" for n in cited)
        parts = [intro, "\n".join(lines), f"{_SOURCES[language]}:\n{sources}"]
        if unsure:
            parts.append(unsure_outro(language, request.contact))
        return _lines("\n\n".join(parts))

    def _answering(
        self,
        numbered: Sequence[tuple[int, RetrievedPassage]],
        words: Sequence[QueryWord],
        *,
        unsure: bool,
        quantity: bool = False,
    ) -> list[_Sentence]:
        """The best sentence of the best passage, then the other passages' best sentences (and
        the best passage's next best) that hold at least half as many of the question's
        words, in the passages' order, at most ``MAX_SENTENCES``."""
        candidates: list[_Sentence] = []
        for rank, (number, hit) in enumerate(numbered):
            passage = hit.passage
            # Words the heading already holds (the project's name) tell less about which
            # sentence answers than the others ("결과", "learn").
            in_heading = _held(words, " ".join(passage.heading_path))
            texts = _sentences(passage.text)
            helds = [_held(words, text) for text in texts]
            # No sentence holds a word of the question: the passage answers through its
            # heading or the question before ("그 결과는 어땠나요?" after one about a project).
            through_heading = not any(helds)
            scored = []
            for position, (text, held) in enumerate(zip(texts, helds, strict=True)):
                # A word the heading lacks counts twice; one the heading has already, once.
                score = 2 * len(held - in_heading) + len(held & in_heading)
                # "How much …?", "얼마나 …?": a figure counts as one more word of the question.
                if quantity and (held or through_heading) and _FIGURE.search(text):
                    score += 2
                scored.append(_Sentence(number, position, text, score))
            if not scored:
                continue
            # Among equals, a question for a figure takes the sentence that states one.
            ordered = sorted(
                scored,
                key=lambda s: (
                    -s.score,
                    -(quantity and bool(_FIGURE.search(s.text))),
                    s.position,
                ),
            )
            subsections = self._knowledge.subsections(passage)
            if subsections:
                # An overview section ("Projects") answers with what it contains.
                listed = _Sentence(number, -1, _listing(subsections), ordered[0].score + 1)
                ordered.insert(0, listed)
            elif in_heading and all(s.score < len(in_heading) for s in scored):
                # The heading is what was asked ("Certifications", "기술 스택"): the section
                # answers as a whole, its items as one sentence.
                whole = _Sentence(number, -1, _listing(s.text for s in scored), 2 * len(in_heading))
                ordered.insert(0, whole)
            keep = 2 if rank == 0 and not unsure else 1
            candidates.extend(ordered[:keep])
        if not candidates:
            return []
        best, rest = candidates[0], candidates[1:]
        floor = max(1, (best.score + 1) // 2)
        # The others by how much of the question they hold, the passages' order among equals:
        # the best passage's second sentence does not crowd out another passage's better one.
        others = sorted((s for s in rest if s.score >= floor), key=lambda s: -s.score)
        chosen = [best, *others][:MAX_SENTENCES]
        return sorted(chosen, key=lambda s: (s.number, s.position))


def _held(words: Sequence[QueryWord], text: str) -> set[int]:
    """Which of the question's words a text holds, itself or as a synonym."""
    tokens = set(tokenize(text))
    return {
        index
        for index, word in enumerate(words)
        if any(terms and tokens.issuperset(terms) for terms in (word.terms, *word.alternatives))
    }


def _sentences(text: str) -> list[str]:
    """A passage's sentences: its list items and the sentences of its paragraphs, with the
    lines a list item or paragraph wraps over joined, a line that ends with a colon joined
    with the items it introduces, and a FAQ's question lines left out."""
    units: list[tuple[str, bool]] = []  # (text, is a list item)
    current: list[str] = []
    item = False
    for raw in [*text.splitlines(), ""]:
        line = raw.strip()
        question = bool(_QUESTION_LINE.search(line))
        starts = not line or question or _ITEM.match(line) or _ANSWER_LABEL.match(line)
        if starts:
            if current:
                units.append((" ".join(current), item))
            current, item = [], bool(_ITEM.match(line))
            if question or not line:
                continue
            line = _ANSWER_LABEL.sub("", _ITEM.sub("", line))
        current.append(line)
    joined: list[str] = []
    introducing = False
    for unit, is_item in units:
        if introducing and is_item:
            joined[-1] += f" {unit}" if joined[-1].endswith((":", "：")) else f"; {unit}"
            continue
        introducing = unit.endswith((":", "："))
        joined.append(unit)
    return [
        sentence
        for unit in joined
        for sentence in _split_sentences(unit)
        if sentence and not sentence.endswith(("?", "？"))
    ]


def _split_sentences(text: str) -> list[str]:
    """``text`` cut after each ., ! or ? that is followed by a space, except after an
    abbreviation: "Yonsei University — B.Eng. in Electrical Engineering" is one sentence."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        word = text[start : match.start()].rsplit(None, 1)[-1]
        if word.endswith(".") and _is_abbreviation(word[:-1]):
            continue
        sentences.append(text[start : match.start()])
        start = match.end()
    sentences.append(text[start:])
    return sentences


def _is_abbreviation(word: str) -> bool:
    bare = word.lstrip("(\"'")
    return (
        "." in bare
        or bare.lower() in _ABBREVIATIONS
        or (len(bare) == 1 and bare.isalpha() and bare.isupper())
    )


def _listing(items: Iterable[str]) -> str:
    chosen = [item.rstrip(".;,") for item in items][:MAX_LISTED]
    return "; ".join(chosen)


def _lines(text: str) -> list[str]:
    """One chunk per line of text; blank lines ride with the line before them."""
    chunks: list[str] = []
    for line in text.splitlines(keepends=True):
        if chunks and not line.strip():
            chunks[-1] += line
        else:
            chunks.append(line)
    return chunks
