"""A bounded copy of relayed bytes, for caching a response while it streams to the client.

`feed` never blocks and never fails the relay: past `limit` bytes it drops what it holds
and stops copying, and the response is simply not cached.
"""

from __future__ import annotations


class BoundedTee:
    """Collects chunks up to `limit` bytes; `overflowed` once the limit was passed."""

    __slots__ = ("limit", "size", "overflowed", "_chunks")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.overflowed = False
        self._chunks: list[bytes] = []

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

    def __repr__(self) -> str:
        return f"<BoundedTee [{self.size}/{self.limit} bytes{' | overflowed' if self.overflowed else ''}]>"
