"""The upstream event-stream decoder follows the WHATWG parsing rules, however reads split."""

from __future__ import annotations

import random

import pytest

from common.sse import EventStreamDecoder, RawEvent


def decode(*chunks: bytes) -> list[RawEvent]:
    decoder = EventStreamDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.end()


STREAM = (
    "\ufeff: a comment\r\n"
    "event: response.output_text.delta\r\n"
    'data: {"delta": "첫 줄"}\r\n'
    "\r\n"
    "data:no space\rdata:  two spaces\r\r"
    "event\n"
    "data\n"
    "\n"
    "event: only-a-name\n"
    "\n"
    "id: 7\nretry: 10\nunknown: x\ndata: last\n\n"
).encode()

EXPECTED = [
    RawEvent("response.output_text.delta", '{"delta": "첫 줄"}'.encode()),
    RawEvent("message", b"no space\n two spaces"),
    RawEvent("message", b""),
    RawEvent("message", b"last", last_event_id="7"),
]


def test_line_ends_comments_fields_and_dispatch_follow_the_spec() -> None:
    assert decode(STREAM) == EXPECTED


@pytest.mark.parametrize("seed", range(25))
def test_any_split_of_the_body_gives_the_same_events(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 30)))
    chunks = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
    assert decode(*chunks) == EXPECTED


def test_every_single_byte_read_gives_the_same_events() -> None:
    assert decode(*(STREAM[i : i + 1] for i in range(len(STREAM)))) == EXPECTED


def test_a_cr_at_the_end_of_a_read_and_an_lf_at_the_start_of_the_next_are_one_line_end() -> None:
    assert decode(b"data: a\r", b"\n\r", b"\ndata: b\n\n") == [
        RawEvent("message", b"a"),
        RawEvent("message", b"b"),
    ]


def test_an_event_cut_off_by_the_end_of_the_body_is_dropped() -> None:
    assert decode(b"data: whole\n\ndata: cut") == [RawEvent("message", b"whole")]


def test_a_bom_is_dropped_only_at_the_start() -> None:
    assert decode(b"\xef\xbb", b"\xbfdata: x\n\ndata: \xef\xbb\xbfy\n\n") == [
        RawEvent("message", b"x"),
        RawEvent("message", b"\xef\xbb\xbfy"),
    ]
