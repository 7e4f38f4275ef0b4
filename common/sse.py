"""Server-Sent Events, decoded as the WHATWG HTML standard specifies.

The one decoder for every Python reader of an event stream in this project: the relay reads
the model provider's stream with it, the terminal client the service's answers, and the tests
what the service sends. It lives in ``common/``, which the installable wheel ships beside
``client/``: the server and the client both import it, and the client never the server.

It follows section "Parsing an event stream" to the letter. Why not httpx2's ``EventSource``
or httpx-sse: they dispatch an event that has an ``event:`` line but no ``data:`` line, and at
the end of a body cut after a CR they dispatch the incomplete event, which would pass a
truncated ``event: done`` for a finished answer.

It works on bytes: line ends (CR, LF) never occur inside a UTF-8 character, so lines are cut
before any decoding, and a reader that wants JSON parses the data as it came (the relay's
hot path, see docs/performance.md) while one that wants text decodes each event once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

_BOM = b"\xef\xbb\xbf"


class RawEvent(NamedTuple):
    """One dispatched event, its data still UTF-8. (A named tuple: the relay builds one per
    upstream event, and a tuple is built in half the time of a frozen dataclass.)"""

    type: str
    """The ``event:`` field; ``message`` when absent."""
    data: bytes
    """The ``data:`` lines joined with ``\\n``."""
    last_event_id: str = ""


class EventStreamDecoder:
    """Feed it the body in chunks of any size; it returns the events each chunk completes.

    Lines end with CRLF, LF or CR, also when the two bytes of a CRLF arrive in different
    chunks; a byte order mark at the start is dropped; comments are skipped; one space after
    the colon is dropped; ``data`` lines are joined with ``\\n``; a blank line dispatches; an
    event with no ``data`` line is not dispatched. ``id`` (without NUL) sets the last event
    id, which every later event carries; ``retry`` (ASCII digits) sets ``retry_ms``. At the end
    of the body, a line without its line end and an event without its blank line are
    discarded.
    """

    __slots__ = ("_data", "_event", "_last_event_id", "_pending", "_started", "retry_ms")

    def __init__(self) -> None:
        self._pending = b""
        self._event = b""
        self._data: list[bytes] = []
        self._started = False
        self._last_event_id = ""
        self.retry_ms: int | None = None
        """The reconnection time the stream asked for, in milliseconds."""

    def feed(self, chunk: bytes) -> list[RawEvent]:
        buffer = self._pending + chunk if self._pending else chunk
        if not self._started:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._pending = buffer
                return []
            self._started = True
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM) :]
        if b"\r" in buffer:
            # Keep a trailing CR: the LF that may complete it is in the next chunk.
            held = buffer.endswith(b"\r")
            if held:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            lines = buffer.split(b"\n")
            self._pending = lines.pop() + (b"\r" if held else b"")
        else:
            lines = buffer.split(b"\n")
            self._pending = lines.pop()
        events: list[RawEvent] = []
        for line in lines:
            self._take(line, events)
        return events

    def end(self) -> list[RawEvent]:
        """The events the end of the body completes; the decoder is reset for another body
        (the last event id and ``retry_ms`` are kept, as a reconnection keeps them)."""
        pending = self._pending
        events: list[RawEvent] = []
        if pending.endswith(b"\r"):
            self._take(pending[:-1], events)  # a CR ends its line, even the last one
        self._pending, self._event, self._data, self._started = b"", b"", [], False
        return events

    def _take(self, line: bytes, events: list[RawEvent]) -> None:
        if not line:
            if self._data:
                kind = self._event.decode("utf-8", "replace") or "message"
                events.append(RawEvent(kind, b"\n".join(self._data), self._last_event_id))
            self._event, self._data = b"", []
            return
        if line.startswith(b"data: "):  # the usual shape, decided without a search
            self._data.append(line[6:])
            return
        if line.startswith(b":"):
            return
        field, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value
        elif field == b"id":
            if b"\0" not in value:
                self._last_event_id = value.decode("utf-8", "replace")
        elif field == b"retry" and value.isdigit():  # bytes.isdigit: ASCII digits only
            self.retry_ms = int(value)


@dataclass(frozen=True)
class Event:
    """One dispatched event as text: ``type`` is ``message`` for an event without an
    ``event:`` line."""

    type: str
    data: str
    last_event_id: str = ""


class EventStreamParser:
    """``EventStreamDecoder`` for readers that want text: each event's data decoded as UTF-8
    (an invalid sequence becomes U+FFFD, as the standard's decoder does)."""

    def __init__(self) -> None:
        self._decoder = EventStreamDecoder()

    @property
    def retry_ms(self) -> int | None:
        return self._decoder.retry_ms

    def feed(self, chunk: bytes) -> list[Event]:
        return [_as_text(event) for event in self._decoder.feed(chunk)]

    def close(self) -> list[Event]:
        """The events the end of the body completes; the parser is reset for reuse."""
        return [_as_text(event) for event in self._decoder.end()]


def _as_text(event: RawEvent) -> Event:
    return Event(event.type, event.data.decode("utf-8", "replace"), event.last_event_id)
