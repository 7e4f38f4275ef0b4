"""The one search of the applicant's profile, used by the chat, the MCP tool and the agents.

Retrieve (lexical, and semantic when configured, fused), choose (the relevant passages, in
the recruiter's language when the profile has it) and apply the disclosure policy (a query
about something the service does not discuss finds nothing but a polite refusal). Callers
differ only in how many passages they want and which language and earlier questions apply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from domain.disclosure import DisclosurePolicy
from domain.models import Passage, RetrievedPassage
from domain.policy import (
    MAX_SOURCES,
    MIN_COVERAGE,
    Language,
    choose_sources,
    detect_language,
    fuse,
    nearest,
    passage_language,
)
from domain.ports import KnowledgeIndex, SearchResult, SemanticSearch

CANDIDATES = 4
"""Passages each retriever brings back for the choice, unless the caller asks for more."""

# A follow-up such as "and before that?" matches little by itself; below this coverage the
# previous question is searched along with it.
FOLLOW_UP_COVERAGE = MIN_COVERAGE

CONFIDENT_COVERAGE = 0.95
"""When the best lexical passage covers this much of the query (its terms, or their glossary
translations, all found), semantic search may be skipped: the embeddings call (a network round
trip before the model can be called) would only confirm it (``python -m bench.semantic_skip``
counts how often, and how often wrongly, on the evaluation sets)."""


def lexically_confident(
    hits: Sequence[RetrievedPassage],
    language: Language,
    *,
    follow_up: bool = False,
    twin: Callable[[Passage], Passage | None] | None = None,
) -> bool:
    """Whether lexical ranking answers a query in ``language`` well enough that embeddings
    are not asked.

    Only when the best passages (the first and any that cover the query as much) cover the
    whole query in the query's own language, each of them or its translation (``twin``, as
    ``KnowledgeIndex.twin``). A best passage in the other language matched through the
    glossary's translations, or tied with passages in the other language that say something
    else, leaves open which one holds the fact: the embeddings decide. Never for a follow-up
    (a question asked after others, or searched with the one before it): its words lean on
    the conversation, so covering them proves little.
    """
    if follow_up or not hits or hits[0].score < CONFIDENT_COVERAGE:
        return False
    tied = [hit.passage for hit in hits if hit.score >= hits[0].score]
    own = {passage for passage in tied if passage_language(passage) == language}
    return bool(own) and all(
        passage in own or (twin is not None and twin(passage) in own) for passage in tied
    )


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
        asked_in = detect_language(query)
        language = language or asked_in
        decline = self._disclosure.decline(query, language, self._knowledge.contact())
        if decline is not None:
            return SearchResult((), decline)
        depth = max(candidates or self._candidates, limit)
        follow_up = bool(earlier)
        hits = await self._retrieve(query, depth, asked_in, follow_up=follow_up)
        if earlier and (not hits or hits[0].score < FOLLOW_UP_COVERAGE):
            with_context = await self._retrieve(
                f"{earlier[-1]}\n{query}", depth, asked_in, follow_up=True
            )
            if with_context and (not hits or with_context[0].score > hits[0].score):
                hits = with_context
        chosen = choose_sources(hits, language, limit, self._knowledge.twin)
        # Nothing covers the query: the nearest passage, for an answer marked as unsure.
        return SearchResult(chosen, nearest=() if chosen else nearest(hits))

    async def _retrieve(
        self, query: str, limit: int, language: Language, *, follow_up: bool
    ) -> list[RetrievedPassage]:
        lexical = self._knowledge.search(query, limit)
        if self._semantic is None or lexically_confident(
            lexical, language, follow_up=follow_up, twin=self._knowledge.twin
        ):
            return lexical
        semantic = await self._semantic.similar(query, limit)
        return fuse(lexical, semantic, limit)
