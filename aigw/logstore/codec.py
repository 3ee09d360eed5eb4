"""How the SQLite store keeps body heads: raw when small, LZ4-compressed when large.

A stream's head is up to `logs.head_bytes` of near-identical events; written raw it spilled
into overflow pages and cost ~90 µs a row in the writer (most of a logged stream's overhead,
bench/README.md). Compressed it is a tenth of the size and fits in its row. LZ4 (a block
with its size in front) compresses a 4 KB stream head to about the size zlib's level 1
does in a sixth of the time (2.2 against 13 µs on the sixth session's VM, where deflating
was a third of the writer thread's CPU). The `body_codec` column says which bodies of a
row are compressed and how: bits 4 and 8 (request, response) LZ4; bits 1 and 2 deflate,
as rows written before LZ4 were, and read back as such. A row written raw (0, and every
row PostgreSQL stores: its TOAST compresses large values itself) reads back unchanged.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any

import lz4.block

from aigw.logstore.row import DENSE

__all__ = ["COMPRESS_MIN", "REQUEST", "RESPONSE", "LZ4", "pack", "unpack"]

logger = logging.getLogger("aigw.logs")

COMPRESS_MIN = 1024  # smaller heads are stored raw: LZ4's ~0.8 µs costs more than it saves
# `body_codec` bits: which body (REQUEST, RESPONSE) is deflated; shifted by LZ4, which is
# LZ4-compressed.
REQUEST = 1
RESPONSE = 2
LZ4 = 2
_compress = lz4.block.compress
_REQ = DENSE.index("request_body")
_RESP = DENSE.index("response_body")
_CODEC = DENSE.index("body_codec")
# Booleans are bound as 0 and 1: sqlite3 adapts a bool (an int subclass, not an int) through
# its adapter protocol, whose lookup formats and discards an AttributeError for every value:
# five of them cost the insert ~1.2 µs a row.
_BOOLS = tuple(DENSE.index(c) for c in ("success", "cached", "custom_cost",
                                        "request_head_complete", "response_head_complete"))


def pack(v: list[Any]) -> list[Any]:
    """A row's column values (`DENSE` order, then any others) made what SQLite binds, in
    place: large body heads compressed (and `body_codec` saying which), booleans as 0 and 1,
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
        if len(req) >= COMPRESS_MIN:
            req = _compress(req)
            codec = REQUEST << LZ4
        v[_REQ] = bytearray(req)
    if resp is not None:
        if len(resp) >= COMPRESS_MIN:
            resp = _compress(resp)
            codec |= RESPONSE << LZ4
        v[_RESP] = bytearray(resp)
    if codec:
        v[_CODEC] = codec
    return v


# The most a stored head decodes to: `logs.head_bytes` is at most 10**7. A block whose size
# prefix says more (a damaged file) is not decoded: LZ4 would allocate what it says first.
_DECODED_MAX = 10**7


def unpack(blob: Any, codec: Any, which: int) -> bytes | None:
    """A stored body head as the bytes that were logged; None (and a warning) for one that
    does not decode (a damaged file), so the rest of the row still reads."""
    if blob is None:
        return None
    data = bytes(blob)
    if codec:
        codec = int(codec)
        try:
            if codec & (which << LZ4):
                if int.from_bytes(data[:4], "little") > _DECODED_MAX:
                    raise ValueError("size prefix too large")
                return lz4.block.decompress(data)
            if codec & which:  # written before LZ4
                d = zlib.decompressobj(-12)
                out = d.decompress(data, _DECODED_MAX)
                if d.unconsumed_tail:
                    raise ValueError("decodes to more than a head can hold")
                return out
        except (ValueError, zlib.error, lz4.block.LZ4BlockError) as exc:
            logger.warning("a stored body head does not decode (%s); returned as null",
                           type(exc).__name__)
            return None
    return data
