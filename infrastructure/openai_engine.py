"""The OpenAI Responses API adapter: ``responses.create(stream=True)``, relayed as answer events."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, TypeVar, cast

import aiohttp
import anyio
import httpx2
import openai
from openai import AsyncOpenAI
from openai.types.responses import ResponseInputParam
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from common.deadline import DeadlinePassed, RollingDeadline
from common.lifecycle import Bounded, Lifecycle
from common.retrying import retried
from common.sse import EventStreamDecoder, RawEvent
from domain.errors import ErrorCode
from domain.models import (
    AnswerEvent,
    AnswerFailed,
    AnswerRequest,
    TextDelta,
)
from domain.policy import INSTRUCTIONS, render_grounding
from infrastructure.responses_events import classify, failure, map_payload

logger = logging.getLogger(__name__)
T = TypeVar("T")

UPSTREAM_CLOSE_SECONDS = 2.0
UPSTREAM_DRAIN_SECONDS = 0.5

# Failures worth another attempt, as long as no text has been sent.
RETRYABLE = frozenset(
    {
        ErrorCode.UPSTREAM_RATE_LIMITED,
        ErrorCode.UPSTREAM_UNAVAILABLE,
        ErrorCode.UPSTREAM_TIMEOUT,
        ErrorCode.UPSTREAM_INTERRUPTED,
        ErrorCode.UPSTREAM_FAILED,
    }
)


def build_input(request: AnswerRequest) -> ResponseInputParam:
    """The conversation as Responses API input items, after the server's grounding."""
    items: list[Any] = [{"role": "developer", "content": render_grounding(request)}]
    items.extend({"role": m.role, "content": m.content} for m in request.messages)
    return items


@dataclass(frozen=True, slots=True)
class UpstreamPolicy:
    """How long to wait for the model provider, and how often to try again."""

    max_retries: int = 2
    """Extra attempts for 429, 5xx, connection errors and early drops, before any text."""
    idle_timeout: float = 30.0
    """Longest silence between two upstream events."""
    total_timeout: float = 300.0
    """Longest time for a whole answer, retries included."""
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 20.0
    """A ``Retry-After`` longer than this is not waited for: the answer fails instead."""


class _Retry(Exception):
    def __init__(self, code: ErrorCode, retry_after: float | None = None) -> None:
        super().__init__(code.value)
        self.code = code
        self.retry_after = retry_after


_RETRY: Final = retry_if_exception_type(_Retry)
"""Shared by every answer (``common.retrying``)."""


class UpstreamStop(Exception):
    """Ends the answer with ``event``; ``retryable`` if nothing was sent yet and time is left."""

    def __init__(self, event: AnswerFailed, *, retryable: bool = False) -> None:
        super().__init__(event.code.value)
        self.event = event
        self.retryable = retryable


def retry_after_seconds(error: openai.OpenAIError) -> float | None:
    """The wait the provider asked for, from ``retry-after-ms`` or ``retry-after``."""
    response = getattr(error, "response", None)
    if response is None:
        return None
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        if value.strip().replace(".", "", 1).isdigit():
            return float(value)
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def aiohttp_body(response: httpx2.Response) -> aiohttp.StreamReader | None:
    """The body's own reader when the SDK's aiohttp transport (``DefaultAioHttpClient``)
    received it and it comes as it was sent (no content encoding); ``None`` otherwise.

    Read there, each chunk skips six async generators: httpx's decoding, chunking and timing
    of the body, and the transport's iterator, about 5 % of the server's CPU per relayed delta
    (docs/performance.md). The transport's response is not public:
    ``tests/integration/test_upstream_connections.py`` fails if the SDK stops exposing it.
    """
    if response.headers.get("content-encoding", "identity") != "identity":
        return None  # the transport does not decompress: httpx's decoders do
    transport_stream = getattr(response.stream, "_stream", None)  # httpx2's BoundAsyncStream
    content = getattr(getattr(transport_stream, "_aiohttp_response", None), "content", None)
    return content if isinstance(content, aiohttp.StreamReader) else None


class _UpstreamBody:
    """The raw body of a streamed response: its events, a few at a time, as they arrive."""

    __slots__ = ("_decoder", "_ended", "_source")

    def __init__(self, response: httpx2.Response) -> None:
        reader = aiohttp_body(response)
        self._source: aiohttp.StreamReader | AsyncIterator[bytes] = (
            reader if reader is not None else response.aiter_bytes()
        )
        self._decoder = EventStreamDecoder()
        self._ended = False

    async def _next_chunk(self) -> bytes:
        """The next bytes of the body; ``b""`` once it ended. Raises httpx's errors."""
        source = self._source
        if isinstance(source, aiohttp.StreamReader):
            try:
                return await source.readany()
            except aiohttp.ClientError as error:  # as the transport would map it
                raise httpx2.ReadError(type(error).__name__) from None
        try:
            return await anext(source)
        except StopAsyncIteration:
            return b""

    async def next_events(self) -> list[RawEvent] | None:
        """The events the next read completes (maybe none); ``None`` once the body ended."""
        if self._ended:
            return None
        chunk = await self._next_chunk()
        if not chunk:
            self._ended = True
            return self._decoder.end()
        return self._decoder.feed(chunk)

    async def drain(self) -> None:
        """Read what is left of the body; never raises."""
        try:
            while await self._next_chunk():
                pass
        except (httpx2.TransportError, httpx2.StreamError):
            pass


@dataclass(slots=True)
class _Upstream:
    """One open upstream response (closed with ``response.aclose()``), its body, and events
    read ahead."""

    response: httpx2.Response
    body: _UpstreamBody
    reads: RollingDeadline
    pending: deque[AnswerEvent] = field(default_factory=deque)

    def take(self) -> AnswerEvent | None:
        """The next event read ahead; text deltas that arrived together become one."""
        pending = self.pending
        if not pending:
            return None
        event = pending.popleft()
        if isinstance(event, TextDelta) and pending and isinstance(pending[0], TextDelta):
            parts = [event.text]
            while pending and isinstance(pending[0], TextDelta):
                parts.append(cast(TextDelta, pending.popleft()).text)
            event = TextDelta("".join(parts))
        return event


class ResponsesEngine:
    """Streams answers from any server that speaks the OpenAI Responses API.

    Until the first text delta, failures that may pass (429, 5xx, connection errors, a
    stream that ends early or stalls) are retried with backoff, honouring ``Retry-After``;
    once text was sent, a failure ends the answer with an error event. Every wait is
    bounded by the idle timeout, the answer's total timeout and, while the server drains
    for shutdown, the time left before it stops.
    """

    mode = "openai"

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        max_output_tokens: int,
        policy: UpstreamPolicy | None = None,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        # The SDK imports the Responses API and builds its models on first use: seconds of
        # CPU that would otherwise fall on the first recruiter after every start.
        self._responses = client.responses.with_streaming_response
        self._stream_timeout = _without_read_timeout(client.timeout)
        self._max_output_tokens = max_output_tokens
        self._policy = policy = policy or UpstreamPolicy()
        self._exponential = wait_exponential_jitter(
            multiplier=policy.backoff_initial,
            max=policy.backoff_max,
            jitter=policy.backoff_initial,
        )
        self._give_up = stop_after_attempt(policy.max_retries + 1) | stop_after_delay(
            policy.total_timeout
        )
        self._lifecycle = lifecycle
        self._sent: httpx2.Request | None = None

    def model_for(self, requested: str) -> str:
        return requested

    async def stream_answer(self, request: AnswerRequest) -> AsyncGenerator[AnswerEvent, None]:
        deadline = anyio.current_time() + self._policy.total_timeout
        # One timer bounds every read of the answer, and the drain can shorten it.
        reads = RollingDeadline()
        with bounded_by_drain(self._lifecycle, reads):
            try:
                upstream, first = await self._open_with_retries(request, deadline, reads)
            except UpstreamStop as stop:
                reads.close()
                yield stop.event
                return
            ended = False
            try:
                event: AnswerEvent | None = first
                while event is not None:
                    if not isinstance(event, TextDelta):
                        ended = True
                    yield event
                    if ended:
                        return
                    event = await self._next_answer_event(upstream, deadline)
                logger.warning("upstream stream ended without a terminal event")
                yield failure(ErrorCode.UPSTREAM_INTERRUPTED)
            except UpstreamStop as stop:
                yield stop.event
            finally:
                try:
                    if ended:
                        # The rest of the body is the end of its chunked encoding: reading it
                        # lets the connection go back to the pool instead of being closed.
                        with suppress(DeadlinePassed):
                            await reads.run(
                                upstream.body.drain(),
                                min(deadline, reads.now() + UPSTREAM_DRAIN_SECONDS),
                            )
                finally:
                    reads.close()
                    await _close(upstream.response)

    async def _open_with_retries(
        self, request: AnswerRequest, deadline: float, reads: RollingDeadline
    ) -> tuple[_Upstream, AnswerEvent]:
        retrying = AsyncRetrying(
            stop=self._give_up, wait=self._backoff, retry=_RETRY, sleep=anyio.sleep, reraise=True
        )
        try:
            return await retried(retrying, self._attempt, request, deadline, reads)
        except _Retry as gave_up:
            raise UpstreamStop(failure(gave_up.code)) from None

    def _backoff(self, state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        exponential = self._exponential(state)
        asked = error.retry_after if isinstance(error, _Retry) else None
        wait = exponential if asked is None else asked
        if isinstance(error, _Retry):
            logger.warning(
                "upstream attempt %d failed (%s); retrying in %.2fs",
                state.attempt_number,
                error.code.value,
                wait,
            )
        return wait

    async def _attempt(
        self, request: AnswerRequest, deadline: float, reads: RollingDeadline
    ) -> tuple[_Upstream, AnswerEvent]:
        """One request, read up to its first meaningful event."""
        try:
            # Entered, not held: the SDK's response and its context manager keep the request's
            # options (the grounding among them) for as long as they live. The stream needs
            # only the HTTP response, which their exit would close; ``_close`` does.
            opening = self._responses.create(
                stream=True,
                # The same JSON as the keyword arguments, without the SDK's transform of
                # each value against its declared type (the input items against every
                # member of their union: 4 ms of CPU per answer; the rest 0.1 ms more).
                extra_body={
                    "model": request.model,
                    "instructions": INSTRUCTIONS,
                    "input": build_input(request),
                    "max_output_tokens": self._max_output_tokens,
                    "store": False,
                },
                timeout=self._stream_timeout,
            ).__aenter__()
            # The wait for the response's headers, bounded as each read of its body is.
            started = await within_idle_timeout(
                reads,
                opening,
                idle_timeout=self._policy.idle_timeout,
                deadline=deadline,
                lifecycle=self._lifecycle,
            )
        except UpstreamStop as stop:
            if stop.retryable:
                raise _Retry(stop.event.code) from None
            raise
        except openai.OpenAIError as error:
            code = classify(error)
            status = getattr(error, "status_code", None)
            logger.warning("upstream request failed: %s status=%s", type(error).__name__, status)
            if code in RETRYABLE:
                asked = retry_after_seconds(error)
                if asked is None or asked <= self._policy.max_retry_after:
                    raise _Retry(code, asked) from None
            raise UpstreamStop(failure(code)) from None

        response = started.http_response
        response.request = self._sent_request(response.request)
        upstream = _Upstream(response, _UpstreamBody(response), reads)
        try:
            event = await self._next_answer_event(upstream, deadline)
            if event is None:
                raise _Retry(ErrorCode.UPSTREAM_INTERRUPTED)
            if isinstance(event, AnswerFailed) and event.code in RETRYABLE:
                raise _Retry(event.code)
            return upstream, event
        except UpstreamStop as stop:
            await _close(response)
            if stop.retryable:
                raise _Retry(stop.event.code) from None
            raise
        except BaseException:  # a retry, or cancelled (the client left, the store failed)
            await _close(response)
            raise

    def _sent_request(self, request: httpx2.Request) -> httpx2.Request:
        """What a response keeps of its request once the request is sent: its method and URL.

        httpx keeps the whole request on the response (its serialized body, the grounding
        within, and every header) for the stream's life, only to name it in an error; a
        stream needs none of it. One bodiless request per engine stands in for them all.
        """
        sent = self._sent
        if sent is None or sent.url != request.url or sent.method != request.method:
            sent = self._sent = httpx2.Request(request.method, request.url)
        return sent

    async def _next_answer_event(self, upstream: _Upstream, deadline: float) -> AnswerEvent | None:
        """The next event worth relaying, or ``None`` when the stream ends.

        Events come off the wire a read at a time; each read is bounded by the idle timeout
        and the answer's deadline, and is cut short when the server starts draining for
        shutdown, even if the wait began before.
        """
        while True:
            event = upstream.take()
            if event is not None:
                return event
            try:
                arrived = await within_idle_timeout(
                    upstream.reads,
                    upstream.body.next_events(),
                    idle_timeout=self._policy.idle_timeout,
                    deadline=deadline,
                    lifecycle=self._lifecycle,
                )
            except httpx2.TimeoutException:
                logger.warning("upstream stream broke: timeout")
                raise UpstreamStop(failure(ErrorCode.UPSTREAM_TIMEOUT), retryable=True) from None
            except (httpx2.TransportError, httpx2.StreamError) as error:
                # The stream broke after it had started.
                logger.warning("upstream stream broke: %s", type(error).__name__)
                raise UpstreamStop(
                    failure(ErrorCode.UPSTREAM_INTERRUPTED), retryable=True
                ) from None
            if arrived is None:
                return None
            for upstream_event in arrived:
                mapped = map_payload(upstream_event)
                if mapped is not None:
                    upstream.pending.append(mapped)


async def within_idle_timeout(
    reads: RollingDeadline,
    awaitable: Awaitable[T],
    *,
    idle_timeout: float,
    deadline: float,
    lifecycle: Lifecycle | None,
) -> T:
    """``await awaitable`` within the idle timeout, the answer's ``deadline`` and, while the
    server drains, the time left (both engines' waits on their upstream); ``UpstreamStop``
    (retryable if time is left) when it does not end in time."""
    now = reads.now()  # the loop's clock, as anyio's, without its lookup
    until = min(now + idle_timeout, deadline)
    left = lifecycle.time_left() if lifecycle is not None else None
    if left is not None:
        until = min(until, now + left)
    try:
        return await reads.run(awaitable, until)
    except DeadlinePassed:
        draining = lifecycle is not None and lifecycle.draining
        code = ErrorCode.SERVER_SHUTTING_DOWN if draining else ErrorCode.UPSTREAM_TIMEOUT
        logger.warning("upstream wait ended: %s", code.value)
        raise UpstreamStop(
            failure(code), retryable=not draining and reads.now() < deadline
        ) from None


def bounded_by_drain(lifecycle: Lifecycle | None, wait: Bounded) -> AbstractContextManager[None]:
    """``wait`` cut short when the server's grace period ends (``Lifecycle.bounding``)."""
    return nullcontext() if lifecycle is None else lifecycle.bounding(wait)


def _without_read_timeout(timeout: float | httpx2.Timeout | None) -> httpx2.Timeout:
    """The client's timeouts without the read timeout, for a streamed answer.

    The engine bounds the wait for the headers and each read of the body itself, with one
    timer per answer (``RollingDeadline``). The transport's read timeout would add a timer
    per chunk: aiohttp cancels and schedules one on every read, about 5 % of the CPU of a
    paced stream (docs/performance.md).
    """
    if not isinstance(timeout, httpx2.Timeout):
        return httpx2.Timeout(timeout, read=None)
    return httpx2.Timeout(
        connect=timeout.connect, read=None, write=timeout.write, pool=timeout.pool
    )


async def _close(response: httpx2.Response) -> None:
    """Close the upstream HTTP stream even while the task is being cancelled (client left)."""
    with anyio.move_on_after(UPSTREAM_CLOSE_SECONDS, shield=True):
        await response.aclose()
