"""Conversations in a dict, with the same rules as the SQL repository.

The service keeps conversations in its database; this serves the tests (``tests.fakes``)
and the storage benchmark's baseline (``bench.serve``), which measures the app without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from domain.conversation import (
    Conversation,
    ConversationSummary,
    FinishedAnswer,
    Insights,
    Page,
    Turn,
    turns_from_messages,
)
from domain.models import Message


class InMemoryConversations:
    """``ConversationRepository`` in a dict, with the same rules as the SQL one."""

    def __init__(self) -> None:
        self.conversations: dict[str, Conversation] = {}
        self._next_turn = 1
        self.finished: list[tuple[int, FinishedAnswer]] = []

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
        now = datetime.now(UTC)
        if new_conversation:
            self.conversations[conversation_id] = Conversation(conversation_id, now)
            for earlier_question, earlier_answer in turns_from_messages(earlier):
                self._append(
                    conversation_id,
                    Turn(
                        self._take_id(),
                        earlier_question,
                        now,
                        True,
                        FinishedAnswer(earlier_answer, "completed", ""),
                        now,
                    ),
                )
        turn_id = self._take_id()
        self._append(conversation_id, Turn(turn_id, question, now, covered))
        return turn_id

    async def continue_conversation(
        self, conversation_id: str, question: str
    ) -> tuple[Conversation, int] | None:
        before = self.conversations.get(conversation_id)
        if before is None:
            return None
        turn_id = self._take_id()
        self._append(conversation_id, Turn(turn_id, question, datetime.now(UTC), True))
        return before, turn_id

    async def finish_turn(
        self, turn_id: int, answer: FinishedAnswer, covered: bool | None = None
    ) -> None:
        self.finished.append((turn_id, answer))
        for conversation_id, conversation in self.conversations.items():
            turns = tuple(
                replace(
                    turn,
                    answer=answer,
                    answered_at=datetime.now(UTC),
                    covered=turn.covered if covered is None else covered,
                )
                if turn.id == turn_id
                else turn
                for turn in conversation.turns
            )
            self.conversations[conversation_id] = replace(conversation, turns=turns)

    async def list_conversations(self, offset: int, limit: int) -> Page[ConversationSummary]:
        ordered = sorted(self.conversations.values(), key=lambda c: c.created_at, reverse=True)
        items = tuple(
            ConversationSummary(c.id, c.created_at, c.created_at, len(c.turns), c.turns[0].question)
            for c in ordered[offset : offset + limit]
        )
        return Page(items, len(ordered))

    async def insights(self, since: datetime, limit: int) -> Insights:
        raise NotImplementedError("insights are tested against the SQL repository")

    async def purge_before(self, cutoff: datetime) -> int:
        expired = [i for i, c in self.conversations.items() if c.created_at < cutoff]
        for conversation_id in expired:
            del self.conversations[conversation_id]
        return len(expired)

    async def check(self) -> None:
        return None

    def _take_id(self) -> int:
        self._next_turn += 1
        return self._next_turn - 1

    def _append(self, conversation_id: str, turn: Turn) -> None:
        conversation = self.conversations[conversation_id]
        self.conversations[conversation_id] = replace(
            conversation, turns=(*conversation.turns, turn)
        )
