"""The Agents SDK's model, scripted, for the Agents engine's tests (apart from ``tests/fakes.py``
so that the other tests do not pay the SDK's import time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from agents.items import TResponseStreamEvent
from agents.models.interface import Model, ModelProvider
from agents.testing import ModelCall, ModelStep, assistant_message
from openai.types.responses import Response, ResponseCompletedEvent, ResponseTextDeltaEvent
from openai.types.responses.response_usage import (
    InputTokensDetails,
    OutputTokensDetails,
    ResponseUsage,
)

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
