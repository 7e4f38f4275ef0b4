"""Use cases for the applicant: read what recruiters asked, and forget it when it is old."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from domain.conversation import (
    Conversation,
    ConversationSummary,
    Insights,
    Page,
    is_conversation_id,
)
from domain.errors import ConversationNotFound
from domain.ports import ConversationRepository


def utc_now() -> datetime:
    return datetime.now(UTC)


class ReviewConversations:
    """What recruiters asked, which questions the profile could not answer, what it cost."""

    def __init__(
        self,
        conversations: ConversationRepository,
        *,
        retention_days: int,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._conversations = conversations
        self._retention_days = retention_days
        self._now = now

    async def conversation(self, conversation_id: str) -> Conversation:
        if not is_conversation_id(conversation_id):
            raise ConversationNotFound()  # no id of ours has this shape: no query
        conversation = await self._conversations.get(conversation_id)
        if conversation is None:
            raise ConversationNotFound()
        return conversation

    async def recent(self, page: int, page_size: int) -> Page[ConversationSummary]:
        """Conversations newest first; ``page`` counts from 1."""
        return await self._conversations.list_conversations((page - 1) * page_size, page_size)

    async def insights(self, days: int, limit: int = 20) -> Insights:
        return await self._conversations.insights(self._now() - timedelta(days=days), limit)

    async def purge_expired(self) -> int:
        """Delete conversations idle for longer than the retention period (0 keeps all)."""
        if self._retention_days <= 0:
            return 0
        cutoff = self._now() - timedelta(days=self._retention_days)
        return await self._conversations.purge_before(cutoff)
