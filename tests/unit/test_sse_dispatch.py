"""Every member of the answer-event union has its own SSE frame; nothing falls through to another
event's frame."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, get_args

import pytest

from api.observability import Metrics
from api.sse import answer_events
from application.ask import AnswerStream
from domain.errors import ErrorCode
from domain.models import (
    AgentStep,
    AnswerDone,
    AnswerEvent,
    AnswerFailed,
    AnswerMeta,
    EngineSwitched,
    Notice,
    TextDelta,
)
from domain.policy import ANSWERED_OFFLINE

ONE_OF_EACH: dict[type[Any], tuple[AnswerEvent, str | None]] = {
    TextDelta: (TextDelta("Hello"), None),
    AnswerDone: (AnswerDone("stop"), "done"),
    AnswerFailed: (AnswerFailed(ErrorCode.UPSTREAM_TIMEOUT, "Too slow."), "error"),
    AgentStep: (AgentStep("tool_call", "search_profile"), "agent"),
    EngineSwitched: (EngineSwitched(ANSWERED_OFFLINE, "offline", "offline"), "notice"),
}
"""An event of each kind, and the name of the frame it goes out as (``None``: unnamed)."""


async def _replay(events: list[Any]) -> AsyncGenerator[AnswerEvent, None]:
    for event in events:
        yield event


async def frames_after_sources(events: list[Any]) -> list[tuple[str | None, str]]:
    stream = AnswerStream(AnswerMeta("conversation", "model", "scripted"), (), _replay(events))
    frames = [frame async for frame in answer_events(stream, Metrics())]
    assert [frame.event for frame in frames[:2]] == ["meta", "sources"]
    return [(frame.event, str(frame.data)) for frame in frames[2:]]


def test_the_examples_cover_every_member_of_the_union() -> None:
    assert set(ONE_OF_EACH) == set(get_args(AnswerEvent))


@pytest.mark.parametrize("kind", get_args(AnswerEvent), ids=lambda kind: kind.__name__)
async def test_every_answer_event_goes_out_as_its_own_frame(kind: type[Any]) -> None:
    event, name = ONE_OF_EACH[kind]
    [(sent, data)] = await frames_after_sources([event])
    assert sent == name
    if isinstance(event, AnswerFailed):
        assert json.loads(data)["code"] == event.code.value


@dataclass(frozen=True)
class Unlisted:
    """A new event type, not added to the union: shaped like ``EngineSwitched``."""

    notice: Notice = ANSWERED_OFFLINE
    mode: str = "offline"
    model: str = "offline"


async def test_an_event_outside_the_union_is_an_internal_error_not_a_notice() -> None:
    [(sent, data)] = await frames_after_sources([Unlisted()])
    assert sent == "error"
    assert json.loads(data)["code"] == ErrorCode.INTERNAL_ERROR.value
