"""Fakes for the ports: a scripted engine and a tiny in-memory profile."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field, replace

from domain.conversation import FinishedAnswer, PendingAnswer, SpoolState
from domain.errors import ErrorCode, StorageUnavailable
from domain.models import (
    AnswerDone,
    AnswerEvent,
    AnswerFailed,
    AnswerRequest,
    Passage,
    TextDelta,
    Usage,
)
from infrastructure.knowledge import Bm25KnowledgeIndex, split_markdown
from testing.conversations import InMemoryConversations as InMemoryConversations

PROFILE_EN = """\
# Jane Doe

## Experience
Jane Doe led the search team at Example Corp from 2020 to 2024.
Jane built a Kubernetes platform used by 40 engineers.

## Projects
- Payments ledger in Go, 3,000 transactions per second.
- Recruiting chatbot in Python.

## Contact
Email: jane@example.com
"""

PROFILE_KO = """\
# 제인 도

## 경력
제인은 2020년부터 2024년까지 Example Corp에서 검색팀을 이끌었습니다.
쿠버네티스 플랫폼을 구축한 경험이 있습니다.

## 연락처
이메일: jane@example.com
"""


def small_profile() -> Bm25KnowledgeIndex:
    """A two-document profile, one in each language, built in memory."""
    passages = split_markdown("en/profile.md", PROFILE_EN) + split_markdown(
        "ko/profile.md", PROFILE_KO
    )
    return Bm25KnowledgeIndex(passages)


@dataclass
class ScriptedEngine:
    """Replays a script of events and records what it was asked.

    ``raise_after`` raises an exception after that many events, to play an engine that
    breaks its contract; ``hold`` makes it wait forever after the script, like a stalled
    upstream.
    """

    script: Sequence[AnswerEvent] = (
        TextDelta("Hello"),
        TextDelta(" world"),
        AnswerDone("stop", Usage(3, 2, 5)),
    )
    mode: str = "scripted"
    raise_after: int | None = None
    hold: bool = False
    requests: list[AnswerRequest] = field(default_factory=list)
    closed: int = 0

    def model_for(self, requested: str) -> str:
        return requested

    async def stream_answer(self, request: AnswerRequest) -> AsyncGenerator[AnswerEvent, None]:
        self.requests.append(request)
        try:
            for index, event in enumerate(self.script):
                if self.raise_after is not None and index == self.raise_after:
                    raise RuntimeError("engine broke; secret sk-do-not-leak")
                await asyncio.sleep(0)
                yield event
            if self.hold:
                await asyncio.Event().wait()
        finally:
            self.closed += 1


def failing_script(code: ErrorCode = ErrorCode.UPSTREAM_RATE_LIMITED) -> list[AnswerEvent]:
    return [TextDelta("Partial "), AnswerFailed(code, "The answering service is busy.")]


def contact_passage() -> Passage:
    return Passage("en/profile.md", ("Jane Doe", "Contact"), "Email: jane@example.com")


class StoreThatGoesDown(InMemoryConversations):
    """The in-memory store, whose writes of answers and checks fail (``StorageUnavailable``,
    as the SQL store's do) while ``down`` is true."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def finish_turn(
        self, turn_id: int, answer: FinishedAnswer, covered: bool | None = None
    ) -> None:
        if self.down:
            raise StorageUnavailable()
        await super().finish_turn(turn_id, answer, covered)

    async def check(self) -> None:
        if self.down:
            raise StorageUnavailable()


class InMemoryAnswerSpool:
    """``AnswerSpool`` in a dict, by turn, in the order answers were first kept; ``kept`` holds
    the pending answers, ``aside`` those set aside."""

    def __init__(self) -> None:
        self.kept: dict[int, PendingAnswer] = {}
        self.aside: dict[int, PendingAnswer] = {}
        self._failures: dict[int, tuple[int, float]] = {}  # turn: (failed writes, retry at)

    async def keep(self, pending: PendingAnswer) -> None:
        self.aside.pop(pending.turn_id, None)
        self._failures.pop(pending.turn_id, None)
        self.kept[pending.turn_id] = pending

    async def oldest(self, limit: int, due_by: float = math.inf) -> Sequence[PendingAnswer]:
        due = [
            replace(pending, failures=failures)
            for turn_id, pending in self.kept.items()
            for failures, retry_at in [self._failures.get(turn_id, (0, -math.inf))]
            if retry_at <= due_by
        ]
        return due[:limit]

    async def forget(self, turn_ids: Sequence[int]) -> None:
        for turn_id in turn_ids:
            self.kept.pop(turn_id, None)
            self.aside.pop(turn_id, None)
            self._failures.pop(turn_id, None)

    async def failed(self, turn_id: int, retry_at: float) -> None:
        if turn_id in self.kept:
            self._failures[turn_id] = (self._failures.get(turn_id, (0, 0.0))[0] + 1, retry_at)

    async def set_aside(self, turn_id: int) -> None:
        if (pending := self.kept.pop(turn_id, None)) is not None:
            self.aside[turn_id] = pending
            self._failures.pop(turn_id, None)

    async def state(self) -> SpoolState:
        retries = [at for turn, (_, at) in self._failures.items() if turn in self.kept]
        return SpoolState(len(self.kept), len(self.aside), min(retries, default=None))
