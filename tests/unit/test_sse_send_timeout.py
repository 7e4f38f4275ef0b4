"""A client that stops reading cannot hold a stream: each send is bounded by SSE_SEND_TIMEOUT."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sse_starlette import ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message

from api.sse import AnswerEventSource

SCOPE = {"type": "http", "method": "POST", "path": "/openai-response/sse", "headers": []}


async def test_a_send_that_never_completes_ends_the_response_and_closes_the_events() -> None:
    closed = asyncio.Event()
    sent: list[Message] = []

    async def events() -> AsyncIterator[ServerSentEvent]:
        try:
            while True:
                yield ServerSentEvent("delta")
                await asyncio.sleep(0)
        finally:
            closed.set()

    async def stuck_client_send(message: Message) -> None:
        sent.append(message)
        if len(sent) >= 3:  # the client's window is full: this send never completes
            await asyncio.Event().wait()

    async def never_disconnects() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    response = AnswerEventSource(events(), send_timeout=0.2, ping=60)
    started = asyncio.get_running_loop().time()
    with pytest.raises(SendTimeoutError):
        await asyncio.wait_for(response(SCOPE, never_disconnects, stuck_client_send), 5)
    assert asyncio.get_running_loop().time() - started < 2
    assert closed.is_set()


async def test_sends_that_keep_up_are_never_cut() -> None:
    sent: list[Message] = []

    async def events() -> AsyncIterator[ServerSentEvent]:
        for number in range(50):
            await asyncio.sleep(0.005)  # slower than the timeout in total, never per send
            yield ServerSentEvent(str(number))

    async def client_send(message: Message) -> None:
        sent.append(message)

    async def never_disconnects() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    response = AnswerEventSource(events(), send_timeout=0.1, ping=60)
    await asyncio.wait_for(response(SCOPE, never_disconnects, client_send), 5)
    bodies = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert bodies.count(b"data: ") == 50
