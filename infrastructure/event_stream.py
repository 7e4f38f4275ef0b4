"""A decoder for the upstream's ``text/event-stream``, per the WHATWG parsing rules.

The Responses API sends one JSON object per event. The openai SDK would turn each into a
validated pydantic model; this relay needs two fields of most events, and the decoding and
validation cost several times what the rest of the relay costs per delta (see
docs/performance.md). So the adapter reads the raw body through the SDK and decodes here.
"""

from __future__ import annotations

from dataclasses import dataclass

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class UpstreamEvent:
    event: str
    """The ``event:`` field; ``message`` when absent."""
    data: bytes
    """The ``data:`` lines joined with ``\\n``, still UTF-8."""


class EventStreamDecoder:
    """Feed it the body in chunks of any size; it returns the events each chunk completes.

    Lines end with CRLF, LF or CR (a CR at the end of a chunk may be half of a CRLF);
    comments are skipped; ``data`` lines are joined with ``\\n``; a blank line dispatches;
    an event with no data is not dispatched. ``id`` and ``retry`` do not concern a relay.
    """

    __slots__ = ("_data", "_event", "_pending", "_started")

    def __init__(self) -> None:
        self._pending = b""
        self._event = b""
        self._data: list[bytes] = []
        self._started = False

    def feed(self, chunk: bytes) -> list[UpstreamEvent]:
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
        events: list[UpstreamEvent] = []
        for line in lines:
            self._take(line, events)
        return events

    def end(self) -> list[UpstreamEvent]:
        """The body ended: a last line without its line break still counts; an event
        without its blank line does not (the spec discards it)."""
        events: list[UpstreamEvent] = []
        if self._pending:
            pending, self._pending = self._pending.rstrip(b"\r"), b""
            self._take(pending, events)
        self._event, self._data = b"", []
        return events

    def _take(self, line: bytes, events: list[UpstreamEvent]) -> None:
        if not line:
            if self._data:
                event = self._event.decode("utf-8", "replace") or "message"
                events.append(UpstreamEvent(event, b"\n".join(self._data)))
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
