"""One set of rules for the Responses API's events: the relay's raw JSON and the Agents SDK's
typed events mean the same answer events."""

from __future__ import annotations

import json

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from common.sse import EventStreamDecoder, RawEvent
from domain.errors import ErrorCode
from domain.models import AnswerDone, AnswerFailed, TextDelta, Usage
from infrastructure.responses_events import decoded, failure, map_event, map_payload
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


# What the relay's decoding must read exactly as the standard library does: real delta events,
# and what orjson alone would refuse (half a surrogate pair, NaN, integers past 64 bits).
EVENTS_AS_SENT = [
    b'{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1",'
    b'"output_index":0,"content_index":0,"delta":" \xeb\xb0\xb1\xec\x97\x94\xeb\x93\x9c\\n\\n",'
    b'"logprobs":[],"obfuscation":"aB"}',
    b'{"delta":"\\ud83d\\ude00 \\"quoted\\" \\\\ \\u0000\\b\\f\\u2028</script>"}',
    b'{"delta":"\\ud83d"}',  # the high half of a pair, the low half in the next delta
    b'{"delta":"\\ude00 after"}',
    b'{"delta":"\\ude00\\ud83d"}',  # halves in the wrong order
    b'{"score":NaN,"other":-Infinity}',
    b'{"sequence_number":123456789012345678901234567890,"cost":1e400}',
    b'[1.5,-0.0,1e-7,{"a":{"b":[null,true,false]}}]',
    '{"delta":"그녀는 2019년부터 백엔드 엔지니어로 일했습니다"}'.encode(),
]


# What json.loads raises for bytes that are not JSON, or not UTF-8: both are ValueErrors.
NOT_JSON = (json.JSONDecodeError, UnicodeDecodeError)


@pytest.mark.parametrize("data", EVENTS_AS_SENT)
def test_events_are_decoded_exactly_as_the_standard_library_reads_them(data: bytes) -> None:
    assert repr(decoded(data)) == repr(json.loads(data))


# Any character, halves of surrogate pairs often among them.
ANY_CHARACTER = st.characters(exclude_categories=())
SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())


@given(st.text(st.one_of(ANY_CHARACTER, SURROGATE)), st.booleans())
def test_any_delta_text_is_decoded_as_sent(text: str, ascii_only: bool) -> None:
    escaped = json.dumps({"delta": text}, ensure_ascii=ascii_only)
    data = escaped.encode("utf-8", "surrogatepass")  # a raw lone surrogate: not UTF-8 either way
    try:
        expected = json.loads(data)
    except NOT_JSON:
        with pytest.raises(NOT_JSON):
            decoded(data)
        return
    assert decoded(data) == expected


@pytest.mark.parametrize(
    "data", [b"{not json", b"", b'{"delta":"\xff"}', b'{"delta":"a"} trailing', b"[1,]"]
)
def test_what_is_not_json_raises_a_value_error(data: bytes) -> None:
    with pytest.raises(NOT_JSON):
        decoded(data)


def test_half_a_surrogate_pair_is_relayed_not_failed() -> None:
    data = b'{"type":"response.output_text.delta","delta":"\\ud83d"}'
    event = RawEvent("response.output_text.delta", data)
    assert map_payload(event) == TextDelta("\ud83d")
