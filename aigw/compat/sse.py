"""Incremental Server-Sent Events splitter over bytes, shared by the stream translators.

Follows the WHATWG event-stream rules the providers rely on: lines end in CRLF, LF or CR;
a blank line dispatches the event; `:` starts a comment; several `data:` lines join with
"\n"; one space after the colon is dropped. Bytes arrive in arbitrary chunks, so an
incomplete line (or a lone trailing CR that may be half of a CRLF) waits for the next feed.
"""

from __future__ import annotations

from typing import NamedTuple

# The most one event may hold before it is complete: a provider's event is far smaller; past
# this the stream is given up (the relay ends it with an error event), so a runaway event
# costs neither unbounded memory nor quadratic copying.
MAX_EVENT = 8 << 20


class EventTooLarge(ValueError):
    """An SSE event grew past MAX_EVENT bytes without ending."""


class SSEEvent(NamedTuple):
    """One dispatched event: its `event:` name ("" when absent) and joined `data:` bytes."""

    event: str
    data: bytes


class SSESplitter:
    """Feed bytes, get back the events completed by them."""

    __slots__ = ("_buf", "_event", "_data", "_has_data", "_size")

    def __init__(self) -> None:
        self._buf = b""
        self._event = ""
        self._data: list[bytes] = []
        self._has_data = False
        self._size = 0  # bytes of the data lines of the event being parsed

    def __repr__(self) -> str:
        return f"<SSESplitter [buffered {len(self._buf)} | data lines {len(self._data)}]>"

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume a chunk; return every event it completes, in order."""
        buf = self._buf + chunk
        if b"\r" not in buf and not self._has_data and not self._event:
            return self._feed_lf(buf)
        # A CR at the very end may be the first half of CRLF: decide on the next feed.
        hold = buf.endswith(b"\r")
        if hold:
            buf = buf[:-1]
        lines = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self._buf = lines.pop() + (b"\r" if hold else b"")
        events: list[SSEEvent] = []
        for line in lines:
            self._line(line, events)
        if len(self._buf) + self._size > MAX_EVENT:
            raise EventTooLarge(f"an SSE event over {MAX_EVENT} bytes")
        return events

    def _feed_lf(self, buf: bytes) -> list[SSEEvent]:
        # The common case (LF only, no event half-parsed): whole events at a time, about 3x
        # faster than line by line; an incomplete event stays raw in the buffer.
        blocks = buf.split(b"\n\n")
        self._buf = blocks.pop()
        if len(self._buf) > MAX_EVENT:
            raise EventTooLarge(f"an SSE event over {MAX_EVENT} bytes")
        events: list[SSEEvent] = []
        for block in blocks:
            ev = parse_block(block)
            if ev is not None:
                events.append(ev)
        return events

    def idle(self) -> bool:
        """Nothing buffered and no event half-parsed: the next chunk starts an event."""
        return not self._buf and not self._has_data and not self._event

    def take_complete(self, chunk: bytes) -> bytes | None:
        """In the common case (LF line ends, nothing half-parsed): the raw text of every
        event `chunk` completes, each with its blank line (b"" if none is complete yet);
        the rest stays buffered. None otherwise, and then the caller uses `feed`. Lets a
        translator recognise its frequent events by their bytes."""
        buf = self._buf + chunk
        if b"\r" in buf or self._has_data or self._event:
            return None
        end = buf.rfind(b"\n\n")
        if end < 0:
            if len(buf) > MAX_EVENT:
                raise EventTooLarge(f"an SSE event over {MAX_EVENT} bytes")
            self._buf = buf
            return b""
        self._buf = buf[end + 2:]
        if len(self._buf) > MAX_EVENT:
            raise EventTooLarge(f"an SSE event over {MAX_EVENT} bytes")
        return buf[:end + 2]

    def finish(self) -> list[SSEEvent]:
        """At EOF: dispatch a last event that lacked its closing blank line."""
        if not self._buf and not self._has_data:
            self._event = ""
            return []  # the stream ended on an event boundary: nothing is pending
        events: list[SSEEvent] = []
        rest = self._buf.rstrip(b"\r")
        self._buf = b""
        for line in rest.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
            if line:
                self._line(line, events)
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._has_data:
                events.append(SSEEvent(self._event, b"\n".join(self._data)))
            self._event, self._data, self._has_data, self._size = "", [], False, 0
            return
        if line[:1] == b":":
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
            self._has_data = True
            self._size += len(value) + 1
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        # `id:` and `retry:` matter only to reconnecting browsers; translators ignore them.


def parse_block(block: bytes) -> SSEEvent | None:
    """One LF-separated event block (without its blank line) -> its event, or None when it
    carries no data (a comment, or only `id:`/`retry:`)."""
    name = ""
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line[:5] == b"data:":
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line == b"data":
            data.append(b"")
        elif line[:6] == b"event:":
            value = line[7:] if line[6:7] == b" " else line[6:]
            name = value.decode("utf-8", "replace")
    if not data:
        return None
    return SSEEvent(name, data[0] if len(data) == 1 else b"\n".join(data))
