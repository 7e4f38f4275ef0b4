"""The Agents SDK's model, scripted, for the Agents engine's tests (apart from ``tests/fakes.py``
so that the other tests do not pay the SDK's import time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from agents.items import TResponseStreamEvent
from agents.mcp import MCPServer
from agents.models.interface import Model, ModelProvider
from agents.testing import ModelCall, ModelStep, assistant_message
from mcp.types import CallToolResult, GetPromptResult, ListPromptsResult, TextContent, Tool
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemAddedEvent,
    ResponseTextDeltaEvent,
)
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


def _response(status: Any, output: list[Any], usage: ResponseUsage | None) -> Response:
    return Response(
        id="resp-scripted",
        created_at=0,
        model="scripted-model",
        object="response",
        output=output,
        tool_choice="auto",
        tools=[],
        parallel_tool_calls=False,
        status=status,
        usage=usage,
    )


def broken_tool_call(tool: str, arguments: str, error: Exception) -> ModelStep:
    """A model turn whose stream breaks with ``error`` while it spells a call of ``tool``:
    ``response.created``, the function call's item and part of its arguments, then nothing."""

    async def events(call: ModelCall) -> AsyncIterator[TResponseStreamEvent]:
        yield ResponseCreatedEvent(
            type="response.created",
            response=_response("in_progress", [], None),
            sequence_number=0,
        )
        item = ResponseFunctionToolCall(
            type="function_call",
            id="fc-1",
            call_id="call-broken",
            name=tool,
            arguments="",
            status="in_progress",
        )
        yield ResponseOutputItemAddedEvent(
            type="response.output_item.added", item=item, output_index=0, sequence_number=1
        )
        yield ResponseFunctionCallArgumentsDeltaEvent(
            type="response.function_call_arguments.delta",
            item_id="fc-1",
            output_index=0,
            delta=arguments,
            sequence_number=2,
        )
        raise error

    return ModelStep.stream(events)


def ended_early() -> ModelStep:
    """A model turn whose stream ends after ``response.created``, without a terminal event."""

    async def events(call: ModelCall) -> AsyncIterator[TResponseStreamEvent]:
        yield ResponseCreatedEvent(
            type="response.created",
            response=_response("in_progress", [], None),
            sequence_number=0,
        )

    return ModelStep.stream(events)


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


class FakeToolServer(MCPServer):
    """An outside MCP server, in memory: its tools answer with fixed texts, and every call
    is recorded as ``(tool, arguments)``."""

    def __init__(self, name: str, replies: dict[str, str]) -> None:
        super().__init__()
        self._name = name
        self.replies = replies
        self.calls: list[tuple[str, dict[str, Any] | None]] = []

    @property
    def name(self) -> str:
        return self._name

    async def connect(self) -> None:
        return None

    async def cleanup(self) -> None:
        return None

    async def list_tools(self, run_context: Any = None, agent: Any = None) -> list[Tool]:
        schema = {"type": "object", "properties": {"query": {"type": "string"}}}
        return [Tool(name=tool, inputSchema=schema) for tool in self.replies]

    async def call_tool(
        self, tool_name: str, arguments: dict[str, Any] | None, meta: Any = None
    ) -> CallToolResult:
        self.calls.append((tool_name, arguments))
        return CallToolResult(content=[TextContent(type="text", text=self.replies[tool_name])])

    async def list_prompts(self) -> ListPromptsResult:
        return ListPromptsResult(prompts=[])

    async def get_prompt(self, *args: Any, **kwargs: Any) -> GetPromptResult:
        raise AssertionError("no prompts")
