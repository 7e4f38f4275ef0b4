"""The one search of the applicant's profile, used by the chat, the MCP tool and the agents.

Retrieve (lexical, and semantic when configured, fused), choose (the relevant passages, in
the recruiter's language when the profile has it) and apply the disclosure policy (a query
about something the service does not discuss finds nothing but a polite refusal). Callers
differ only in how many passages they want and which language and earlier questions apply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from domain.disclosure import DisclosurePolicy
from domain.follow_up import Entry, anchor, asks_before, leans_on_previous, preceding, timeline
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
from domain.topics import applicant_names, profile_topic, topic_passages

CANDIDATES = 4
"""Passages each retriever brings back for the choice, unless the caller asks for more."""

# A follow-up such as "and before that?" matches little by itself; below this coverage the
# previous question is searched along with it.
FOLLOW_UP_COVERAGE = MIN_COVERAGE

FOLLOW_UP_CHAIN = 3
"""How many earlier questions a "before that" may walk back through ("Where does she work
now?", "And before that?", "And before that?"): each step searches the one before it."""

BEFORE_DEPTH = 10
"""How many passages of the previous question's lexical search may point at the entry it was
about, when the passages it was answered with do not (across languages)."""

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
        self._timeline: tuple[Sequence[Passage] | None, list[Entry], frozenset[str]] = (
            None,
            [],
            frozenset(),
        )

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
        hits = await self.ranked(query, depth=depth, language=language, earlier=earlier)
        chosen = choose_sources(hits, language, limit, self._knowledge.twin)
        # Nothing covers the query: the nearest passage, for an answer marked as unsure.
        return SearchResult(chosen, nearest=() if chosen else nearest(hits))

    async def ranked(
        self,
        query: str,
        *,
        depth: int = CANDIDATES,
        language: Language | None = None,
        earlier: Sequence[str] = (),
    ) -> list[RetrievedPassage]:
        """The passages the choice is made from, best first, each with its coverage: what
        the service retrieves for ``query`` (at most ``depth`` per retriever), follow-ups and
        questions about the whole profile resolved as ``search`` resolves them. No disclosure
        policy here: ``search`` applies it first. The evaluation measures recall on it."""
        asked_in = detect_language(query)
        language = language or asked_in
        if earlier and asks_before(query):
            entry = await self._before(earlier[-FOLLOW_UP_CHAIN:])
            if entry is not None:
                return [RetrievedPassage(passage, 1.0) for passage in entry.grounding]
        follow_up = bool(earlier)
        hits = await self._retrieve(query, depth, asked_in, follow_up=follow_up)
        if earlier and (not hits or hits[0].score < FOLLOW_UP_COVERAGE):
            with_context = await self._retrieve(
                f"{earlier[-1]}\n{query}", depth, asked_in, follow_up=True
            )
            if with_context and (not hits or with_context[0].score > hits[0].score):
                hits = with_context
        elif earlier and leans_on_previous(query):
            hits = self._on_the_same_subject(hits, f"{earlier[-1]}\n{query}", depth)
        topic = profile_topic(query, self._profile()[1])
        if topic is not None:
            # A question about the whole profile: its summary, employers or current job.
            sections = topic_passages(topic, self._knowledge.passages, self._entries())
            own_language = [p for p in sections if passage_language(p) == language]
            sections = own_language or sections
            if sections:
                hits = [RetrievedPassage(passage, 1.0) for passage in sections]
        return hits

    def _on_the_same_subject(
        self, hits: list[RetrievedPassage], with_previous: str, depth: int
    ) -> list[RetrievedPassage]:
        """``hits`` that cover the follow-up, those that also match the previous question
        first ("팀 규모는 어땠나요?" after a question about one company: that company's team),
        each keeping its own coverage; the others after them, as they were. Lexical only: the
        previous subject is in its words, and a second embeddings call would delay the answer."""
        covering = [hit for hit in hits if hit.score >= MIN_COVERAGE]
        if len(covering) < 2:
            return hits
        context = {
            hit.passage: rank
            for rank, hit in enumerate(self._knowledge.search(with_previous, 2 * depth))
        }
        reordered = sorted(covering, key=lambda hit: context.get(hit.passage, len(context)))
        return reordered + [hit for hit in hits if hit.score < MIN_COVERAGE]

    async def _before(self, earlier: Sequence[str]) -> Entry | None:
        """The profile's entry (a job, a role, a project) that precedes the one the last of
        ``earlier`` was answered with, found again by searching it with its own earlier
        questions."""
        previous = await self.search(earlier[-1], earlier=earlier[:-1])
        if previous.decline is not None:
            return None  # a topic the service does not discuss is not walked back from
        answered_with = [hit.passage for hit in (*previous.passages, *previous.nearest)]
        retrieved = [hit.passage for hit in self._knowledge.search(earlier[-1], BEFORE_DEPTH)]
        entries = self._entries()
        found = anchor(entries, earlier[-1], answered_with, retrieved)
        return preceding(entries, found) if found is not None else None

    def _entries(self) -> list[Entry]:
        return self._profile()[0]

    def _profile(self) -> tuple[list[Entry], frozenset[str]]:
        """The profile's timeline and the words that name the applicant, rebuilt when the
        documents are (a reload swaps them)."""
        passages = self._knowledge.passages
        built_from, entries, names = self._timeline
        if built_from is not passages:
            entries = timeline(passages)
            names = applicant_names(passages, self._knowledge.contact())
            self._timeline = (passages, entries, names)
        return entries, names

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
