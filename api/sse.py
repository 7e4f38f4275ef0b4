"""Answer events to Server-Sent Events: the only place that knows the wire format.

sse-starlette frames each event per the WHATWG spec: a data value with line breaks becomes
several ``data:`` lines, which a spec-compliant client joins back with ``\\n``. Concatenating
the data of the unnamed events therefore rebuilds the answer exactly.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, assert_never, get_args

import anyio
from fastapi import Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.event import ensure_bytes
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from api.container import Container
from api.observability import Metrics
from application.ask import AnswerStream
from application.resume import Reading, ResumableAnswers
from common.deadline import DeadlinePassed, RollingDeadline
from domain.conversation import utf8_text
from domain.errors import UPSTREAM_MESSAGES, AskError, ErrorCode
from domain.models import (
    AgentStep,
    AnswerDone,
    AnswerEvent,
    AnswerFailed,
    AnswerMeta,
    EngineSwitched,
    Notice,
    Passage,
    TextDelta,
    Usage,
)

logger = logging.getLogger(__name__)

SSE_DESCRIPTION = """\
A `text/event-stream` of these events, in order:

1. `event: meta`, data `{"conversation_id": str, "model": str, "mode": "offline" | "openai"
   | "agents"}`, sent at once, before the model's first token. While the daily token budget
   is spent it also has `"notice": {"code": "daily_token_budget_spent", "message": str}` and
   `mode` is `offline`.
2. `event: sources`, data `[{"id": int, "source": str, "heading": str, "snippet": str,
   "page"?: int}]`: the passages of the applicant's documents the answer may use; the answer
   cites them by `id` as [1], [2]. An empty list when the profile does not cover the question.
3. The answer as **unnamed** events (no `event:` line): each event's data is the next piece
   of text (the model's deltas that reached the server together go out as one). A piece
   with line breaks is split into several `data:` lines, as the SSE spec requires; a
   spec-compliant parser joins them with `\\n`, so concatenating the data of the unnamed
   events rebuilds the answer exactly (markdown included).
   If the model cannot be reached before any text, `event: notice` with data
   `{"code": "answered_offline", "message": str, "mode": "offline", "model": str}` comes
   first, and the answer is quoted from the applicant's documents instead.
   With `mode` `agents`, `event: agent` with data `{"kind": "tool_call" | "handoff", "name":
   str}` may come between the deltas: a tool the agents called (`search_profile`) or the
   specialist the question was handed to. Clients may ignore it.
4. `event: done`, data `{"usage": {"input_tokens", "output_tokens", "total_tokens"} | null,
   "finish_reason": "stop" | "max_output_tokens" | ...}`; or, if the answer fails after the
   stream started, `event: error` with data `{"code": str, "message": str}`. Then the stream
   ends.

Comment lines (`: ping`) keep idle connections open at most 15 s apart; parsers ignore them.
Clients should ignore named events they do not know.

Every event has an `id`, `<answer id>.<number>` (unless RESUME_WINDOW_SECONDS is 0): after a
dropped connection, `GET /conversations/{id}/stream` with `Last-Event-ID` sends the rest.
"""

SSE_EXAMPLE = (
    "event: meta\n"
    'data: {"conversation_id": "3q2-5n1x0Wm5u8u6SxQd5g", "model": "offline", "mode": "offline"}\n'
    "\n"
    "event: sources\n"
    'data: [{"id": 1, "source": "en/resume.md", "heading": "Resume > Summary", "snippet": "..."}]\n'
    "\n"
    "data: According to the applicant's documents:\n"
    "data: \n"
    "\n"
    "data: - **Summary**: Minji led the payments platform team. [1]\n"
    "data: \n"
    "\n"
    "data: Sources:\n"
    "\n"
    "data: — [1] en/resume.md § Resume > Summary\n"
    "\n"
    "event: done\n"
    'data: {"usage": null, "finish_reason": "stop"}\n'
    "\n"
)


# LF line ends, as in the spec's examples: naive readers that split on "\n\n" still work.
SEPARATOR = "\n"


def _event(data: str, event: str | None = None) -> ServerSentEvent:
    # A lone surrogate from the model would abort the UTF-8 response with no ``error`` event.
    return ServerSentEvent(utf8_text(data), event=event, sep=SEPARATOR)


def _json(payload: dict[str, Any] | list[dict[str, Any]]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _usage(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def _notice(notice: Notice) -> dict[str, str]:
    return {"code": notice.code, "message": notice.message}


def meta_event(meta: AnswerMeta) -> ServerSentEvent:
    payload: dict[str, Any] = {
        "conversation_id": meta.conversation_id,
        "model": meta.model,
        "mode": meta.mode,
    }
    if meta.notice is not None:
        payload["notice"] = _notice(meta.notice)
    return _event(_json(payload), event="meta")


SNIPPET_CHARS = 240


def source_items(sources: Sequence[Passage]) -> list[dict[str, Any]]:
    """The ``sources`` payload: what each numbered citation ([1], [2], ...) refers to."""
    items: list[dict[str, Any]] = []
    for number, passage in enumerate(sources, start=1):
        text = " ".join(passage.text.split())
        snippet = text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"
        item: dict[str, Any] = {
            "id": number,
            "source": passage.source,
            "heading": passage.heading,
            "snippet": snippet,
        }
        if passage.page is not None:
            item["page"] = passage.page
        items.append(item)
    return items


def sources_event(sources: Sequence[Passage]) -> ServerSentEvent:
    return _event(_json(source_items(sources)), event="sources")


def notice_event(switched: EngineSwitched) -> ServerSentEvent:
    payload = {**_notice(switched.notice), "mode": switched.mode, "model": switched.model}
    return _event(_json(payload), event="notice")


def agent_event(step: AgentStep) -> ServerSentEvent:
    data = {"kind": step.kind, "name": step.name}
    if step.route is not None:
        data["route"] = step.route
    return _event(_json(data), event="agent")


def error_event(code: ErrorCode, message: str) -> ServerSentEvent:
    return _event(_json({"code": code.value, "message": message}), event="error")


_ANSWER_EVENT_TYPES = get_args(AnswerEvent)


async def observed_events(
    stream: AnswerStream, metrics: Metrics
) -> AsyncGenerator[AnswerEvent, None]:
    """``stream``'s events, observed by ``metrics``; never raises, ends with one terminal event.

    Every client protocol (this module's SSE, the AI SDK's in ``api/ui_message_stream.py``)
    encodes these: time to first delta, duration and outcome (``interrupted`` if the stream is
    closed before its terminal event), tokens and upstream errors are counted here, once.
    """
    metrics.count_decline(stream.declined)
    with metrics.answer_stream(stream.meta.mode) as observed:
        try:
            async for event in stream.events:
                if isinstance(event, TextDelta):
                    if not event.text:
                        continue
                    observed.delta()
                elif isinstance(event, AnswerDone):
                    observed.done(event.finish_reason, event.usage)
                elif isinstance(event, AnswerFailed):
                    observed.failed(event.code, event.usage)
                if isinstance(event, AnswerDone | AnswerFailed) and event.route is not None:
                    metrics.agent_routes.labels(event.route.route).inc()
                elif isinstance(event, EngineSwitched):
                    observed.switched(event.mode, event.cause, event.usage)
                elif not isinstance(event, _ANSWER_EVENT_TYPES):
                    # A type added to the engines but not to the union: no encoder knows it.
                    raise TypeError(f"not an answer event: {type(event).__name__}")
                yield event
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # An exception here would abort the body mid-event; end with an error event instead.
            logger.error("answer stream failed: %s", type(error).__name__)
            observed.failed(ErrorCode.INTERNAL_ERROR)
            yield AnswerFailed(
                ErrorCode.INTERNAL_ERROR, UPSTREAM_MESSAGES[ErrorCode.INTERNAL_ERROR]
            )
        finally:
            await stream.events.aclose()


async def answer_events(
    stream: AnswerStream, metrics: Metrics
) -> AsyncGenerator[ServerSentEvent, None]:
    """``meta`` first, then the deltas, then one ``done`` or ``error``; never raises."""
    events = observed_events(stream, metrics)
    try:
        yield meta_event(stream.meta)
        yield sources_event(stream.sources)
        async for event in events:
            if isinstance(event, TextDelta):
                yield _event(event.text)
            elif isinstance(event, AnswerDone):
                done = {"usage": _usage(event.usage), "finish_reason": event.finish_reason}
                yield _event(_json(done), event="done")
            elif isinstance(event, AnswerFailed):
                yield error_event(event.code, event.message)
            elif isinstance(event, AgentStep):
                yield agent_event(event)
            elif isinstance(event, EngineSwitched):
                yield notice_event(event)
            else:
                assert_never(event)
    finally:
        await events.aclose()
        # Closed before its first event, ``events`` never reached its own ``finally``.
        await stream.events.aclose()


class ReadingEvents(AsyncIterator[ServerSentEvent]):
    """A reading of an answer from its log as SSE events, each with its ``id``.

    A class, not a generator: closing it detaches the reader even if it was never iterated
    (a client that left before the response started)."""

    __slots__ = ("_reading",)

    def __init__(self, reading: Reading) -> None:
        self._reading = reading

    def __aiter__(self) -> ReadingEvents:
        return self

    async def __anext__(self) -> ServerSentEvent:
        event_id, name, data = await self._reading.__anext__()
        return ServerSentEvent(data, event=name, id=event_id, sep=SEPARATOR)

    async def aclose(self) -> None:
        await self._reading.aclose()


async def streamed(
    events: AsyncGenerator[ServerSentEvent, None],
    resumable: ResumableAnswers | None,
    *,
    protocol: str,
    keys: Sequence[str],
) -> AsyncIterator[ServerSentEvent]:
    """What a question's response sends: ``events`` as they come (RESUME_WINDOW_SECONDS=0), or
    the answer run in its own task through the answer log, each event with its SSE ``id``,
    so that a client that loses the connection can resume (``application/resume.py``)."""
    if resumable is None:
        return events
    reading = await resumable.begin(events, protocol=protocol, keys=keys)
    return ReadingEvents(reading)


STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event_source(
    content: AsyncIterator[ServerSentEvent],
    *,
    ping: float,
    send_timeout: float,
    headers: Mapping[str, str] = STREAM_HEADERS,
) -> AnswerEventSource:
    return AnswerEventSource(
        content,
        headers=dict(headers),
        ping=ping,
        # A client that stops reading must not hold the stream (and the upstream call) forever.
        send_timeout=send_timeout,
        sep=SEPARATOR,
    )


async def resume_response(
    container: Container,
    metrics: Metrics,
    key: str,
    last_event_id: str | None,
    *,
    headers: Mapping[str, Mapping[str, str]],
) -> Response:
    """The rest of the answer ``key`` names, after ``last_event_id``, with the ``headers`` of
    its protocol; 204 when none is in flight. ``AskError`` (400, 409) before the response."""
    resumable = container.resumable
    try:
        reading = await resumable.resume(key, last_event_id) if resumable is not None else None
    except AskError as error:
        metrics.count_resume(error.code.value)
        raise
    if reading is None:
        metrics.count_resume("none")
        return Response(status_code=204)
    metrics.count_resume("resumed")
    settings = container.settings
    return event_source(
        ReadingEvents(reading),
        ping=settings.sse_ping_seconds,
        send_timeout=settings.sse_send_timeout_seconds,
        headers=headers.get(reading.answer.protocol, STREAM_HEADERS),
    )


class AnswerEventSource(EventSourceResponse):
    """sse-starlette's response, run by two tasks instead of four, and its send timeout kept by
    one timer per sending task.

    sse-starlette runs each response as a task group of four tasks (the stream, the pings, the
    client's disconnect, the server's exit signal), each with its cancel scope, and bounds
    each send with another cancel scope. An open stream held about 14 KiB in them, and a
    burst's answers paid for them at the start (docs/performance.md). Here the stream runs in
    the request's own task, under one cancel scope, and one watcher task waits for the
    client's disconnect and sends the pings while it waits. The exit signal's task is left out:
    the app turns sse-starlette's drain off and ends its streams itself (``common/lifecycle``).
    The rules stay sse-starlette's: its ``_stream_response`` sends the headers, the events (and
    closes the iterator, within its cleanup timeout, if a send fails) and the end; pings share
    its send lock; a disconnect ends the stream; a send that does not complete within
    ``send_timeout`` (a client that stopped reading) ends the response.

    sse-starlette offers no public way to do either: every send goes through the private
    ``_send_with_timeout``, which opens a cancel scope even without a timeout (7 µs a send,
    measured). So this overrides it and ``__call__``, pyproject.toml bounds sse-starlette to
    the minor version the overrides were checked against, and
    tests/unit/test_sse_send_timeout.py fails if the library's methods change.
    """

    def __init__(
        self, content: AsyncIterator[ServerSentEvent], *, send_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(content, send_timeout=send_timeout, **kwargs)
        self._send_deadlines: dict[asyncio.Task[Any], RollingDeadline] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["type"] != "http" or scope["method"] == "HEAD" or self.background:
                await super().__call__(scope, receive, send)
            else:
                await self._run(receive, send)
        finally:
            for deadline in self._send_deadlines.values():
                deadline.close()
            # Even one never iterated (the client left first): a reading detaches.
            if isinstance(self.body_iterator, ReadingEvents):
                await self.body_iterator.aclose()

    async def _run(self, receive: Receive, send: Send) -> None:
        failed: list[BaseException] = []
        watcher: asyncio.Task[None] | None = None
        try:
            with anyio.CancelScope() as streaming:
                watcher = asyncio.create_task(self._watch(receive, send, streaming, failed))
                await self._stream_response(send)
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.wait((watcher,))
        if failed:
            raise failed[0]

    async def _watch(
        self,
        receive: Receive,
        send: Send,
        streaming: anyio.CancelScope,
        failed: list[BaseException],
    ) -> None:
        """Until the client disconnects (which ends the stream), a ping each ``ping_interval``
        seconds of the wait; a ping that cannot be sent ends the stream with its error."""
        ping_interval = self.ping_interval or None
        try:
            while self.active:
                try:
                    async with asyncio.timeout(ping_interval):
                        message = await receive()
                except TimeoutError:
                    await self._send_ping(send)
                    continue
                if message["type"] == "http.disconnect":
                    self.active = False
                    break
        except Exception as error:
            failed.append(error)
        streaming.cancel()

    async def _send_ping(self, send: Send) -> None:
        ping = (
            self.ping_message_factory()
            if self.ping_message_factory
            else ServerSentEvent(comment="ping", sep=self.sep)
        )
        async with self._send_lock:
            if self.active:
                body = ensure_bytes(ping, self.sep)
                await self._send_with_timeout(
                    send, {"type": "http.response.body", "body": body, "more_body": True}
                )

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        timeout = self.send_timeout
        task = asyncio.current_task()
        if timeout is None or task is None:
            await send(message)
            return
        deadline = self._send_deadlines.get(task)
        if deadline is None:
            deadline = self._send_deadlines[task] = RollingDeadline()
        try:
            await deadline.run(send(message), deadline.now() + timeout)
        except DeadlinePassed:
            raise SendTimeoutError() from None
