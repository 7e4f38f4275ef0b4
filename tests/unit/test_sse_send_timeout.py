"""The SSE response as the app runs it (``AnswerEventSource``): each send bounded by
SSE_SEND_TIMEOUT, pings while the stream waits, a disconnect that ends the stream, two tasks."""

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
from tests.tasks import only_this_tests_tasks

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


# ... and reuses ``_stream_response`` (the stream itself) as reviewed: 44 lines that do this.
REVIEWED_STREAM_RESPONSE_LINES = 44


def test_the_reused_stream_method_of_sse_starlette_is_the_one_reviewed() -> None:
    source = textwrap.dedent(inspect.getsource(EventSourceResponse._stream_response))
    # What the override relies on: the headers, each event through the send hook, the
    # iterator closed when a send fails, the end sent under the send lock once inactive.
    for line in (
        '"type": "http.response.start",',
        "async for data in self.body_iterator:",
        "await self._send_with_timeout(",
        'aclose = getattr(self.body_iterator, "aclose", None)',
        "async with self._send_lock:",
        "self.active = False",
        'await send({"type": "http.response.body", "body": b"", "more_body": False})',
    ):
        assert line in source
    assert len(source.splitlines()) == REVIEWED_STREAM_RESPONSE_LINES


class Client:
    """A client's side of one response: what it received, and a disconnect it can make."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.gone = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def test_a_disconnect_ends_the_stream_and_closes_the_events() -> None:
    closed = asyncio.Event()
    client = Client()

    async def events() -> AsyncIterator[ServerSentEvent]:
        try:
            yield ServerSentEvent("first")
            client.gone.set()
            await asyncio.Event().wait()  # the model has nothing more yet
            yield ServerSentEvent("never")
        finally:
            closed.set()

    response = AnswerEventSource(events(), send_timeout=1, ping=60)
    await asyncio.wait_for(response(SCOPE, client.receive, client.send), 5)
    assert closed.is_set()
    assert b"data: first" in client.body
    assert b"never" not in client.body


async def test_a_waiting_stream_gets_pings_and_ends_with_its_events() -> None:
    client = Client()

    async def events() -> AsyncIterator[ServerSentEvent]:
        await asyncio.sleep(0.35)
        yield ServerSentEvent("late", sep="\n")

    response = AnswerEventSource(events(), send_timeout=1, ping=0.1, sep="\n")
    await asyncio.wait_for(response(SCOPE, client.receive, client.send), 5)
    assert client.body.count(b": ping\n\n") >= 2
    assert client.body.endswith(b"data: late\n\n")
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert len([m for m in client.sent if m["type"] == "http.response.start"]) == 1


async def test_a_ping_the_client_does_not_take_ends_the_response() -> None:
    closed = asyncio.Event()

    async def events() -> AsyncIterator[ServerSentEvent]:
        try:
            await asyncio.Event().wait()
            yield ServerSentEvent("never")
        finally:
            closed.set()

    async def stuck_after_the_headers(message: Message) -> None:
        if message["type"] == "http.response.body":
            await asyncio.Event().wait()

    async def never_disconnects() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    response = AnswerEventSource(events(), send_timeout=0.1, ping=0.05)
    with pytest.raises(SendTimeoutError):
        await asyncio.wait_for(response(SCOPE, never_disconnects, stuck_after_the_headers), 5)
    assert closed.is_set()


async def test_a_response_runs_in_its_own_task_and_one_watcher() -> None:
    """sse-starlette's task group ran four tasks a response; an open stream now has one more
    task than its request."""
    client = Client()
    streaming = asyncio.Event()
    tasks_while_streaming: list[int] = []

    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent("x")
        await asyncio.sleep(0)
        tasks_while_streaming.append(len(asyncio.all_tasks()))
        streaming.set()

    async with only_this_tests_tasks():
        before = len(asyncio.all_tasks())
        response = AnswerEventSource(events(), send_timeout=1, ping=60)
        async with asyncio.timeout(5):  # not wait_for: it would run the response in a task
            await response(SCOPE, client.receive, client.send)
        assert tasks_while_streaming == [before + 1]
        assert len(asyncio.all_tasks()) == before
