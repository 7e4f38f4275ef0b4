"""A fake OpenAI Responses API server that speaks the real wire format.

Why it exists: OpenAI cannot be reached from CI or this machine, and mocking the SDK would
hide exactly the bugs that matter for a relay (SSE framing, event order, error shapes,
disconnects). This serves ``POST /v1/responses`` over real HTTP, so the real
``openai.AsyncOpenAI`` client (and anything built on it) talks to it unchanged. It also
serves ``POST /v1/embeddings`` (deterministic vectors, after ``embeddings_latency`` seconds,
as floats or base64 as ``encoding_format`` asks), for semantic search.

Each request is answered by the next queued :class:`Scenario` (or a default one), which
scripts the deltas, their pacing, HTTP errors and how the stream ends. The
:class:`FakeResponsesAPI` records what it received and how each stream ended, so tests
can assert on what the upstream saw, e.g. that the relay closed an abandoned stream.

Run standalone for manual testing and benchmarks::

    uv run python -m testing.fake_responses_api --port 9100 [--deltas-file F] [--delay 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Final, Literal, TypedDict

import uvicorn

__all__ = [
    "DEFAULT_DELTAS",
    "SAMPLE_ANSWER_DELTAS",
    "SAMPLE_ANSWER_MARKDOWN",
    "FakeResponsesAPI",
    "FakeUsage",
    "RecordedRequest",
    "RunningFake",
    "Scenario",
    "Terminal",
    "base64_embedding",
    "fake_embedding",
    "main",
    "run_fake_responses_api",
    "split_into_deltas",
]

Terminal = Literal[
    "completed", "failed", "incomplete", "error_flat", "error_nested", "drop", "stall"
]
"""How a scripted stream ends; see :class:`Scenario`."""

_TERMINALS: Final = frozenset(
    {"completed", "failed", "incomplete", "error_flat", "error_nested", "drop", "stall"}
)

# Minimal ASGI types, so the app needs no framework and the hot path stays a plain send().
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]

_RESPONSES_PATHS: Final = frozenset({"/v1/responses", "/responses"})
_EMBEDDINGS_PATHS: Final = frozenset({"/v1/embeddings", "/embeddings"})
EMBEDDING_DIMENSIONS: Final = 64
_WORD = re.compile(r"\w+")


def fake_embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic vector for ``text``: its words hashed into ``dimensions`` buckets
    (texts that share words are close), normalised. Stable across processes and runs."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = zlib.crc32(word.encode())
        vector[digest % dimensions] += 1.0 if digest & 0x100 else -1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in vector]


def base64_embedding(vector: Sequence[float]) -> str:
    """A vector as OpenAI sends it for ``encoding_format: base64``: its float32 values,
    little-endian."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


_DEFAULT_MODEL: Final = "gpt-4.1-mini"
_PADDING: Final = tuple(
    b',"obfuscation":"%b"' % padding for padding in (b"kQ", b"Zr8vX", b"", b"a1B2c3D4e5", b"Yt")
)

DEFAULT_DELTAS: Final[tuple[str, ...]] = ("Hello", " from", " the", " fake", " Responses", " API.")
"""What a request gets when no scenario is queued: short, so failures read easily."""

SAMPLE_ANSWER_MARKDOWN: Final = """\
## 요약 (Summary)

이 지원자는 **백엔드 엔지니어**로 5년 동안 Python과 Go로 결제 시스템을 만들었습니다.
She led the migration of a monolith to event-driven services, cutting p99 latency by 40%.

### 주요 경험
- 2021–2024: 핀테크 스타트업에서 정산 파이프라인 설계 및 운영
- Built a streaming ETL on Kafka that handles ~2M events/day
- 오픈소스 기여: `asyncpg` 버그 수정 2건

> "문제를 끝까지 파고드는 사람" — a former manager

더 궁금한 점이 있으면 물어보세요! Feel free to ask about specific projects.
"""
"""A realistic answer (Korean, English, markdown, line breaks) for the standalone server."""


def split_into_deltas(text: str, max_chars: int = 4) -> tuple[str, ...]:
    """Split ``text`` into token-sized deltas that join back to exactly ``text``.

    Whitespace (including line breaks) sticks to the start of the next chunk, the way model
    tokens usually carry their leading space, so relays see realistic boundaries.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    return tuple(re.findall(rf"\s*\S{{1,{max_chars}}}|\s+", text))


SAMPLE_ANSWER_DELTAS: Final = split_into_deltas(SAMPLE_ANSWER_MARKDOWN)


def _json(value: object) -> str:
    """Compact UTF-8 JSON, as OpenAI sends it (Korean is not \\u-escaped); text with half a
    surrogate pair (a model's token can end mid-pair) is sent escaped, as only JSON can."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"))
    return text


@dataclass(frozen=True)
class FakeUsage:
    """Token counts in the final Response; ``output_tokens=None`` means one per delta."""

    input_tokens: int = 120
    cached_tokens: int = 0
    output_tokens: int | None = None
    reasoning_tokens: int = 0

    def to_json(self, delta_count: int) -> dict[str, Any]:
        output_tokens = delta_count if self.output_tokens is None else self.output_tokens
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + output_tokens,
        }


@dataclass(frozen=True)
class Scenario:
    """How the fake answers one request.

    ``terminal`` picks the ending after the deltas:

    - ``completed``: the done events, then ``response.completed`` with usage.
    - ``failed``: ``response.failed`` with ``error {"code": "server_error", ...}``.
    - ``incomplete``: done events, then ``response.incomplete`` (``max_output_tokens``).
    - ``error_flat``: ``event: error`` with a flat ``{"type": "error", "code": ...}`` body
      (code ``rate_limit_exceeded``); the SDK yields a ``ResponseErrorEvent``.
    - ``error_nested``: ``event: error`` with ``{"error": {...}}``; the SDK raises ``APIError``.
    - ``drop``: the HTTP body ends cleanly with no terminal event.
    - ``stall``: nothing more is sent; the connection stays open until the client leaves,
      ``stall_seconds`` pass, or the fake is stopped (then the body ends as in ``drop``).

    A ``status_code`` other than 200 answers with OpenAI's JSON error body instead of a
    stream (``error_body`` replaces that body; 429 adds a ``retry-after`` header).
    """

    deltas: Sequence[str] = DEFAULT_DELTAS
    terminal: Terminal = "completed"
    status_code: int = 200
    delay_between_deltas: float = 0.0
    delay_before_first_delta: float = 0.0
    delay_before_response: float = 0.0
    usage: FakeUsage = field(default_factory=FakeUsage)
    model: str | None = None
    error_message: str | None = None
    error_body: Mapping[str, Any] | None = None
    retry_after: str | None = "1"
    stall_seconds: float = 300.0
    function_call: tuple[str, Mapping[str, Any]] | None = None
    """``(name, arguments)``: the model calls that function (a tool, or an agents handoff such
    as ``transfer_to_logistics``) instead of writing text; the deltas are not sent. The call
    comes after ``delay_before_first_delta``, as a model's first output would."""

    def __post_init__(self) -> None:
        if isinstance(self.deltas, str):
            raise TypeError("deltas must be a sequence of strings, not one string")
        object.__setattr__(self, "deltas", tuple(self.deltas))
        if self.terminal not in _TERMINALS:
            raise ValueError(f"unknown terminal {self.terminal!r}")
        if not 200 <= self.status_code <= 599:
            raise ValueError(f"status_code must be 200..599, got {self.status_code}")

    @cached_property
    def text(self) -> str:
        """The whole answer, as ``output_text.done`` and the final Response carry it."""
        return "".join(self.deltas)

    @cached_property
    def _encoded_deltas(self) -> tuple[bytes, ...]:
        # Encoded once per scenario, not per request: the delta loop only splices bytes.
        return tuple(_json(delta).encode() for delta in self.deltas)


class RecordedRequest(TypedDict):
    """One request as the fake received it."""

    method: str
    path: str
    body: dict[str, Any]
    authorization: str | None
    headers: dict[str, str]


_ERROR_DEFAULTS: Final[Mapping[int, tuple[str, str | None, str]]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported.",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 1s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def _http_error_body(status_code: int, message: str | None) -> dict[str, Any]:
    """OpenAI's JSON error body for ``status_code``, as the SDK maps it to exceptions."""
    fallback_type = "server_error" if status_code >= 500 else "invalid_request_error"
    error_type, code, default_message = _ERROR_DEFAULTS.get(
        status_code, (fallback_type, None, f"HTTP {status_code} from the fake Responses API.")
    )
    return {
        "error": {
            "message": message or default_message,
            "type": error_type,
            "param": None,
            "code": code,
        }
    }


def _message_item(item_id: str, status: str, text: str | None) -> dict[str, Any]:
    content = [] if text is None else [_text_part(text)]
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "content": content,
        "role": "assistant",
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _agent_move(body: Mapping[str, Any], answer: Scenario) -> Scenario:
    """What an agents model does next for ``body``: hand off, search, or ``answer``."""
    tools = [tool.get("name") for tool in body.get("tools") or () if isinstance(tool, dict)]
    handoffs = [name for name in tools if isinstance(name, str) and name.startswith("transfer_to_")]
    pacing = {"delay_before_first_delta": answer.delay_before_first_delta, "usage": answer.usage}
    if handoffs:
        return Scenario(function_call=(handoffs[0], {}), **pacing)
    items = body.get("input") or ()
    searched = any(
        isinstance(i, dict)
        and i.get("type") == "function_call"
        and i.get("name") == "search_profile"
        for i in items
    )
    if "search_profile" in tools and not searched:
        return Scenario(function_call=("search_profile", {"query": "profile"}), **pacing)
    return answer


def _requested_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and model else _DEFAULT_MODEL


def _number_or(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


class _ResponseShape:
    """Builds full Response objects for one request, echoing what the real API echoes."""

    def __init__(self, body: Mapping[str, Any], scenario: Scenario) -> None:
        self.id = f"resp_{uuid.uuid4().hex}"
        self.item_id = f"msg_{uuid.uuid4().hex}"
        self.created_at = int(time.time())
        self._body = body
        self._model = scenario.model or _requested_model(body)

    def build(
        self,
        status: str,
        *,
        output: list[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        incomplete_details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = self._body
        instructions = body.get("instructions")
        max_output_tokens = body.get("max_output_tokens")
        finished = status in {"completed", "failed", "incomplete"}
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": error,
            "incomplete_details": incomplete_details,
            "instructions": instructions if isinstance(instructions, str) else None,
            "max_output_tokens": max_output_tokens if isinstance(max_output_tokens, int) else None,
            "max_tool_calls": None,
            "model": self._model,
            "output": output or [],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "prompt_cache_key": None,
            "reasoning": {"effort": None, "summary": None},
            "safety_identifier": None,
            "service_tier": "default" if finished else "auto",
            "store": body.get("store", True) is not False,
            "temperature": _number_or(body.get("temperature"), 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [],
            "top_logprobs": 0,
            "top_p": _number_or(body.get("top_p"), 1.0),
            "truncation": "disabled",
            "usage": usage,
            "user": None,
            "metadata": {},
        }


class _FrameSequencer:
    """Numbers SSE frames from 0, since clients may check ``sequence_number`` ordering."""

    def __init__(self) -> None:
        self.next_number = 0

    def frame(self, event_type: str, fields: Mapping[str, Any]) -> bytes:
        payload = {"type": event_type, **fields, "sequence_number": self.next_number}
        self.next_number += 1
        return f"event: {event_type}\ndata: {_json(payload)}\n\n".encode()


def _sse_headers(request_id: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        (b"x-request-id", request_id.encode()),
    ]


async def _read_body(receive: _Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _wait_for_disconnect(receive: _Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_json(
    send: _Send, status: int, payload: object, extra_headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = _json(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", f"req_{uuid.uuid4().hex}".encode()),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class FakeResponsesAPI:
    """The ASGI app plus its script (queued scenarios) and its record of what happened.

    Scenarios are enqueued from the test thread while the server runs on its own thread and
    loop, so all shared state sits behind one condition variable; :meth:`wait_for` lets a
    test block on a state change instead of sleeping.
    """

    def __init__(
        self,
        default_scenario: Scenario | None = None,
        *,
        required_api_key: str | None = None,
        record_requests: bool = True,
        embeddings_latency: float = 0.0,
        embedding_dimensions: int = EMBEDDING_DIMENSIONS,
        agent_moves: bool = False,
    ) -> None:
        self.default_scenario = default_scenario or Scenario()
        self.agent_moves = agent_moves
        """With nothing queued, answer as an agents model would: a request that offers
        handoffs (``transfer_to_*`` tools) hands off to the first; one that offers
        ``search_profile`` and has no tool output yet searches; else the default scenario. The
        calls come after the default scenario's ``delay_before_first_delta``."""
        self.embeddings_latency = embeddings_latency
        """Seconds before each ``/v1/embeddings`` answer (OpenAI's are a few hundred ms)."""
        self.embedding_dimensions = embedding_dimensions
        """A vector's length when the request does not ask for one (``dimensions``); OpenAI's
        ``text-embedding-3-small`` gives 1,536."""
        self.required_api_key = required_api_key
        self.record_requests = record_requests
        self.scenarios: deque[Scenario] = deque()
        self._state = threading.Condition(threading.RLock())
        self._requests: list[RecordedRequest] = []
        self._closed_by_client = 0
        self._finished_streams = 0
        self._open_streams = 0
        self._stall_loop: asyncio.AbstractEventLoop | None = None
        self._stall_release: asyncio.Event | None = None

    # --- scripting and inspection (any thread) ---------------------------------------------

    def enqueue(self, *scenarios: Scenario) -> None:
        """Queue scenarios; each request consumes one, then the default scenario applies."""
        with self._state:
            self.scenarios.extend(scenarios)

    def reset(self) -> None:
        """Forget queued scenarios, recorded requests and stream counters between tests."""
        with self._state:
            self.scenarios.clear()
            self._requests.clear()
            self._closed_by_client = 0
            self._finished_streams = 0
            self._state.notify_all()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._state:
            return list(self._requests)

    @property
    def closed_by_client(self) -> int:
        """Streams whose client disconnected before the fake finished sending them."""
        with self._state:
            return self._closed_by_client

    @property
    def finished_streams(self) -> int:
        """Streams the fake sent to the end (including ``drop`` and released ``stall``)."""
        with self._state:
            return self._finished_streams

    @property
    def open_streams(self) -> int:
        """Streams in flight right now."""
        with self._state:
            return self._open_streams

    def wait_for(self, predicate: Callable[[], bool], timeout_seconds: float = 5.0) -> bool:
        """Block until ``predicate()`` holds (re-checked on every state change) or time runs out.

        Returns whether it held. The predicate runs under the state lock, so it may read the
        properties above.
        """
        with self._state:
            return self._state.wait_for(predicate, timeout_seconds)

    async def wait_for_async(
        self, predicate: Callable[[], bool], timeout_seconds: float = 5.0
    ) -> bool:
        """:meth:`wait_for` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout_seconds)

    def release_stalled_streams(self) -> None:
        """End every ``stall`` stream now (no terminal event), so the server can stop promptly."""
        with self._state:
            loop, event = self._stall_loop, self._stall_release
            # Later stalls wait on a fresh event: this release is for the streams open now.
            self._stall_release = None
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(event.set)

    # --- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: _Message, receive: _Receive, send: _Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/") or "/"
        if path not in _RESPONSES_PATHS and path not in _EMBEDDINGS_PATHS:
            await _send_json(send, 404, _http_error_body(404, f"Invalid URL (POST {path})"))
            return
        if scope["method"] != "POST":
            await _send_json(send, 405, _http_error_body(405, "Only POST is supported."))
            return

        raw_body = await _read_body(receive)
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        try:
            body = json.loads(raw_body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            await _send_json(
                send,
                400,
                _http_error_body(400, "We could not parse the JSON body of your request."),
            )
            return
        self._record(scope["method"], path, body, headers)

        if self.required_api_key is not None and (
            headers.get("authorization") != f"Bearer {self.required_api_key}"
        ):
            await _send_json(send, 401, _http_error_body(401, None))
            return

        if path in _EMBEDDINGS_PATHS:
            # Embeddings take no scenario: the queue scripts the answers only.
            await self._answer_embeddings(body, send)
            return
        scenario = self._next_scenario()
        if self.agent_moves and scenario is self.default_scenario:
            scenario = _agent_move(body, scenario)
        if scenario.status_code != 200:
            await self._answer_http_error(scenario, send)
        elif body.get("stream") is True:
            await self._answer_stream(scenario, body, receive, send)
        else:
            await self._answer_json(scenario, body, send)

    async def _lifespan(self, receive: _Receive, send: _Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._stall_release_event()  # bind to the server loop before any test needs it
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- answers ----------------------------------------------------------------------------

    async def _answer_http_error(self, scenario: Scenario, send: _Send) -> None:
        if scenario.delay_before_response:
            await asyncio.sleep(scenario.delay_before_response)
        payload = scenario.error_body or _http_error_body(
            scenario.status_code, scenario.error_message
        )
        extra: list[tuple[bytes, bytes]] = []
        if scenario.status_code == 429 and scenario.retry_after is not None:
            extra.append((b"retry-after", scenario.retry_after.encode()))
        await _send_json(send, scenario.status_code, payload, extra)

    async def _answer_embeddings(self, body: Mapping[str, Any], send: _Send) -> None:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            await _send_json(send, 400, _http_error_body(400, "'input' must be text."))
            return
        dimensions = body.get("dimensions", self.embedding_dimensions)
        encoding = body.get("encoding_format", "float")
        if not isinstance(dimensions, int) or dimensions < 1 or encoding not in ("float", "base64"):
            message = "'dimensions' must be a positive integer, 'encoding_format' float or base64."
            await _send_json(send, 400, _http_error_body(400, message))
            return
        if self.embeddings_latency:
            await asyncio.sleep(self.embeddings_latency)
        tokens = sum(len(text.split()) for text in inputs)
        vectors = [fake_embedding(text, dimensions) for text in inputs]
        await _send_json(
            send,
            200,
            {
                "object": "list",
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": vector if encoding == "float" else base64_embedding(vector),
                    }
                    for i, vector in enumerate(vectors)
                ],
                "model": body.get("model") or "text-embedding-3-small",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    async def _answer_json(self, scenario: Scenario, body: Mapping[str, Any], send: _Send) -> None:
        if scenario.delay_before_response:
            await asyncio.sleep(scenario.delay_before_response)
        shape = _ResponseShape(body, scenario)
        usage = scenario.usage.to_json(len(scenario.deltas))
        if scenario.terminal == "failed":
            response = shape.build(
                "failed",
                usage=None,
                error={
                    "code": "server_error",
                    "message": scenario.error_message or "The model failed.",
                },
            )
        elif scenario.terminal == "incomplete":
            response = shape.build(
                "incomplete",
                output=[_message_item(shape.item_id, "incomplete", scenario.text)],
                usage=usage,
                incomplete_details={"reason": "max_output_tokens"},
            )
        else:
            response = shape.build(
                "completed",
                output=[_message_item(shape.item_id, "completed", scenario.text)],
                usage=usage,
            )
        await _send_json(send, 200, response)

    async def _answer_stream(
        self, scenario: Scenario, body: Mapping[str, Any], receive: _Receive, send: _Send
    ) -> None:
        # uvicorn silently drops writes after a disconnect, so only a concurrent receive()
        # can tell that the client left; whichever task finishes first decides the outcome.
        writer = asyncio.create_task(self._write_stream(scenario, body, send))
        listener = asyncio.create_task(_wait_for_disconnect(receive))
        with self._state:
            self._open_streams += 1
        writer_finished = client_left = False
        try:
            await asyncio.wait((writer, listener), return_when=asyncio.FIRST_COMPLETED)
            if writer.done():
                writer.result()  # re-raise a bug in the writer instead of hiding it
                writer_finished = True
            else:
                client_left = True
        finally:
            for task in (writer, listener):
                task.cancel()
            await asyncio.gather(writer, listener, return_exceptions=True)
            with self._state:
                self._open_streams -= 1
                self._finished_streams += writer_finished
                self._closed_by_client += client_left
                self._state.notify_all()

    async def _write_stream(self, scenario: Scenario, body: Mapping[str, Any], send: _Send) -> None:
        if scenario.delay_before_response:
            await asyncio.sleep(scenario.delay_before_response)
        shape = _ResponseShape(body, scenario)
        frames = _FrameSequencer()
        item_id = shape.item_id
        position = {"item_id": item_id, "output_index": 0, "content_index": 0}
        in_progress = shape.build("in_progress")

        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": _sse_headers(f"req_{uuid.uuid4().hex}"),
            }
        )
        if scenario.function_call is not None:
            if scenario.delay_before_first_delta:
                await asyncio.sleep(scenario.delay_before_first_delta)
            called = self._function_call_frames(scenario, shape, frames, in_progress)
            await send({"type": "http.response.body", "body": called, "more_body": False})
            return
        opening = b"".join(
            (
                frames.frame("response.created", {"response": in_progress}),
                frames.frame("response.in_progress", {"response": in_progress}),
                frames.frame(
                    "response.output_item.added",
                    {"output_index": 0, "item": _message_item(item_id, "in_progress", None)},
                ),
                frames.frame("response.content_part.added", {**position, "part": _text_part("")}),
            )
        )
        await send({"type": "http.response.body", "body": opening, "more_body": True})

        # Hot path: splice pre-encoded JSON strings into a fixed template, one send per delta.
        delta_template = (
            b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
            b'"item_id":' + _json(item_id).encode() + b',"output_index":0,"content_index":0,'
            b'"delta":%b,"logprobs":[],"sequence_number":%d%b}\n\n'
        )
        # OpenAI pads each delta with random characters so that its length tells nothing,
        # unless the request turns it off (``stream_options.include_obfuscation: false``).
        options = body.get("stream_options")
        obfuscated = (
            not isinstance(options, dict) or options.get("include_obfuscation") is not False
        )
        paddings = _PADDING if obfuscated else (b"",)
        first_delta_number = sequence_number = frames.next_number
        delay = scenario.delay_between_deltas
        if scenario.delay_before_first_delta:
            await asyncio.sleep(scenario.delay_before_first_delta)
        for encoded_delta in scenario._encoded_deltas:
            if delay and sequence_number != first_delta_number:
                await asyncio.sleep(delay)
            await send(
                {
                    "type": "http.response.body",
                    "body": delta_template
                    % (encoded_delta, sequence_number, paddings[sequence_number % len(paddings)]),
                    "more_body": True,
                }
            )
            sequence_number += 1
        frames.next_number = sequence_number

        if scenario.terminal == "stall":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stall_release_event().wait(), scenario.stall_seconds)
        ending = self._terminal_frames(scenario, shape, frames, position)
        await send({"type": "http.response.body", "body": ending, "more_body": False})

    @staticmethod
    def _function_call_frames(
        scenario: Scenario,
        shape: _ResponseShape,
        frames: _FrameSequencer,
        in_progress: dict[str, Any],
    ) -> bytes:
        """A whole response whose only output is a function call, as the API streams it."""
        assert scenario.function_call is not None
        name, arguments = scenario.function_call
        encoded = _json(dict(arguments))
        item_id = f"fc_{uuid.uuid4().hex}"
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        item = {
            "id": item_id,
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": call_id,
            "name": name,
        }
        done_item = {**item, "status": "completed", "arguments": encoded}
        usage = scenario.usage.to_json(1)
        return b"".join(
            (
                frames.frame("response.created", {"response": in_progress}),
                frames.frame("response.in_progress", {"response": in_progress}),
                frames.frame("response.output_item.added", {"output_index": 0, "item": item}),
                frames.frame(
                    "response.function_call_arguments.delta",
                    {"item_id": item_id, "output_index": 0, "delta": encoded},
                ),
                frames.frame(
                    "response.function_call_arguments.done",
                    {"item_id": item_id, "output_index": 0, "arguments": encoded, "name": name},
                ),
                frames.frame("response.output_item.done", {"output_index": 0, "item": done_item}),
                frames.frame(
                    "response.completed",
                    {"response": shape.build("completed", output=[done_item], usage=usage)},
                ),
            )
        )

    def _terminal_frames(
        self,
        scenario: Scenario,
        shape: _ResponseShape,
        frames: _FrameSequencer,
        position: Mapping[str, Any],
    ) -> bytes:
        """Everything after the deltas, sent with the end of the body in one write."""
        terminal = scenario.terminal
        text = scenario.text
        if terminal in {"drop", "stall"}:
            return b""
        if terminal == "failed":
            error = {
                "code": "server_error",
                "message": scenario.error_message or "The model failed to generate a response.",
            }
            return frames.frame("response.failed", {"response": shape.build("failed", error=error)})
        if terminal == "error_flat":
            return frames.frame(
                "error",
                {
                    "code": "rate_limit_exceeded",
                    "message": scenario.error_message
                    or "Rate limit reached. Please try again later.",
                    "param": None,
                },
            )
        if terminal == "error_nested":
            nested = {
                "error": {
                    "type": "server_error",
                    "code": "server_error",
                    "message": scenario.error_message or "The server had an error while streaming.",
                    "param": None,
                }
            }
            return f"event: error\ndata: {_json(nested)}\n\n".encode()

        item_status = "completed" if terminal == "completed" else "incomplete"
        item = _message_item(shape.item_id, item_status, text)
        closing = [
            frames.frame("response.output_text.done", {**position, "text": text, "logprobs": []}),
            frames.frame("response.content_part.done", {**position, "part": _text_part(text)}),
            frames.frame("response.output_item.done", {"output_index": 0, "item": item}),
        ]
        usage = scenario.usage.to_json(len(scenario.deltas))
        if terminal == "completed":
            response = shape.build("completed", output=[item], usage=usage)
        else:
            response = shape.build(
                "incomplete",
                output=[item],
                usage=usage,
                incomplete_details={"reason": "max_output_tokens"},
            )
        closing.append(frames.frame(f"response.{terminal}", {"response": response}))
        return b"".join(closing)

    # --- internals --------------------------------------------------------------------------

    def _next_scenario(self) -> Scenario:
        with self._state:
            return self.scenarios.popleft() if self.scenarios else self.default_scenario

    def _record(
        self, method: str, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> None:
        if not self.record_requests:
            return
        recorded = RecordedRequest(
            method=method,
            path=path,
            body=body,
            authorization=headers.get("authorization"),
            headers=headers,
        )
        with self._state:
            self._requests.append(recorded)
            self._state.notify_all()

    def _stall_release_event(self) -> asyncio.Event:
        """The event that ends stalls, bound to the loop now serving (a fake may be re-served)."""
        loop = asyncio.get_running_loop()
        with self._state:
            if self._stall_loop is not loop or self._stall_release is None:
                self._stall_loop = loop
                self._stall_release = asyncio.Event()
            return self._stall_release


@dataclass(frozen=True)
class RunningFake:
    """A fake served on a real port; point ``AsyncOpenAI(base_url=...)`` at ``base_url``."""

    api: FakeResponsesAPI
    host: str
    port: int

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"


class _ReadySignallingServer(uvicorn.Server):
    """Signals a thread-safe event once listening, so callers wait on readiness, not sleeps."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._ready.set()


def _bind_free_port(host: str) -> socket.socket:
    """Bind port 0 ourselves: the OS picks a free port and no other process can race us to it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


@contextlib.contextmanager
def run_fake_responses_api(
    api: FakeResponsesAPI | None = None,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 10.0,
    shutdown_timeout: float = 10.0,
) -> Iterator[RunningFake]:
    """Serve ``api`` with uvicorn on a free port in a background thread with its own loop."""
    api = api or FakeResponsesAPI()
    sock = _bind_free_port(host)
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        api,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    ready = threading.Event()
    server = _ReadySignallingServer(config, ready)
    thread = threading.Thread(
        target=server.run,
        kwargs={"sockets": [sock]},
        name=f"fake-responses-api:{port}",
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not ready.wait(timeout=0.05):
            if not thread.is_alive():
                raise RuntimeError("the fake Responses API server failed to start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the fake Responses API did not start in {startup_timeout}s")
        yield RunningFake(api=api, host=host, port=port)
    finally:
        api.release_stalled_streams()
        server.should_exit = True
        thread.join(shutdown_timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(shutdown_timeout)
        sock.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the fake standalone, answering every request with the sample answer."""
    parser = argparse.ArgumentParser(
        prog="python -m testing.fake_responses_api",
        description="Fake OpenAI Responses API (streams a scripted answer).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument(
        "--deltas-file",
        type=Path,
        help="a text/markdown answer to stream instead of the built-in sample",
    )
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds between deltas (default 0)"
    )
    parser.add_argument("--terminal", choices=sorted(_TERMINALS), default="completed")
    parser.add_argument(
        "--chunk-chars", type=int, default=4, help="max non-space characters per delta (default 4)"
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    text = (
        args.deltas_file.read_text(encoding="utf-8") if args.deltas_file else SAMPLE_ANSWER_MARKDOWN
    )
    scenario = Scenario(
        deltas=split_into_deltas(text, args.chunk_chars),
        delay_between_deltas=args.delay,
        terminal=args.terminal,
    )
    # Benchmarks send many requests; recording them all would only grow memory.
    api = FakeResponsesAPI(scenario, record_requests=False)
    print(
        f"Fake Responses API on http://{args.host}:{args.port}/v1 "
        f"({len(scenario.deltas)} deltas, {args.delay}s apart, ends {args.terminal})",
        flush=True,
    )
    uvicorn.run(
        api,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
