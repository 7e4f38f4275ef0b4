"""A finished answer gives its upstream connection back: the next answer does not reconnect;
and the body is read from the SDK's aiohttp transport as the service reads it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import httpx2
import pytest
from openai import AsyncOpenAI, DefaultAioHttpClient

from domain.errors import ErrorCode
from domain.models import AnswerDone, AnswerFailed, AnswerRequest, Message, TextDelta
from infrastructure.openai_engine import ResponsesEngine, aiohttp_body
from testing.fake_responses_api import FakeResponsesAPI, Scenario, run_fake_responses_api


class PeerRecordingAPI(FakeResponsesAPI):
    """The fake, noting the client address (host, port) of each request: one per connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.peers: list[tuple[str, int]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.peers.append(tuple(scope["client"]))
        await super().__call__(scope, receive, send)


def question() -> AnswerRequest:
    return AnswerRequest(
        messages=(Message("user", "Where did she work?"),), model="gpt-test", grounding=()
    )


async def test_sequential_answers_share_one_upstream_connection() -> None:
    api = PeerRecordingAPI(Scenario(deltas=("one ", "two")))
    with run_fake_responses_api(api) as running:
        client = AsyncOpenAI(base_url=running.base_url, api_key="sk-test", max_retries=0)
        engine = ResponsesEngine(client, max_output_tokens=100)
        for _ in range(3):
            events = [event async for event in engine.stream_answer(question())]
            assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "one two"
            assert isinstance(events[-1], AnswerDone)
        await client.close()
    assert len(api.peers) == 3
    assert len(set(api.peers)) == 1, api.peers


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_an_answer_closed_early_does_not_leave_its_connection_in_the_pool(
    transport: str,
) -> None:
    api = PeerRecordingAPI(Scenario(deltas=("one ",) * 50, delay_between_deltas=0.01))
    with run_fake_responses_api(api) as running:
        client = (
            aiohttp_client(running.base_url)
            if transport == "aiohttp"
            else AsyncOpenAI(base_url=running.base_url, api_key="sk-test", max_retries=0)
        )
        engine = ResponsesEngine(client, max_output_tokens=100)
        stream = engine.stream_answer(question())
        assert isinstance(await anext(stream), TextDelta)
        await stream.aclose()  # the recruiter left mid-answer
        assert await api.wait_for_async(lambda: api.closed_by_client == 1)
        api.default_scenario = Scenario(deltas=("again",))
        events = [event async for event in engine.stream_answer(question())]
        assert isinstance(events[-1], AnswerDone)
        await client.close()
    assert len(set(api.peers)) == 2


def aiohttp_client(base_url: str) -> AsyncOpenAI:
    """As the service builds it (``bootstrap.build_openai_client``): the SDK's aiohttp client."""
    return AsyncOpenAI(
        base_url=base_url, api_key="sk-test", max_retries=0, http_client=DefaultAioHttpClient()
    )


async def test_the_sdk_aiohttp_transport_gives_the_body_reader_the_engine_reads() -> None:
    """The engine reads a streamed body from the aiohttp transport's own reader, which the SDK
    does not make public: if a new SDK stops exposing it, this fails (the engine would still
    work, through httpx, at more CPU per delta)."""
    api = PeerRecordingAPI(Scenario(deltas=("one ", "two")))
    with run_fake_responses_api(api) as running:
        client = aiohttp_client(running.base_url)
        async with client.responses.with_streaming_response.create(
            model="gpt-test", input="Where?", stream=True
        ) as response:
            assert isinstance(aiohttp_body(response.http_response), aiohttp.StreamReader)
        engine = ResponsesEngine(client, max_output_tokens=100)
        for _ in range(2):  # read to its end and drained: the connection goes back
            events = [event async for event in engine.stream_answer(question())]
            assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "one two"
            assert isinstance(events[-1], AnswerDone)
        await client.close()
    assert len(set(api.peers[1:])) == 1, api.peers


def test_a_body_httpx_must_decode_is_read_through_httpx() -> None:
    compressed = httpx2.Response(200, headers={"content-encoding": "gzip"}, content=b"")
    assert aiohttp_body(compressed) is None
    assert aiohttp_body(httpx2.Response(200, content=b"data: {}\n\n")) is None


async def test_a_connection_cut_mid_body_ends_the_answer_upstream_interrupted() -> None:
    """The body's chunked encoding never ends: the connection closes after the first delta."""
    first = {"type": "response.output_text.delta", "delta": "Half", "sequence_number": 1}
    event = f"event: response.output_text.delta\ndata: {json.dumps(first)}\n\n".encode()

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # the request's head; its body is left unread
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(event), event)
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()

    server = await asyncio.start_server(cut, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aiohttp_client(f"http://127.0.0.1:{port}/v1")
    try:
        engine = ResponsesEngine(client, max_output_tokens=100)
        events = [event async for event in engine.stream_answer(question())]
    finally:
        await client.close()
        server.close()
    assert events[0] == TextDelta("Half")
    assert isinstance(events[-1], AnswerFailed)
    assert events[-1].code == ErrorCode.UPSTREAM_INTERRUPTED
