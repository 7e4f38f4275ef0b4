"""Ports: what the application needs from the outside world, as ``typing.Protocol``."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Protocol

from domain.models import AnswerEvent, AnswerRequest, Passage, RetrievedPassage


class KnowledgeIndex(Protocol):
    """The applicant's documents, split into passages and searchable in Korean and English."""

    @property
    def passages(self) -> Sequence[Passage]: ...

    def search(self, query: str, limit: int) -> list[RetrievedPassage]:
        """Best passages for ``query``, best first, only those that share a term with it."""
        ...

    def subsections(self, passage: Passage) -> list[str]:
        """Titles of the headings directly under ``passage``'s heading, in document order."""
        ...

    def contact(self) -> Passage | None:
        """The passage that says how to reach the applicant, if the documents have one."""
        ...


class AnswerEngine(Protocol):
    """Something that answers a question from the grounding it is given, as a stream.

    The stream ends with exactly one ``AnswerDone`` or ``AnswerFailed``. Engines report
    failures as ``AnswerFailed`` events rather than exceptions, so that text already sent
    stays valid; closing the iterator early (the client left) must release upstream work.
    """

    @property
    def mode(self) -> str:
        """How the answer is produced, as announced to clients: ``offline``, ``openai``."""
        ...

    def model_for(self, requested: str) -> str:
        """The model that will actually answer when ``requested`` is asked for."""
        ...

    def stream_answer(self, request: AnswerRequest) -> AsyncGenerator[AnswerEvent, None]: ...
