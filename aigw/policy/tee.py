"""A bounded copy of a committed response, for caching it while it streams to the client.

`feed` never blocks and never fails the relay: past `limit` bytes it drops what it holds
and stops copying, and the response is simply not cached. Only a response whose relay
finished cleanly (`complete`) with a 2xx status becomes a cache entry.
"""

from __future__ import annotations

from typing import Any

from aigw.store.base import CachedEntry


class Capture:
    """What the proxy committed: status, headers, step, and the body up to `limit` bytes."""

    __slots__ = ("limit", "size", "overflowed", "complete", "status", "headers", "step",
                 "is_stream", "_chunks")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.overflowed = False
        self.complete = False  # set by the proxy once the last byte went out
        self.status = 0
        self.headers: Any = ()
        self.step = 0
        self.is_stream = False
        self._chunks: list[bytes] = []

    def start(self, status: int, headers: Any, step: int, is_stream: bool) -> None:
        """Record the head of the committed response."""
        self.status = status
        self.headers = headers
        self.step = step
        self.is_stream = is_stream

    def feed(self, chunk: bytes) -> None:
        """Keep a reference to `chunk` (no copy) unless the bound is passed."""
        if self.overflowed:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            self.overflowed = True
            self._chunks = []
            return
        self._chunks.append(chunk)

    def data(self) -> bytes | None:
        """The bytes seen so far, or None after an overflow."""
        return None if self.overflowed else b"".join(self._chunks)

    def entry(self) -> CachedEntry | None:
        """The cache entry, when the response was 2xx, complete and within the bound."""
        if not self.complete or self.overflowed or not 200 <= self.status < 300:
            return None
        return CachedEntry.build(self.status, self.headers, b"".join(self._chunks), self.step,
                                 self.is_stream)

    def __repr__(self) -> str:
        state = "overflowed" if self.overflowed else ("complete" if self.complete else "open")
        return f"<Capture [{self.status} | {self.size}/{self.limit} bytes | {state}]>"
