"""The Responses API adapter against respx-mocked HTTP in the real wire format."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import openai
import pytest
import respx
from openai import AsyncOpenAI

from common.lifecycle import Lifecycle
from common.sse import RawEvent
from domain.errors import UPSTREAM_MESSAGES, ErrorCode
from domain.models import (
    AnswerDone,
    AnswerEvent,
    AnswerFailed,
    AnswerRequest,
    Message,
    Passage,
    RetrievedPassage,
    TextDelta,
    Usage,
)
from domain.policy import INSTRUCTIONS
from infrastructure.openai_engine import (
    ResponsesEngine,
    UpstreamPolicy,
    retry_after_seconds,
)
from infrastructure.responses_events import map_payload
from tests.cycles import cyclic_garbage

BASE_URL = "https://upstream.test/v1"


def response_object(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1_764_000_000,
        "status": status,
        "model": "gpt-test",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "temperature": 1.0,
        "top_p": 1.0,
        "usage": None,
        **extra,
    }


USAGE = {
    "input_tokens": 11,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens": 7,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 18,
}


def sse(*events: dict[str, Any]) -> bytes:
    frames = []
    for number, event in enumerate(events):
        event = {**event, "sequence_number": number} if "type" in event else event
        name = event.get("type", "error")
        frames.append(f"event: {name}\ndata: {json.dumps(event)}\n\n")
    return "".join(frames).encode()


def delta(text: str) -> dict[str, Any]:
    return {
        "type": "response.output_text.delta",
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": text,
        "logprobs": [],
    }


CREATED = {"type": "response.created", "response": response_object("in_progress")}
COMPLETED = {"type": "response.completed", "response": response_object("completed", usage=USAGE)}


def stream_reply(body: bytes) -> httpx2.Response:
    return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})


def error_reply(status: int, code: str) -> httpx2.Response:
    body = {
        "error": {
            "message": "Incorrect API key sk-secret",
            "type": "x",
            "param": None,
            "code": code,
        }
    }
    return httpx2.Response(status, json=body)


@pytest.fixture
def upstream() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        yield router


def engine(**policy: Any) -> ResponsesEngine:
    client = AsyncOpenAI(api_key="sk-test", base_url=BASE_URL, max_retries=0)
    options = {"max_retries": 0, "backoff_initial": 0.001, "backoff_max": 0.01, **policy}
    return ResponsesEngine(client, max_output_tokens=300, policy=UpstreamPolicy(**options))


def request(question: str = "What did Jane build?") -> AnswerRequest:
    passage = Passage("en/resume.md", ("Resume", "Projects"), "Jane built a ledger.")
    return AnswerRequest(
        messages=(
            Message("user", "Hi"),
            Message("assistant", "Hello!"),
            Message("user", question),
        ),
        model="gpt-test",
        grounding=(RetrievedPassage(passage, 1.0),),
        contact=Passage("en/resume.md", ("Contact",), "jane@example.com"),
    )


async def run(
    body_or_reply: bytes | httpx2.Response, router: respx.MockRouter
) -> list[AnswerEvent]:
    reply = stream_reply(body_or_reply) if isinstance(body_or_reply, bytes) else body_or_reply
    router.post("/responses").mock(return_value=reply)
    return [event async for event in engine().stream_answer(request())]


async def test_deltas_are_relayed_exactly_and_usage_reported(upstream: respx.MockRouter) -> None:
    texts = ["Line one\n", "\n- item", "\ndata: not a field", " 한국어 답변\r\n끝"]
    events = await run(sse(CREATED, *map(delta, texts), COMPLETED), upstream)
    # One read carried every delta: they are relayed as one, the text unchanged.
    assert events == [TextDelta("".join(texts)), AnswerDone("stop", Usage(11, 7, 18))]


async def test_deltas_arriving_apart_stay_apart_even_when_reads_split_their_lines(
    upstream: respx.MockRouter,
) -> None:
    texts = ["첫 줄\n", "\n- item", " 한국어\r\n끝"]
    frames = [sse(event) for event in (CREATED, *map(delta, texts), COMPLETED)]

    async def reads() -> AsyncIterator[bytes]:
        for frame in frames:
            middle = len(frame) // 2  # inside the JSON
            yield frame[:middle]
            yield frame[middle:]

    reply = httpx2.Response(200, content=reads(), headers={"content-type": "text/event-stream"})
    events = await run(reply, upstream)
    assert events == [*map(TextDelta, texts), AnswerDone("stop", Usage(11, 7, 18))]


async def test_request_carries_server_instructions_grounding_and_turns(
    upstream: respx.MockRouter,
) -> None:
    await run(sse(CREATED, COMPLETED), upstream)
    sent = json.loads(upstream.calls.last.request.content)
    assert sent["instructions"] == INSTRUCTIONS
    assert sent["stream"] is True
    assert sent["store"] is False
    assert sent["model"] == "gpt-test"
    assert sent["max_output_tokens"] == 300
    grounding, *turns = sent["input"]
    assert grounding["role"] == "developer"
    assert "Jane built a ledger." in grounding["content"]
    assert "jane@example.com" in grounding["content"]
    assert [(t["role"], t["content"]) for t in turns] == [
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "What did Jane build?"),
    ]


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, "invalid_api_key", ErrorCode.UPSTREAM_AUTH),
        (403, "forbidden", ErrorCode.UPSTREAM_AUTH),
        (429, "rate_limit_exceeded", ErrorCode.UPSTREAM_RATE_LIMITED),
        (500, "server_error", ErrorCode.UPSTREAM_UNAVAILABLE),
        (503, "overloaded", ErrorCode.UPSTREAM_UNAVAILABLE),
        (400, "invalid_request", ErrorCode.UPSTREAM_BAD_REQUEST),
    ],
)
async def test_http_errors_map_to_stable_codes_without_upstream_text(
    upstream: respx.MockRouter, status: int, code: str, expected: ErrorCode
) -> None:
    [event] = await run(error_reply(status, code), upstream)
    assert isinstance(event, AnswerFailed)
    assert event.code == expected
    assert "sk-" not in event.message
    assert "Incorrect" not in event.message


async def test_connection_failure_is_unavailable(upstream: respx.MockRouter) -> None:
    upstream.post("/responses").mock(side_effect=httpx2.ConnectError("refused"))
    [event] = [e async for e in engine().stream_answer(request())]
    assert event == AnswerFailed(ErrorCode.UPSTREAM_UNAVAILABLE, event.message)  # type: ignore[union-attr]


async def test_timeout_before_start_is_a_timeout(upstream: respx.MockRouter) -> None:
    upstream.post("/responses").mock(side_effect=httpx2.ReadTimeout("slow"))
    [event] = [e async for e in engine().stream_answer(request())]
    assert isinstance(event, AnswerFailed)
    assert event.code == ErrorCode.UPSTREAM_TIMEOUT


async def test_flat_error_event_after_text(upstream: respx.MockRouter) -> None:
    flat = {"type": "error", "code": "rate_limit_exceeded", "message": "slow down", "param": None}
    events = await run(sse(CREATED, delta("Part"), flat), upstream)
    assert events[0] == TextDelta("Part")
    assert isinstance(events[1], AnswerFailed)
    assert events[1].code == ErrorCode.UPSTREAM_RATE_LIMITED
    assert len(events) == 2


async def test_nested_error_event_raised_by_the_sdk_is_mapped(upstream: respx.MockRouter) -> None:
    nested = {"error": {"type": "server_error", "code": "server_error", "message": "boom"}}
    events = await run(sse(CREATED, delta("Part"), nested), upstream)
    assert events[0] == TextDelta("Part")
    assert isinstance(events[1], AnswerFailed)
    assert events[1].code == ErrorCode.UPSTREAM_FAILED
    assert "boom" not in events[1].message


async def test_response_failed_is_an_error(upstream: respx.MockRouter) -> None:
    failed = {
        "type": "response.failed",
        "response": response_object(
            "failed", error={"code": "server_error", "message": "The model crashed"}
        ),
    }
    events = await run(sse(CREATED, delta("x"), failed), upstream)
    assert isinstance(events[-1], AnswerFailed)
    assert events[-1].code == ErrorCode.UPSTREAM_FAILED


async def test_response_incomplete_is_done_with_its_reason(upstream: respx.MockRouter) -> None:
    incomplete = {
        "type": "response.incomplete",
        "response": response_object(
            "incomplete", incomplete_details={"reason": "max_output_tokens"}, usage=USAGE
        ),
    }
    events = await run(sse(CREATED, delta("cut"), incomplete), upstream)
    assert events == [TextDelta("cut"), AnswerDone("max_output_tokens", Usage(11, 7, 18))]


async def test_stream_that_ends_without_a_terminal_event_is_interrupted(
    upstream: respx.MockRouter,
) -> None:
    events = await run(sse(CREATED, delta("half")), upstream)
    assert events[0] == TextDelta("half")
    assert isinstance(events[1], AnswerFailed)
    assert events[1].code == ErrorCode.UPSTREAM_INTERRUPTED


async def test_unknown_event_types_are_ignored(upstream: respx.MockRouter) -> None:
    reasoning = {
        "type": "response.reasoning_summary_text.delta",
        "item_id": "rs_1",
        "output_index": 0,
        "summary_index": 0,
        "delta": "thinking",
    }
    events = await run(sse(CREATED, reasoning, delta("ok"), COMPLETED), upstream)
    assert events == [TextDelta("ok"), AnswerDone("stop", Usage(11, 7, 18))]


# --- retries, timeouts and the shutdown drain ------------------------------------------------

OK_BODY = sse(CREATED, delta("fine"), COMPLETED)


async def collect(router: respx.MockRouter, replies: list[Any], **policy: Any) -> list[AnswerEvent]:
    router.post("/responses").mock(side_effect=replies)
    return [event async for event in engine(**policy).stream_answer(request())]


@pytest.mark.parametrize(
    "first_failure",
    [
        error_reply(429, "rate_limit_exceeded"),
        error_reply(500, "server_error"),
        error_reply(503, "overloaded"),
        httpx2.ConnectError("refused"),
        stream_reply(sse(CREATED)),  # dropped before any text
        stream_reply(
            sse(CREATED, {"type": "error", "code": "server_error", "message": "x", "param": None})
        ),
    ],
)
async def test_failures_before_any_text_are_retried(
    upstream: respx.MockRouter, first_failure: Any
) -> None:
    events = await collect(upstream, [first_failure, stream_reply(OK_BODY)], max_retries=2)
    assert events == [TextDelta("fine"), AnswerDone("stop", Usage(11, 7, 18))]
    assert upstream.calls.call_count == 2


async def test_retries_give_up_with_the_last_code(upstream: respx.MockRouter) -> None:
    replies = [error_reply(500, "server_error")] * 3
    [event] = await collect(upstream, replies, max_retries=2)
    assert isinstance(event, AnswerFailed)
    assert event.code == ErrorCode.UPSTREAM_UNAVAILABLE
    assert upstream.calls.call_count == 3


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_client_errors_are_not_retried(upstream: respx.MockRouter, status: int) -> None:
    await collect(upstream, [error_reply(status, "nope"), stream_reply(OK_BODY)], max_retries=2)
    assert upstream.calls.call_count == 1


@pytest.mark.parametrize("failures", [0, 1], ids=["first attempt", "after a retry"])
async def test_an_answer_leaves_no_retry_state_to_the_cycle_collector(
    upstream: respx.MockRouter, failures: int
) -> None:
    """Freed as the answer ends, not at the next collection: in a burst the cyclic garbage
    of every answer would sit in the heap of every open stream."""
    replies = [error_reply(500, "server_error")] * failures + [stream_reply(OK_BODY)]
    with cyclic_garbage("tenacity") as left:
        events = await collect(upstream, replies, max_retries=1)
    assert events[0] == TextDelta("fine")
    assert upstream.calls.call_count == failures + 1
    assert left == []


async def test_retry_after_is_honoured(upstream: respx.MockRouter) -> None:
    limited = error_reply(429, "rate_limit_exceeded")
    limited.headers["retry-after"] = "0.2"
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await collect(upstream, [limited, stream_reply(OK_BODY)], max_retries=1)
    assert loop.time() - started >= 0.2
    assert events[0] == TextDelta("fine")


async def test_too_long_retry_after_is_not_waited_for(upstream: respx.MockRouter) -> None:
    limited = error_reply(429, "rate_limit_exceeded")
    limited.headers["retry-after"] = "3600"
    [event] = await collect(upstream, [limited, stream_reply(OK_BODY)], max_retries=2)
    assert isinstance(event, AnswerFailed)
    assert event.code == ErrorCode.UPSTREAM_RATE_LIMITED
    assert upstream.calls.call_count == 1


async def test_nothing_is_retried_after_text_was_sent(upstream: respx.MockRouter) -> None:
    flat = {"type": "error", "code": "server_error", "message": "x", "param": None}
    events = await collect(
        upstream,
        [stream_reply(sse(CREATED, delta("Par"), flat)), stream_reply(OK_BODY)],
        max_retries=2,
    )
    assert events[0] == TextDelta("Par")
    assert isinstance(events[1], AnswerFailed)
    assert upstream.calls.call_count == 1


class StallingBody(httpx2.AsyncByteStream):
    """An upstream that sends ``first`` and then nothing, until the client closes it."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        self.closed = asyncio.Event()

    async def __aiter__(self):  # type: ignore[override]
        yield self.first
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        self.closed.set()


def stalling_reply(first: bytes) -> tuple[httpx2.Response, StallingBody]:
    body = StallingBody(first)
    return httpx2.Response(200, stream=body, headers={"content-type": "text/event-stream"}), body


async def test_silent_upstream_ends_with_a_timeout_and_is_closed(
    upstream: respx.MockRouter,
) -> None:
    reply, body = stalling_reply(sse(CREATED, delta("So far")))
    events = await collect(upstream, [reply], idle_timeout=0.2)
    assert events[0] == TextDelta("So far")
    assert isinstance(events[1], AnswerFailed)
    assert events[1].code == ErrorCode.UPSTREAM_TIMEOUT
    assert body.closed.is_set()


async def test_headers_that_never_come_end_with_a_timeout_after_a_retry(
    upstream: respx.MockRouter,
) -> None:
    answered = asyncio.Event()
    attempts = 0

    async def no_headers(_request: httpx2.Request) -> httpx2.Response:
        nonlocal attempts
        attempts += 1
        await answered.wait()  # never set: the server accepted and went quiet
        raise AssertionError("unreachable")

    upstream.post("/responses").mock(side_effect=no_headers)
    events = [
        event async for event in engine(idle_timeout=0.2, max_retries=1).stream_answer(request())
    ]
    assert [type(event) for event in events] == [AnswerFailed]
    assert events[0].code == ErrorCode.UPSTREAM_TIMEOUT  # type: ignore[union-attr]
    assert attempts == 2


async def test_a_streamed_answer_has_no_transport_read_timer(upstream: respx.MockRouter) -> None:
    """The engine bounds the reads itself; the transport keeps the other timeouts."""
    client = AsyncOpenAI(
        api_key="sk-test",
        base_url=BASE_URL,
        max_retries=0,
        timeout=httpx2.Timeout(connect=3, read=35, write=4, pool=5),
    )
    route = upstream.post("/responses").mock(return_value=stream_reply(sse(CREATED, delta("Hi"))))
    answers = ResponsesEngine(client, max_output_tokens=300, policy=UpstreamPolicy(max_retries=0))
    [event async for event in answers.stream_answer(request())]
    timeout = route.calls.last.request.extensions["timeout"]
    assert timeout == {"connect": 3, "read": None, "write": 4, "pool": 5}


async def test_whole_answer_has_a_deadline(upstream: respx.MockRouter) -> None:
    reply, _ = stalling_reply(sse(CREATED, delta("So far")))
    events = await collect(upstream, [reply], idle_timeout=10, total_timeout=0.3)
    assert isinstance(events[-1], AnswerFailed)
    assert events[-1].code == ErrorCode.UPSTREAM_TIMEOUT


async def test_shutdown_drain_ends_a_wait_that_began_before_it(upstream: respx.MockRouter) -> None:
    reply, body = stalling_reply(sse(CREATED, delta("So far")))
    upstream.post("/responses").mock(return_value=reply)
    client = AsyncOpenAI(api_key="sk-test", base_url=BASE_URL, max_retries=0)
    lifecycle = Lifecycle(grace_seconds=0.2)
    draining = ResponsesEngine(
        client, max_output_tokens=300, policy=UpstreamPolicy(max_retries=0), lifecycle=lifecycle
    )
    events: list[AnswerEvent] = []
    async for event in draining.stream_answer(request()):
        events.append(event)
        if event == TextDelta("So far"):
            # The engine now waits (idle timeout: 30 s) for an event that never comes.
            asyncio.get_running_loop().call_later(0.05, lifecycle.begin_drain)
    assert events[0] == TextDelta("So far")
    assert isinstance(events[1], AnswerFailed)
    assert events[1].code == ErrorCode.SERVER_SHUTTING_DOWN
    assert body.closed.is_set()


def test_retry_after_headers_are_read() -> None:
    def limited(headers: dict[str, str]) -> Any:
        response = httpx2.Response(429, headers=headers, request=httpx2.Request("POST", BASE_URL))
        return openai.RateLimitError("limited", response=response, body=None)

    assert retry_after_seconds(limited({"retry-after-ms": "1500"})) == 1.5
    assert retry_after_seconds(limited({"retry-after": "7"})) == 7
    future = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    seconds = retry_after_seconds(limited({"retry-after": future}))
    assert seconds is not None
    assert 25 < seconds <= 30
    assert retry_after_seconds(limited({"retry-after": "soon"})) is None
    assert retry_after_seconds(limited({})) is None


def test_events_the_relay_never_forwards_are_skipped_by_name_without_decoding() -> None:
    # Not JSON at all: decoding it would have turned the answer into an error.
    assert map_payload(RawEvent("response.output_item.done", b"{not json")) is None
    assert map_payload(RawEvent("response.created", b"{not json")) is None
    named = RawEvent("response.output_text.delta", json.dumps(delta("a")).encode())
    unnamed = RawEvent("message", json.dumps(delta("b")).encode())
    assert map_payload(named) == TextDelta("a")
    assert map_payload(unnamed) == TextDelta("b")
    # Error events are decoded whatever their name says.
    error = RawEvent("error", b'{"type": "error", "code": "server_error"}')
    assert map_payload(error) == AnswerFailed(
        ErrorCode.UPSTREAM_FAILED, UPSTREAM_MESSAGES[ErrorCode.UPSTREAM_FAILED]
    )
