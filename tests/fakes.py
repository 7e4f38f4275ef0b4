"""Fakes for the ports: a scripted engine and a tiny in-memory profile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field

from agents.items import TResponseStreamEvent
from agents.models.interface import Model, ModelProvider
from agents.testing import ModelCall, ModelStep, assistant_message
from openai.types.responses import Response, ResponseCompletedEvent, ResponseTextDeltaEvent
from openai.types.responses.response_usage import (
    InputTokensDetails,
    OutputTokensDetails,
    ResponseUsage,
)

from domain.errors import ErrorCode
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


# --- The Agents SDK's model, scripted ---------------------------------------------------------
# The SDK ships a scripted ``Model`` (``agents.testing.ScriptedModel``); these give it to every
# agent of a run and script a turn that streams its text in several deltas.


class ScriptedProvider(ModelProvider):
    """Hands every agent the same scripted model and records the model names asked for."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.names: list[str | None] = []

    def get_model(self, model_name: str | None) -> Model:
        self.names.append(model_name)
        return self.model


def _completed(text: str, input_tokens: int, output_tokens: int) -> ResponseCompletedEvent:
    usage = ResponseUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
    )
    response = Response(
        id="resp-scripted",
        created_at=0,
        model="scripted-model",
        object="response",
        output=[assistant_message(text)],
        tool_choice="auto",
        tools=[],
        parallel_tool_calls=False,
        status="completed",
        usage=usage,
    )
    return ResponseCompletedEvent(type="response.completed", response=response, sequence_number=0)


def _delta(text: str, number: int) -> ResponseTextDeltaEvent:
    return ResponseTextDeltaEvent(
        type="response.output_text.delta",
        item_id="scripted-message",
        output_index=0,
        content_index=0,
        delta=text,
        logprobs=[],
        sequence_number=number,
    )


def streamed_text(
    *deltas: str,
    input_tokens: int = 10,
    output_tokens: int = 5,
    hang: asyncio.Event | None = None,
    resume: asyncio.Event | None = None,
    closed: asyncio.Event | None = None,
    then_raise: Exception | None = None,
) -> ModelStep:
    """A model turn that streams ``deltas`` one by one, then completes with usage.

    With ``hang`` it sets the event after the deltas and waits, like a stalled upstream,
    until ``resume`` is set (forever without it); ``closed`` is set when the model's stream
    is closed (the run was cancelled). With ``then_raise`` the stream then breaks with it.
    """

    async def events(call: ModelCall) -> AsyncIterator[TResponseStreamEvent]:
        try:
            for number, text in enumerate(deltas, start=1):
                yield _delta(text, number)
            if hang is not None:
                hang.set()
                await (resume or asyncio.Event()).wait()
            if then_raise is not None:
                raise then_raise
            yield _completed("".join(deltas), input_tokens, output_tokens)
        finally:
            if closed is not None:
                closed.set()

    return ModelStep.stream(events)
