"""Ports: what the application needs from the outside world, as ``typing.Protocol``."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from domain.conversation import (
    Conversation,
    ConversationSummary,
    FinishedAnswer,
    Insights,
    Page,
    PendingAnswer,
    SpoolState,
)
from domain.disclosure import Decline
from domain.models import (
    AnswerEvent,
    AnswerRequest,
    LoadReport,
    Message,
    Passage,
    RateDecision,
    RetrievedPassage,
    ToolServerHealth,
)
from domain.policy import MAX_SOURCES, Language


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

    def contact(self, language: Language | None = None) -> Passage | None:
        """The passage that says how to reach the applicant, if the documents have one: in
        ``language`` when they have one in it (a Korean answer ends with the Korean contact
        block), else the first one."""
        ...

    def twin(self, passage: Passage) -> Passage | None:
        """``passage``'s translation in the other language, when the profile has one (only on
        real evidence: a one-language profile has none), so that the choice of sources shows
        a fact once without dropping a passage that says something else."""
        ...


class KnowledgeLibrary(Protocol):
    """The folder the documents are loaded from, for the applicant: what was loaded, and a
    rebuild on demand."""

    @property
    def report(self) -> LoadReport: ...

    async def reload(self) -> LoadReport:
        """Read the folder again; raise ``KnowledgeReloadFailed`` and keep the documents
        loaded before when that is not possible."""
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


class ConversationRepository(Protocol):
    """Where conversations live. Each call is its own short transaction: no session stays
    open while an answer streams.

    Every method raises ``StorageUnavailable`` when the store cannot be used, so that an
    outage is a 503 wherever it strikes. Times come back in UTC. A conversation's latest
    activity is its latest question or answer: it orders the list and decides what is purged.
    ``tests/contract`` checks every implementation against these rules.
    """

    async def get(self, conversation_id: str) -> Conversation | None:
        """The conversation with its turns in the order they were asked; ``None`` if unknown."""
        ...

    async def begin_turn(
        self,
        conversation_id: str,
        question: str,
        *,
        covered: bool,
        new_conversation: bool,
        earlier: Sequence[Message] = (),
    ) -> int:
        """Store a question before it is answered; returns the turn's id, unique in the store.

        With ``new_conversation`` the conversation is created first, with ``earlier``
        (turns a client sent along) stored as its first turns, marked ``source`` ``client``:
        their answers are the client's, not this service's. A new conversation whose id is
        taken, or a next turn of a conversation that does not exist, is refused with
        ``StorageUnavailable`` and changes nothing.
        """
        ...

    async def continue_conversation(
        self, conversation_id: str, question: str
    ) -> tuple[Conversation, int] | None:
        """Store the next question of a stored conversation, reading its earlier turns in the
        same transaction (one trip to the database before the answer starts).

        Returns the conversation as it was before this question, and the new turn's id;
        ``None`` if there is no such conversation. The turn counts as covered until
        ``finish_turn`` says otherwise.
        """
        ...

    async def finish_turn(
        self, turn_id: int, answer: FinishedAnswer, covered: bool | None = None
    ) -> None:
        """Write the answer once, however the stream ended (and ``covered``, if known only
        now). Must complete even while the calling task is being cancelled (the client left).
        The answer to a turn that is gone (its conversation was purged meanwhile) is dropped."""
        ...

    async def list_conversations(self, offset: int, limit: int) -> Page[ConversationSummary]:
        """Latest activity first, then by id, so pages neither overlap nor skip; a summary's
        first question is the first one asked, not a greeting a client sent along, and it
        counts the turns a client sent along (``client_turns``)."""
        ...

    async def insights(self, since: datetime, limit: int) -> Insights:
        """What was asked from ``since`` on: the ``limit`` most repeated questions (repeats
        counted by ``question_key``), the ``limit`` latest the documents did not cover, the
        answers per UTC day and the tokens they took. Turns with no question do not count,
        nor, among the answers, those a client sent along."""
        ...

    async def purge_before(self, cutoff: datetime) -> int:
        """Delete conversations last active before ``cutoff``; returns how many."""
        ...

    async def check(self) -> None:
        """Raise if the store cannot be used."""
        ...


class AnswerSpool(Protocol):
    """A durable place on local disk for answers the conversation store could not take when
    their stream ended (the database down or frozen), until it can: an answer delivered is an
    answer stored. What it holds survives a restart of the process.

    Keyed by turn: keeping a turn's answer again replaces it, so writing one back twice (the
    store's write landed after all, then the replay) changes nothing.
    """

    async def keep(self, pending: PendingAnswer) -> None:
        """Hold ``pending`` durably (on disk when this returns); must complete even while the
        calling task is being cancelled, as ``finish_turn`` must."""
        ...

    async def oldest(self, limit: int, due_by: float = math.inf) -> Sequence[PendingAnswer]:
        """At most ``limit`` of the answers held, the first kept first: those not set aside
        whose next try is due by ``due_by`` (``time.time()`` seconds; any by default)."""
        ...

    async def forget(self, turn_ids: Sequence[int]) -> None:
        """Drop the answers of ``turn_ids``: they are in the conversation store now."""
        ...

    async def failed(self, turn_id: int, retry_at: float) -> None:
        """Note that writing ``turn_id``'s answer back failed (the store took others): its
        ``failures`` grow by one, and it is not due again before ``retry_at``. Keeping the
        turn's answer again starts afresh."""
        ...

    async def set_aside(self, turn_id: int) -> None:
        """Keep ``turn_id``'s answer on disk but never offer it again (``oldest``): it failed
        too often to be worth retrying, and an operator can look at it."""
        ...

    async def state(self) -> SpoolState:
        """How many answers are pending and set aside, and when the next retry is due."""
        ...


class TokenBudget(Protocol):
    """The applicant's daily spending cap on model tokens, shared by every replica."""

    async def exhausted(self) -> bool:
        """Whether today's (UTC) tokens are spent; answers then come from the offline engine."""
        ...

    async def spend(self, tokens: int) -> None: ...


class SemanticSearch(Protocol):
    """Finds passages close in meaning to a question, in any language (embeddings)."""

    async def similar(self, query: str, limit: int) -> list[RetrievedPassage]:
        """Best passages first, each scored on the same scale as lexical coverage (0.5 is
        the line of relevance); an empty list when the service cannot be used right now."""
        ...


@dataclass(frozen=True, slots=True)
class SearchResult:
    """What a search of the profile found: the passages that may be shown, best first, or
    the polite refusal that replaces them when the query is about something not discussed."""

    passages: tuple[RetrievedPassage, ...]
    decline: Decline | None = None
    nearest: tuple[RetrievedPassage, ...] = ()
    """When no passage covers the query: the one that comes nearest (``NEAREST_COVERAGE``),
    for an answer that says what it found, marked as unsure, instead of a bare refusal."""


class ProfileSearch(Protocol):
    """The one search of the applicant's profile (``application.search.SearchProfile``), for
    adapters that search on a model's behalf (the agents' ``search_profile`` tool): the same
    retrieval, choice of sources and disclosure policy as the chat."""

    async def search(
        self,
        query: str,
        *,
        limit: int = MAX_SOURCES,
        candidates: int | None = None,
        language: Language | None = None,
        earlier: Sequence[str] = (),
    ) -> SearchResult:
        """At most ``limit`` passages that cover ``query``, in ``language`` (the query's when
        ``None``) when the profile has them; ``candidates`` is how many each retriever
        brings before the choice; ``earlier`` are the recruiter's earlier questions, searched
        with a follow-up that matches little by itself."""
        ...


class RateLimiter(Protocol):
    """Counts each client's requests against a per-minute limit."""

    @property
    def limit(self) -> int: ...

    async def hit(self, client: str) -> RateDecision:
        """Count one request of ``client`` and say whether it is within the limit."""
        ...


class NamedToolServer(Protocol):
    @property
    def name(self) -> str: ...


class ToolServerWatcher(Protocol):
    """Told of a server's health each time it changes (the metrics)."""

    def tool_server_changed(self, health: ToolServerHealth) -> None: ...


class ToolServers(Protocol):
    """The outside MCP servers whose tools the agents may use, kept connected."""

    def connected(self) -> Sequence[NamedToolServer]:
        """The servers connected now (one that dropped is left out until it is back)."""
        ...

    def health(self) -> Sequence[ToolServerHealth]:
        """Every configured server, connected or not, with the tools it offers."""
        ...

    def watch(self, watcher: ToolServerWatcher) -> None:
        """Tell ``watcher`` every server's health now and whenever it changes."""
        ...


LoggedEvent = tuple[int, str | None, str]
"""One encoded event of an answer, as the answer log keeps it: its number (from 1, in the
order the answer sent them), its SSE event name (``None`` for an unnamed event) and data."""


@dataclass(frozen=True, slots=True)
class LoggedAnswer:
    """An answer the log keeps: in flight, or ended a short while ago."""

    answer_id: str
    protocol: str
    """How its events are encoded: ``sse`` (the native stream) or ``ui`` (the AI SDK's)."""


class AnswerLog(Protocol):
    """The encoded events of the answers in flight, kept so that a client whose connection
    dropped can read the rest (``application.resume``): in this process, or in Redis, where
    any replica can read them. An answer is found by its keys (``conversation:<id>``,
    ``chat:<id>``) and forgotten shortly after it ends.

    Writing never waits and never fails: a log that cannot keep an answer (Redis down) costs
    the resume, never the answer being sent. ``tests/contract`` runs these rules against
    every implementation.
    """

    def open(self, answer: LoggedAnswer, keys: Sequence[str]) -> None:
        """Start keeping ``answer``, found by each of ``keys`` from now on (a key names the
        latest answer opened with it)."""
        ...

    def append(self, answer_id: str, event: str | None, data: str) -> None:
        """Keep the answer's next event; it is numbered one more than the previous one."""
        ...

    def end(self, answer_id: str) -> None:
        """The answer sent its last event (or was cut short): readers stop after it, and the
        log forgets the answer shortly after."""
        ...

    async def find(self, key: str) -> LoggedAnswer | None:
        """The answer ``key`` names, if the log still keeps it."""
        ...

    async def read(self, answer_id: str, after: int = 0) -> AsyncIterator[LoggedEvent] | None:
        """The answer's events numbered above ``after``, waiting for those not sent yet, until
        its end; ``None`` if the log no longer keeps it. Raises ``ResumeUnavailable`` if the
        events after ``after`` are no longer all kept. Closing the iterator detaches the
        reader."""
        ...

    async def reader_attached(self, answer_id: str) -> bool:
        """Whether someone, in this process or another, is reading the answer now."""
        ...

    async def request_stop(self, answer_id: str) -> None:
        """Ask the process that runs the answer to stop it (a client pressed Stop)."""
        ...

    async def stop_requested(self, answer_id: str) -> bool:
        """Whether a client asked for the answer to stop, through any process."""
        ...
