"""Reading SSE bodies in tests, with the project's one event-stream decoder (``common.sse``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx2

from common.sse import Event, EventStreamParser
from testing.app_server import RunningApp


def parse_sse(chunks: Iterable[str | bytes]) -> list[Event]:
    """Events in a stream that arrives in arbitrary chunks, decoded per the WHATWG rules."""
    parser = EventStreamParser()
    events: list[Event] = []
    for chunk in chunks:
        events += parser.feed(chunk.encode() if isinstance(chunk, str) else chunk)
    return events + parser.close()


@dataclass
class Answer:
    """An SSE answer taken apart: what a frontend would show."""

    events: list[Event]

    @property
    def names(self) -> list[str]:
        return [event.type for event in self.events]

    @property
    def text(self) -> str:
        # Unnamed events have the spec's default type, "message".
        return "".join(event.data for event in self.events if event.type == "message")

    def data_of(self, name: str) -> Any:
        [event] = [event for event in self.events if event.type == name]
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
