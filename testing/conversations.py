"""Conversations in a dict, with the same rules as the SQL repository.

The service keeps conversations in its database; this serves the tests (``tests.fakes``)
and the storage benchmark's baseline (``bench.serve``), which measures the app without one.
``tests/contract`` runs the same suite against both, so the rules cannot drift apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from domain.conversation import (
    Conversation,
    ConversationSummary,
    DailyAnswers,
    FinishedAnswer,
    Insights,
    Page,
    QuestionCount,
    Turn,
    UnansweredQuestion,
    question_key,
    storable_text,
    turns_from_messages,
)
from domain.errors import StorageUnavailable
from domain.models import Message, Usage


def utc_now() -> datetime:
    return datetime.now(UTC)


class InMemoryConversations:
    """``ConversationRepository`` in a dict, with the same rules as the SQL one.

    ``conversations`` and ``finished`` (every answer written, in order) are there for tests
    to read. ``now`` tells the time turns are stamped with.
    """

    def __init__(self, *, now: Callable[[], datetime] = utc_now) -> None:
        self.conversations: dict[str, Conversation] = {}
        self.finished: list[tuple[int, FinishedAnswer]] = []
        self._now = now
        self._updated_at: dict[str, datetime] = {}
        """When each conversation was last active: its latest question or answer."""
        self._next_turn = 1

    async def get(self, conversation_id: str) -> Conversation | None:
        return self.conversations.get(conversation_id)

    async def begin_turn(
        self,
        conversation_id: str,
        question: str,
        *,
        covered: bool,
        new_conversation: bool,
        earlier: Sequence[Message] = (),
    ) -> int:
        question = storable_text(question)
        now = self._utc_now()
        exists = conversation_id in self.conversations
        # As the database's keys do: a new conversation's id must be free, a next turn's taken.
        if (new_conversation and exists) or (not new_conversation and not exists):
            raise StorageUnavailable()
        if new_conversation:
            self.conversations[conversation_id] = Conversation(conversation_id, now)
            for earlier_question, earlier_answer in turns_from_messages(earlier):
                answer = FinishedAnswer(storable_text(earlier_answer), "completed", "")
                turn = Turn(
                    self._take_id(),
                    storable_text(earlier_question),
                    now,
                    True,
                    answer,
                    now,
                    source="client",
                )
                self._append(conversation_id, turn)
        turn_id = self._take_id()
        self._append(conversation_id, Turn(turn_id, question, now, covered))
        self._updated_at[conversation_id] = now
        return turn_id

    async def continue_conversation(
        self, conversation_id: str, question: str
    ) -> tuple[Conversation, int] | None:
        before = self.conversations.get(conversation_id)
        if before is None:
            return None
        now = self._utc_now()
        turn_id = self._take_id()
        self._append(conversation_id, Turn(turn_id, storable_text(question), now, True))
        self._updated_at[conversation_id] = now
        return before, turn_id

    async def finish_turn(
        self, turn_id: int, answer: FinishedAnswer, covered: bool | None = None
    ) -> None:
        answer = replace(answer, text=storable_text(answer.text))
        self.finished.append((turn_id, answer))
        now = self._utc_now()
        for conversation_id, conversation in self.conversations.items():
            if any(turn.id == turn_id for turn in conversation.turns):
                turns = tuple(
                    replace(
                        turn,
                        answer=answer,
                        answered_at=now,
                        covered=turn.covered if covered is None else covered,
                    )
                    if turn.id == turn_id
                    else turn
                    for turn in conversation.turns
                )
                self.conversations[conversation_id] = replace(conversation, turns=turns)
                self._updated_at[conversation_id] = now
                return

    async def list_conversations(self, offset: int, limit: int) -> Page[ConversationSummary]:
        # Latest activity first; those active at the same moment by id.
        by_id = sorted(self.conversations.values(), key=lambda c: c.id)
        ordered = sorted(by_id, key=lambda c: self._updated_at[c.id], reverse=True)
        items = tuple(
            ConversationSummary(
                c.id,
                c.created_at,
                self._updated_at[c.id],
                len(c.turns),
                next((t.question for t in c.turns if t.question), ""),
                sum(t.source == "client" for t in c.turns),
            )
            for c in ordered[offset : offset + limit]
        )
        return Page(items, len(ordered))

    async def insights(self, since: datetime, limit: int) -> Insights:
        stored = [(c.id, turn) for c in self.conversations.values() for turn in c.turns]
        # A turn with no question (a greeting a client sent along) was not asked.
        asked = [(c, turn) for c, turn in stored if turn.question and turn.asked_at >= since]
        repeats: dict[str, list[str]] = {}
        for _, turn in asked:
            repeats.setdefault(question_key(turn.question), []).append(turn.question)
        top = sorted(
            (QuestionCount(min(questions), len(questions)) for questions in repeats.values()),
            key=lambda q: (-q.count, q.question),
        )
        # Latest first; asked at the same moment, the later turn first.
        unanswered = sorted(
            (
                (c, turn)
                for c, turn in asked
                if not turn.covered and not (turn.answer and turn.answer.status == "declined")
            ),
            key=lambda pair: (pair[1].asked_at, pair[1].id),
            reverse=True,
        )
        answered = [turn for _, turn in stored if turn.answered_at and turn.answered_at >= since]
        per_day = Counter(
            turn.answered_at.astimezone(UTC).date()
            for turn in answered
            if turn.answered_at and turn.answer and turn.question and turn.source == "service"
        )
        usages = [turn.answer.usage for turn in answered if turn.answer and turn.answer.usage]
        return Insights(
            since=since,
            top_questions=tuple(top[:limit]),
            unanswered_questions=tuple(
                UnansweredQuestion(turn.question, c, turn.asked_at)
                for c, turn in unanswered[:limit]
            ),
            answers_per_day=tuple(DailyAnswers(day, per_day[day]) for day in sorted(per_day)),
            tokens=Usage(
                sum(u.input_tokens for u in usages),
                sum(u.output_tokens for u in usages),
                sum(u.total_tokens for u in usages),
            ),
        )

    async def purge_before(self, cutoff: datetime) -> int:
        expired = [i for i, updated_at in self._updated_at.items() if updated_at < cutoff]
        for conversation_id in expired:
            del self.conversations[conversation_id]
            del self._updated_at[conversation_id]
        return len(expired)

    async def check(self) -> None:
        return None

    def _utc_now(self) -> datetime:
        # The database hands every time back in UTC.
        return self._now().astimezone(UTC)

    def _take_id(self) -> int:
        self._next_turn += 1
        return self._next_turn - 1

    def _append(self, conversation_id: str, turn: Turn) -> None:
        conversation = self.conversations[conversation_id]
        self.conversations[conversation_id] = replace(
            conversation, turns=(*conversation.turns, turn)
        )
