"""Conversations: what was asked and answered, and the rules for remembering it."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Generic, Literal, TypeVar

from domain.models import Message, Usage

CONVERSATION_ID_PATTERN = r"^[A-Za-z0-9_-]{22}$"
"""A conversation id's shape: ``secrets.token_urlsafe(16)``, 22 URL-safe characters."""
_CONVERSATION_ID = re.compile(CONVERSATION_ID_PATTERN)


def is_conversation_id(text: str) -> bool:
    """Whether ``text`` has the shape of an id this service issues; anything else names no
    conversation, so it is refused before any query."""
    return _CONVERSATION_ID.fullmatch(text) is not None


def unstorable_text(text: str) -> str | None:
    """What makes a client's ``text`` unfit to store or to send to a model, or ``None``.

    A NUL character or an unpaired surrogate (JSON can spell both) is no text a recruiter
    meant, and not every database or provider accepts it: such input is refused.
    """
    if "\x00" in text:
        return "contains a NUL character (\\u0000): remove it"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return (
            "contains an unpaired surrogate (such as \\ud800), which is not a character: "
            "send valid Unicode text"
        )
    return None


AnswerStatus = Literal["completed", "incomplete", "failed", "interrupted", "declined"]
"""How an answer ended: whole; cut short by the model (e.g. its token limit); failed
upstream; interrupted because the client went away or the server stopped; or declined: the
question was not for any engine (a protected characteristic, a topic the applicant keeps
private), and a polite refusal was the answer."""


TurnSource = Literal["service", "client"]
"""Where a turn came from: ``service``, asked here and answered by this service; ``client``,
an earlier turn a client sent along with a new conversation's first question (the client's
history, maybe from elsewhere: its answer is not this service's words)."""


@dataclass(frozen=True, slots=True)
class FinishedAnswer:
    """An answer as it ended, written once when its stream ends, however it ends."""

    text: str
    status: AnswerStatus
    model: str
    finish_reason: str | None = None
    error_code: str | None = None
    usage: Usage | None = None
    agent: str | None = None
    """With the agents engine: the agent that answered (a specialist, or ``triage``)."""
    route: str | None = None
    """With the agents engine: ``direct`` (the routing rule chose the specialist, no triage
    model call) or ``triage``."""


@dataclass(frozen=True, slots=True)
class PendingAnswer:
    """An answer the conversation store could not take when its stream ended, kept aside
    (``AnswerSpool``) until it can be written to its turn."""

    turn_id: int
    answer: FinishedAnswer
    covered: bool | None = None
    """A follow-up's coverage, known only with its answer; ``None`` leaves the turn's as is."""
    failures: int = 0
    """How often writing it back has failed while the store took other answers."""


@dataclass(frozen=True, slots=True)
class SpoolState:
    """What an ``AnswerSpool`` holds: answers still to be written back, and answers set aside
    after too many failed writes (kept on disk for an operator, never retried by themselves)."""

    pending: int = 0
    set_aside: int = 0
    next_retry_at: float | None = None
    """When the earliest pending answer that failed may be tried again (``time.time()``
    seconds); ``None`` if none waits."""


@dataclass(frozen=True, slots=True)
class Turn:
    """One question and its answer; ``answer`` is ``None`` while the answer is streaming."""

    id: int
    question: str
    asked_at: datetime
    covered: bool
    """Whether the applicant's documents had passages that cover the question."""
    answer: FinishedAnswer | None = None
    answered_at: datetime | None = None
    source: TurnSource = "service"


@dataclass(frozen=True, slots=True)
class StoredMessage:
    role: Literal["user", "assistant"]
    content: str
    status: AnswerStatus
    created_at: datetime
    source: TurnSource = "service"


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    created_at: datetime
    turns: tuple[Turn, ...] = ()

    def messages(self) -> list[StoredMessage]:
        """The conversation as a chat shows it, oldest first."""
        messages: list[StoredMessage] = []
        for turn in self.turns:
            if turn.question:
                messages.append(
                    StoredMessage("user", turn.question, "completed", turn.asked_at, turn.source)
                )
            answer, answered_at = turn.answer, turn.answered_at
            if answer is not None and answered_at is not None:
                messages.append(
                    StoredMessage("assistant", answer.text, answer.status, answered_at, turn.source)
                )
        return messages

    def turn_pairs(self) -> list[tuple[str, str]]:
        """Every (question, answer) turn, oldest first; an answer still streaming is empty."""
        return [(t.question, t.answer.text if t.answer else "") for t in self.turns]

    def history(self, budget_chars: int) -> tuple[Message, ...]:
        """The latest turns that fit in ``budget_chars``, as input for the next answer."""
        return fit_history(self.turn_pairs(), budget_chars)


def fit_history(pairs: Sequence[tuple[str, str]], budget_chars: int) -> tuple[Message, ...]:
    """Whole (question, answer) turns, newest kept first, within ``budget_chars``.

    So a long chat never overflows a model's context. Partial answers stay in: the
    recruiter saw them. Empty questions or answers are left out.
    """
    kept: list[tuple[Message, ...]] = []
    used = 0
    for question, answer in reversed(pairs):
        size = len(question) + len(answer)
        if used + size > budget_chars:
            break
        used += size
        turn = (Message("user", question), Message("assistant", answer))
        kept.append(tuple(message for message in turn if message.content))
    return tuple(message for pair in reversed(kept) for message in pair)


def turns_from_messages(messages: Sequence[Message]) -> list[tuple[str, str]]:
    """Earlier (question, answer) pairs sent by a client, for storing a new conversation.

    A leading assistant message (a greeting) becomes a turn with no question.
    """
    pairs: list[tuple[str, list[str]]] = []
    for message in messages:
        if message.role == "user":
            pairs.append((message.content, []))
        elif not pairs:
            pairs.append(("", [message.content]))
        else:
            pairs[-1][1].append(message.content)
    return [(question, "\n\n".join(answers)) for question, answers in pairs]


T = TypeVar("T")
_NOT_WORD = re.compile(r"[^\w]+")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def utf8_text(text: str) -> str:
    """``text`` as UTF-8 can carry it. A model's JSON may escape half a surrogate pair (a
    Python ``str`` then holds a lone surrogate, which no UTF-8 response or column can take):
    the halves of a pair split across deltas are joined into their character, and each
    surrogate left alone becomes U+FFFD. Everything else is kept exactly."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def storable_text(text: str) -> str:
    """``text`` as every store keeps it: NUL, which PostgreSQL refuses in text, dropped; lone
    surrogates as ``utf8_text`` makes them. Everything else, Korean, emoji and layout
    included, is kept exactly."""
    if _UNSTORABLE.search(text) is None:
        return text
    return utf8_text(text).replace("\x00", "")


def question_key(question: str) -> str:
    """A question reduced for counting repeats: case, spacing and punctuation do not matter."""
    normalized = unicodedata.normalize("NFKC", question).casefold()
    return " ".join(_NOT_WORD.sub(" ", normalized).split())[:200]


# Reading what recruiters asked, for the applicant.


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    id: str
    created_at: datetime
    updated_at: datetime
    turns: int
    first_question: str
    client_turns: int = 0
    """How many of ``turns`` a client sent along (``source`` ``client``)."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    total: int


@dataclass(frozen=True, slots=True)
class QuestionCount:
    question: str
    count: int


@dataclass(frozen=True, slots=True)
class UnansweredQuestion:
    question: str
    conversation_id: str
    asked_at: datetime


@dataclass(frozen=True, slots=True)
class DailyAnswers:
    day: date
    answers: int


@dataclass(frozen=True, slots=True)
class Insights:
    since: datetime
    top_questions: tuple[QuestionCount, ...]
    unanswered_questions: tuple[UnansweredQuestion, ...]
    answers_per_day: tuple[DailyAnswers, ...]
    tokens: Usage
