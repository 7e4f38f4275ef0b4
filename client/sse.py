"""An incremental Server-Sent Events parser, as the WHATWG HTML standard specifies it.

Why not httpx2's ``EventSource``: it dispatches an event that has an ``event:`` line but no
``data:`` line, and at the end of a body cut after a CR it dispatches the incomplete event,
which would pass a truncated ``event: done`` for a finished answer. The rules are short; this
follows them to the letter (section "Parsing an event stream").
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")
_BOM = "\ufeff"


@dataclass(frozen=True)
class Event:
    """One dispatched event: ``type`` is ``message`` for an event without an ``event:`` line."""

    type: str
    data: str
    last_event_id: str = ""


class EventStreamParser:
    """Feed it the body's bytes in chunks of any size; it returns the events each completes.

    Lines end with CRLF, CR or LF, also when the two bytes of a CRLF (or of a UTF-8
    character) arrive in different chunks. ``data`` lines are joined with ``\\n``, one space
    after the colon is dropped, comments are skipped and an event is dispatched on a blank
    line. At the end of the body, an event without its blank line is discarded.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._at_start = True
        self._type = ""
        self._data: list[str] = []
        self._last_event_id = ""
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        return self._parse(self._decoder.decode(chunk), final=False)

    def close(self) -> list[Event]:
        """The events the end of the body completes; the parser is reset for reuse."""
        events = self._parse(self._decoder.decode(b"", final=True), final=True)
        self._buffer, self._type, self._data, self._at_start = "", "", [], True
        self._decoder.reset()
        return events

    def _parse(self, text: str, *, final: bool) -> list[Event]:
        self._buffer += text
        if self._at_start and self._buffer:
            self._at_start = False
            self._buffer = self._buffer.removeprefix(_BOM)
        events: list[Event] = []
        start = 0
        for end in _LINE_END.finditer(self._buffer):
            if end.group() == "\r" and end.end() == len(self._buffer) and not final:
                break  # maybe the first half of a CRLF: wait for the next chunk
            event = self._line(self._buffer[start : end.start()])
            if event is not None:
                events.append(event)
            start = end.end()
        self._buffer = self._buffer[start:]
        return events

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Event | None:
        data, event_type = self._data, self._type
        self._data, self._type = [], ""
        if not data:
            return None
        return Event(event_type or "message", "\n".join(data), self._last_event_id)
