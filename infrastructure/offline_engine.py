"""An engine that needs no model: it answers by quoting the applicant's own documents.

It never writes a fact of its own: every statement it makes is a quoted line of a retrieved
passage with its source, or the fixed "not covered" answer with the applicant's contact.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator

from domain.models import AnswerDone, AnswerEvent, AnswerRequest, TextDelta
from domain.policy import Language, detect_language, not_covered_message, relevant
from domain.ports import KnowledgeIndex
from infrastructure.text_analysis import query_terms, tokenize

OFFLINE_MODEL = "offline"
MAX_QUOTED_LINES = 4

_INTRO: dict[Language, str] = {
    "ko": "지원자의 프로필 문서에서 찾은 내용입니다.",
    "en": "Here is what the applicant's profile says.",
}
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+")


class OfflineEngine:
    """Answers from the grounding alone, in the language of the question."""

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
        """The answer as the chunks it streams in: one per line, so markdown stays intact."""
        language = detect_language(request.question)
        hits = relevant(request.grounding)  # already chosen by the search
        if not hits:
            return _lines(not_covered_message(language, request.contact))
        # The question's terms and their glossary synonyms: "start" also picks the line
        # that says "입사 가능일" or "earliest start date".
        question_terms = query_terms(request.question)
        parts = [_INTRO[language]]
        for hit in hits:
            quoted = _best_lines(hit.passage.text, question_terms)
            # An overview section ("Projects") is best answered with what it contains.
            quoted += [f"- {title}" for title in self._knowledge.subsections(hit.passage)]
            parts.append("\n".join(f"> {line}" for line in quoted))
            number = request.grounding.index(hit) + 1
            parts.append(f"— [{number}] {hit.passage.citation}")
        return _lines("\n\n".join(parts))


def _best_lines(text: str, question_terms: set[str]) -> list[str]:
    """The lines of a passage that share the most terms with the question, in their order."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) == 1:
        lines = [s for s in _SENTENCE_END.split(lines[0]) if s]
    if len(lines) <= MAX_QUOTED_LINES:
        return lines
    ranked = sorted(
        range(len(lines)),
        key=lambda i: (-len(question_terms.intersection(tokenize(lines[i]))), i),
    )
    chosen = sorted(ranked[:MAX_QUOTED_LINES])
    return [lines[i] for i in chosen]


def _lines(text: str) -> list[str]:
    """One chunk per line of text; blank lines ride with the line before them."""
    chunks: list[str] = []
    for line in text.splitlines(keepends=True):
        if chunks and not line.strip():
            chunks[-1] += line
        else:
            chunks.append(line)
    return chunks
