"""Reading SSE bodies in tests with httpx-sse's spec-compliant decoder."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx2
from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from testing.app_server import RunningApp


def parse_sse(chunks: Iterable[str]) -> list[ServerSentEvent]:
    """Events in a stream that arrives in arbitrary chunks, decoded per the WHATWG rules."""
    lines = SSELineDecoder()
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        for line in lines.decode(chunk):
            event = decoder.decode(line)
            if event is not None:
                events.append(event)
    for line in lines.flush():
        event = decoder.decode(line)
        if event is not None:
            events.append(event)
    return events


@dataclass
class Answer:
    """An SSE answer taken apart: what a frontend would show."""

    events: list[ServerSentEvent]

    @property
    def names(self) -> list[str]:
        return [event.event for event in self.events]

    @property
    def text(self) -> str:
        # httpx-sse reports unnamed events as "message", the spec's default type.
        return "".join(event.data for event in self.events if event.event == "message")

    def data_of(self, name: str) -> Any:
        [event] = [event for event in self.events if event.event == name]
        return json.loads(event.data)

    @property
    def terminal(self) -> str:
        return self.names[-1]


def ask(app: RunningApp, body: dict[str, Any]) -> Answer:
    """A question to an app running in a child process, and its whole answer."""
    with httpx2.stream(
        "POST", f"{app.base_url}/openai-response/sse", json=body, timeout=15
    ) as response:
        assert response.status_code == 200, response.read()
        return Answer(parse_sse(response.iter_text()))
