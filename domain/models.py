"""The language of the product: questions, passages and the events an answer streams as."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from domain.errors import ErrorCode

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation. Only recruiters and the agent speak: no system turns."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Passage:
    """A self-contained piece of the applicant's documents, the unit of grounding."""

    source: str
    """Path of the document relative to the knowledge folder, e.g. ``en/resume.md``."""
    heading_path: tuple[str, ...]
    """Headings from the top of the document down to this passage."""
    text: str
    page: int | None = None
    """The 1-based page the passage is on, for PDFs; ``None`` for documents without pages."""

    @property
    def heading(self) -> str:
        return " > ".join(self.heading_path)

    @property
    def citation(self) -> str:
        """Where a reader finds the passage: ``resume.pdf p. 2 § Experience``."""
        where = self.source if self.page is None else f"{self.source} p. {self.page}"
        return f"{where} § {self.heading}" if self.heading_path else where


@dataclass(frozen=True, slots=True)
class RetrievedPassage:
    passage: Passage
    score: float
    """How much of the question the passage covers, from 0 (nothing) to 1 (every term)."""


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    total_tokens: int

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.total_tokens + other.total_tokens,
        )


def add_usage(first: Usage | None, second: Usage | None) -> Usage | None:
    """The tokens of both, ``None`` when neither reported any."""
    if first is None:
        return second
    return first if second is None else first + second


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    """Everything an engine needs to answer; built by the use case, never by a client."""

    messages: tuple[Message, ...]
    model: str
    grounding: tuple[RetrievedPassage, ...]
    contact: Passage | None = None
    nearest: tuple[RetrievedPassage, ...] = ()
    """When the grounding is empty: the passages that come nearest to the question, numbered
    after the grounding; an answer from them must say it is unsure."""

    @property
    def question(self) -> str:
        return self.messages[-1].content


# The answer stream: a closed union of small frozen events, as the Agents SDK's stream events.

RouteKind = Literal["direct", "triage"]


@dataclass(frozen=True, slots=True)
class AgentRoute:
    """Which of the agents answered, and how the question reached it: ``direct`` (the rule
    in ``domain/routing.py`` chose the specialist, no triage model call) or ``triage``."""

    agent: str
    route: RouteKind


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    type: Literal["text_delta"] = "text_delta"


@dataclass(frozen=True, slots=True)
class AnswerDone:
    finish_reason: str
    """``stop`` for a whole answer; the upstream's reason (e.g. ``max_output_tokens``) otherwise."""
    usage: Usage | None = None
    route: AgentRoute | None = None
    """With the agents engine: the agent that answered and how the question reached it."""
    type: Literal["done"] = "done"


@dataclass(frozen=True, slots=True)
class AnswerFailed:
    code: ErrorCode
    message: str
    """Safe to show a recruiter: never an upstream body, a key or a stack trace."""
    usage: Usage | None = None
    """The tokens the failed attempt still cost (model calls before the failure)."""
    route: AgentRoute | None = None
    """With the agents engine: the agent that was answering and how the question reached it."""
    type: Literal["failed"] = "failed"


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a recruiter should know about how an answer was produced."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class EngineSwitched:
    """The answer continues from another engine (before any text was sent)."""

    notice: Notice
    mode: str
    model: str
    usage: Usage | None = None
    """The tokens the first engine spent before it gave up: counted with the answer."""
    cause: ErrorCode | None = None
    """The failure of the engine it replaces (``upstream_auth``, ...), kept as evidence: counted
    in /metrics and stored as the answer's ``error_code``."""
    type: Literal["engine_switched"] = "engine_switched"


@dataclass(frozen=True, slots=True)
class AgentStep:
    """Something the agents did on the way to the answer, for clients that show progress."""

    kind: Literal["tool_call", "handoff"]
    name: str
    """The tool called (``search_profile``) or the specialist handed the question to."""
    route: RouteKind | None = None
    """For a handoff: ``direct`` when the routing rule chose the specialist without a model
    call, ``triage`` when the triage model did."""
    type: Literal["agent_step"] = "agent_step"


AnswerEvent = TextDelta | AnswerDone | AnswerFailed | EngineSwitched | AgentStep


@dataclass(frozen=True, slots=True)
class AnswerMeta:
    """What a client learns before the first token."""

    conversation_id: str
    model: str
    mode: str
    notice: Notice | None = None


@dataclass(slots=True)
class CollectedAnswer:
    """An answer read to its end, for clients that want JSON rather than a stream."""

    meta: AnswerMeta
    sources: tuple[Passage, ...] = ()
    text_parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    fallback_usage: Usage | None = None
    """The tokens an engine spent before it gave up and another answered."""
    declined: str | None = None
    """Why no engine answered: a protected category's id, or ``undisclosed``."""
    fallback_cause: ErrorCode | None = None
    """Why another engine answered in the configured one's place, if it did."""

    @property
    def text(self) -> str:
        return "".join(self.text_parts)


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A document that could not be read, and why, in a short phrase (``not UTF-8``,
    ``encrypted PDF``, ``no extractable text``, ``unreadable: PermissionError``)."""

    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What loading the knowledge folder gave: the passages, and the files left out."""

    passages: tuple[Passage, ...]
    skipped: tuple[SkippedFile, ...] = ()
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class ToolServerHealth:
    """How one outside MCP server (MCP_SERVERS) is doing, for operators."""

    name: str
    connected: bool
    tools: tuple[str, ...]
    """The tools it offers the agents now (within its allow-list); none while disconnected."""
    last_error: str | None
    """The type of the error that last dropped it or kept it from connecting; ``None`` once
    it connects again."""
    failures: int
    """Failed connections and checks since start-up."""
    since: datetime | None
    """When it last connected or failed; ``None`` before its first attempt ends."""


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether one request of a client is within its rate limit."""

    allowed: bool
    limit: int
    retry_after_seconds: int = 0
    """Whole seconds until the client may try again (at least 1 when refused, else 0)."""
