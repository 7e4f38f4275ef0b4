"""One set of rules for the Responses API's events: the relay's raw JSON and the Agents SDK's
typed events mean the same answer events."""

from __future__ import annotations

import httpx2
import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from common.sse import EventStreamDecoder, RawEvent
from domain.errors import ErrorCode
from domain.models import AnswerDone, AnswerFailed, TextDelta, Usage
from infrastructure.responses_events import failure, map_event, map_payload
from testing.fake_responses_api import FakeResponsesAPI, FakeUsage, Scenario, Terminal

SDK_EVENT: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
USAGE = FakeUsage(input_tokens=11, cached_tokens=0, output_tokens=7, reasoning_tokens=0)


async def upstream_events(terminal: Terminal) -> list[RawEvent]:
    """The events the fake Responses API streams for one answer ending with ``terminal``."""
    api = FakeResponsesAPI()
    api.enqueue(Scenario(deltas=["Hel", "lo\n"], terminal=terminal, usage=USAGE))
    transport = httpx2.ASGITransport(app=api)
    async with httpx2.AsyncClient(transport=transport, base_url="http://fake") as client:
        response = await client.post(
            "/v1/responses", json={"model": "gpt-4.1-mini", "input": "Hi", "stream": True}
        )
    decoder = EventStreamDecoder()
    return decoder.feed(response.content) + decoder.end()


def relayed(events: list[RawEvent]) -> list[object]:
    return [mapped for event in events if (mapped := map_payload(event)) is not None]


@pytest.mark.parametrize(
    ("terminal", "ending"),
    [
        ("completed", AnswerDone("stop", Usage(11, 7, 18))),
        ("incomplete", AnswerDone("max_output_tokens", Usage(11, 7, 18))),
        ("failed", failure(ErrorCode.UPSTREAM_FAILED)),
        ("error_flat", failure(ErrorCode.UPSTREAM_RATE_LIMITED)),
    ],
)
async def test_the_sdks_typed_events_map_as_their_json_does(
    terminal: Terminal, ending: AnswerDone | AnswerFailed
) -> None:
    events = await upstream_events(terminal)
    typed = [SDK_EVENT.validate_json(event.data) for event in events]

    from_sdk = [mapped for event in typed if (mapped := map_event(event)) is not None]

    assert from_sdk == relayed(events)
    assert from_sdk[-1] == ending
    assert from_sdk[:2] == [TextDelta("Hel"), TextDelta("lo\n")]
