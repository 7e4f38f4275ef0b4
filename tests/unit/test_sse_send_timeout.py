"""A client that stops reading cannot hold a stream: each send is bounded by SSE_SEND_TIMEOUT."""

from __future__ import annotations

import asyncio
import inspect
import textwrap
from collections.abc import AsyncIterator

import pytest
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Send

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


# AnswerEventSource overrides this private method of sse-starlette (there is no public way to
# bound a send without a cancel scope per send). If a new version changes it, review the
# override against the new code, then update this copy and the bound in pyproject.toml.
REVIEWED_SEND_HOOK = """\
async def _send_with_timeout(self, send: Send, message: Message) -> None:
    \"\"\"Send one ASGI message, applying the response's per-send timeout.\"\"\"
    with anyio.move_on_after(self.send_timeout) as cancel_scope:
        await send(message)

    if cancel_scope and cancel_scope.cancel_called:
        raise SendTimeoutError()
"""


def test_the_overridden_send_hook_of_sse_starlette_is_the_one_reviewed() -> None:
    library_hook = textwrap.dedent(inspect.getsource(EventSourceResponse._send_with_timeout))
    assert library_hook == REVIEWED_SEND_HOOK


async def test_every_event_sse_starlette_sends_goes_through_the_overridden_hook() -> None:
    hooked: list[Message] = []
    sent: list[Message] = []

    class Spy(AnswerEventSource):
        async def _send_with_timeout(self, send: Send, message: Message) -> None:
            hooked.append(message)
            await super()._send_with_timeout(send, message)

    async def events() -> AsyncIterator[ServerSentEvent]:
        for number in range(3):
            yield ServerSentEvent(str(number))

    async def client_send(message: Message) -> None:
        sent.append(message)

    async def never_disconnects() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    response = Spy(events(), send_timeout=1, ping=60)
    await asyncio.wait_for(response(SCOPE, never_disconnects, client_send), 5)
    events_sent = [m for m in sent if m["type"] == "http.response.body" and m["more_body"]]
    assert len(events_sent) == 3
    assert hooked == events_sent
