"""The incremental SSE splitter: line endings, split chunks, comments, multi-line data."""

from __future__ import annotations

import pytest

from aigw.compat.sse import SSEEvent, SSESplitter

STREAM = (
    b": keep-alive comment\n\n"
    b"event: message_start\ndata: {\"a\":1}\n\n"
    b"data: line one\ndata: line two\n\n"
    b"id: 7\nretry: 1000\ndata:no-space\n\n"
    b"event: ping\n\n"  # no data: never dispatched
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent("message_start", b'{"a":1}'),
    SSEEvent("", b"line one\nline two"),
    SSEEvent("", b"no-space"),
    SSEEvent("", b"[DONE]"),
]


def run(data: bytes, size: int) -> list[SSEEvent]:
    splitter = SSESplitter()
    events: list[SSEEvent] = []
    for i in range(0, len(data), size):
        events.extend(splitter.feed(data[i : i + size]))
    return events + splitter.finish()


@pytest.mark.parametrize("size", [1, 2, 7, 4096])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_same_events_for_any_chunking_and_line_ending(size: int, newline: bytes) -> None:
    assert run(STREAM.replace(b"\n", newline), size) == EXPECTED


def test_event_is_dispatched_as_soon_as_its_blank_line_arrives() -> None:
    splitter = SSESplitter()
    assert splitter.feed(b"data: {\"x\"") == []
    assert splitter.feed(b":1}\n") == []
    assert splitter.feed(b"\n") == [SSEEvent("", b'{"x":1}')]


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    splitter = SSESplitter()
    assert splitter.feed(b"data: a\r") == []
    assert splitter.feed(b"\n\r") == []
    assert splitter.feed(b"\ndata: b\r\n\r\n") == [SSEEvent("", b"a"), SSEEvent("", b"b")]


def test_finish_flushes_an_event_without_trailing_blank_line() -> None:
    splitter = SSESplitter()
    assert splitter.feed(b"data: tail") == []
    assert splitter.finish() == [SSEEvent("", b"tail")]
    assert splitter.finish() == []


def test_empty_data_line_is_an_event_with_empty_data() -> None:
    assert run(b"data:\n\n", 1) == [SSEEvent("", b"")]


def test_repr_shows_buffered_bytes() -> None:
    splitter = SSESplitter()
    splitter.feed(b"data: abc")
    assert repr(splitter) == "<SSESplitter [buffered 9 | data lines 0]>"
