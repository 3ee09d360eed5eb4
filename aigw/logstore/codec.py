"""How the SQLite store keeps body heads: raw when small, deflated when large.

A stream's head is up to `logs.head_bytes` of near-identical events; written raw it spilled
into overflow pages and cost ~90 µs a row in the writer (most of a logged stream's overhead,
bench/README.md). Deflated at level 1 it is a tenth of the size and fits in its row. The
`body_codec` column says which bodies of a row are deflated (bit 1: request, bit 2:
response); a row written raw (0, and every row PostgreSQL stores: its TOAST compresses large
values itself) reads back unchanged.
"""

from __future__ import annotations

import zlib
from typing import Any

from aigw.logstore.row import DENSE

__all__ = ["DEFLATE_MIN", "REQUEST", "RESPONSE", "pack", "unpack"]

DEFLATE_MIN = 1024  # smaller heads are stored raw: deflate's set-up costs more than it saves
REQUEST = 1
RESPONSE = 2
_REQ = DENSE.index("request_body")
_RESP = DENSE.index("response_body")
_CODEC = DENSE.index("body_codec")
# Booleans are bound as 0 and 1: sqlite3 adapts a bool (an int subclass, not an int) through
# its adapter protocol, whose lookup formats and discards an AttributeError for every value:
# five of them cost the insert ~1.2 µs a row.
_BOOLS = tuple(DENSE.index(c) for c in ("success", "cached", "custom_cost",
                                        "request_head_complete", "response_head_complete"))


def _deflate(data: bytes) -> bytes:
    # raw deflate, a 4 KB window and a small state: a third of the set-up time of
    # zlib.compress's defaults, for the same size on a 4 KB head
    c = zlib.compressobj(1, zlib.DEFLATED, -12, 4)
    return c.compress(data) + c.flush()


def pack(v: list[Any]) -> list[Any]:
    """A row's column values (`DENSE` order, then any others) made what SQLite binds, in
    place: large body heads deflated (and `body_codec` saying which), booleans as 0 and 1,
    body heads as bytearrays.

    sqlite3 binds an exact int, float, str or bytearray directly, and sends anything else
    (`bytes` too) through its adapter lookup first, which formats and discards an
    AttributeError: a 400-byte `bytes` cost 400 ns to bind, the same as a bytearray
    172 ns plus 52 ns for the copy."""
    for i in _BOOLS:
        if v[i] is not None:
            v[i] = 1 if v[i] else 0
    req, resp = v[_REQ], v[_RESP]
    codec = 0
    if req is not None:
        if len(req) >= DEFLATE_MIN:
            req = _deflate(req)
            codec = REQUEST
        v[_REQ] = bytearray(req)
    if resp is not None:
        if len(resp) >= DEFLATE_MIN:
            resp = _deflate(resp)
            codec |= RESPONSE
        v[_RESP] = bytearray(resp)
    if codec:
        v[_CODEC] = codec
    return v


def unpack(blob: Any, codec: Any, which: int) -> bytes | None:
    """A stored body head as the bytes that were logged."""
    if blob is None:
        return None
    data = bytes(blob)
    if codec and int(codec) & which:
        return zlib.decompress(data, -12)
    return data
