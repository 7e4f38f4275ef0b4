"""The one search of the applicant's profile, used by the chat, the MCP tool and the agents.

Retrieve (lexical, and semantic when configured, fused), choose (the relevant passages, in
the recruiter's language when the profile has it) and apply the disclosure policy (a query
about something the service does not discuss finds nothing but a polite refusal). Callers
differ only in how many passages they want and which language and earlier questions apply.
"""

from __future__ import annotations

from collections.abc import Sequence

from domain.disclosure import DisclosurePolicy
from domain.models import RetrievedPassage
from domain.policy import (
    MAX_SOURCES,
    MIN_COVERAGE,
    Language,
    choose_sources,
    detect_language,
    fuse,
    nearest,
)
from domain.ports import KnowledgeIndex, SearchResult, SemanticSearch

CANDIDATES = 4
"""Passages each retriever brings back for the choice, unless the caller asks for more."""

# A follow-up such as "and before that?" matches little by itself; below this coverage the
# previous question is searched along with it.
FOLLOW_UP_COVERAGE = MIN_COVERAGE

CONFIDENT_COVERAGE = 0.95
"""When the best lexical passage covers this much of the query (its terms, or their glossary
translations, all found), semantic search is not asked: the embeddings call (a network round
trip before the model can be called) would only confirm it. Half the evaluation set's
questions skip it (and a tenth are declined before any search); all but one of the answerable
ones among them find an acceptable source lexically (``python -m bench.semantic_skip``)."""


def lexically_confident(hits: Sequence[RetrievedPassage]) -> bool:
    """Whether lexical ranking answers the query well enough that embeddings are not asked."""
    return bool(hits) and hits[0].score >= CONFIDENT_COVERAGE


class SearchProfile:
    """Finds the passages of the applicant's documents that may be shown for a query.

    The chat grounds its answers with it, the MCP server's ``search_profile`` tool returns
    what it finds, and the agents look facts up with it (through the ``ProfileSearch``
    port), so every caller sees the same passages and declines the same topics.
    """

    def __init__(
        self,
        knowledge: KnowledgeIndex,
        *,
        semantic: SemanticSearch | None = None,
        disclosure: DisclosurePolicy | None = None,
        candidates: int = CANDIDATES,
    ) -> None:
        self._knowledge = knowledge
        self._semantic = semantic
        self._disclosure = disclosure or DisclosurePolicy()
        self._candidates = candidates

    async def search(
        self,
        query: str,
        *,
        limit: int = MAX_SOURCES,
        candidates: int | None = None,
        language: Language | None = None,
        earlier: Sequence[str] = (),
    ) -> SearchResult:
        """At most ``limit`` passages that cover ``query``, best first, in ``language`` (the
        query's when ``None``) when the profile has them.

        ``candidates`` is how many passages each retriever brings before the choice (at
        least ``limit``). ``earlier`` are the recruiter's earlier questions, oldest first: a
        follow-up that matches little by itself is also searched with the last of them.
        """
        language = language or detect_language(query)
        decline = self._disclosure.decline(query, language, self._knowledge.contact(language))
        if decline is not None:
            return SearchResult((), decline)
        depth = max(candidates or self._candidates, limit)
        hits = await self._retrieve(query, depth)
        if earlier and (not hits or hits[0].score < FOLLOW_UP_COVERAGE):
            with_context = await self._retrieve(f"{earlier[-1]}\n{query}", depth)
            if with_context and (not hits or with_context[0].score > hits[0].score):
                hits = with_context
        chosen = choose_sources(hits, language, limit, self._knowledge.twin)
        # Nothing covers the query: the nearest passage, for an answer marked as unsure.
        return SearchResult(chosen, nearest=() if chosen else nearest(hits))

    async def _retrieve(self, query: str, limit: int) -> list[RetrievedPassage]:
        lexical = self._knowledge.search(query, limit)
        if self._semantic is None or lexically_confident(lexical):
            return lexical
        semantic = await self._semantic.similar(query, limit)
        return fuse(lexical, semantic, limit)
