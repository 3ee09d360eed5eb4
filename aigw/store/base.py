"""The store interfaces: a response cache and rate-limit counters, one object per process.

Two backends implement them: `memory` (embedded, the default) and `redis` (shared by every
aigw process that points at the same server). Both answer the same questions with the same
types, so the pipeline never knows which one it talks to.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
import time
from dataclasses import dataclass
from typing import Protocol

from aigw import _json

# Never stored: they describe one connection or one relay, not the response.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "content-length",
    # Per-request gateway headers; a hit gets its own.
    "cf-aig-cache-status", "cf-aig-log-id", "cf-aig-request-id", "cf-aig-event-id",
    "cf-aig-step",
})


@dataclass(frozen=True, slots=True)
class CachedEntry:
    """A completed 2xx response as replayed on a hit."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    step: int = 0  # the universal step that produced it; 0 on provider routes
    is_stream: bool = False
    created_at: float = 0.0

    @classmethod
    def build(cls, status: int, headers: Mapping[str, str] | Iterable[tuple[str, str]],
              body: bytes, step: int = 0, is_stream: bool = False) -> CachedEntry:
        """An entry from relayed headers (pairs or a mapping), hop-by-hop headers removed."""
        items = headers.items() if isinstance(headers, Mapping) else headers
        kept = tuple((str(k), str(v)) for k, v in items if str(k).lower() not in HOP_BY_HOP)
        return cls(status, kept, bytes(body), step, is_stream, time.time())

    @property
    def size(self) -> int:
        """Approximate bytes held in memory: body, headers and a fixed overhead."""
        return len(self.body) + sum(len(k) + len(v) + 16 for k, v in self.headers) + 160

    def dumps(self) -> bytes:
        """Serialise: 4-byte length, JSON metadata, raw body bytes (no pickle)."""
        meta = _json.dumps({"s": self.status, "h": self.headers, "p": self.step,
                            "t": self.is_stream, "c": self.created_at})
        return struct.pack(">I", len(meta)) + meta + self.body

    @classmethod
    def loads(cls, data: bytes) -> CachedEntry:
        """Inverse of dumps; raises ValueError on a malformed value."""
        if len(data) < 4:
            raise ValueError("cache entry too short")
        (n,) = struct.unpack_from(">I", data)
        meta = _json.loads(data[4:4 + n])
        headers = tuple((str(k), str(v)) for k, v in meta["h"])
        return cls(int(meta["s"]), headers, bytes(data[4 + n:]), int(meta["p"]),
                   bool(meta["t"]), float(meta["c"]))


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The answer of one check-and-increment."""

    allowed: bool
    remaining: int
    retry_after: float  # seconds until a request would be admitted; 0 when allowed


# Cloudflare caches requests up to 25 MB; a larger response is relayed but not cached.
MAX_ENTRY_BYTES = 25 * 1024 * 1024

ADMIT = RateDecision(True, 0, 0.0)  # what a store that cannot answer says (fail open)


class Store(Protocol):
    """Cache plus rate-limit counters; `kind` is "memory" or "redis"."""

    kind: str
    max_entry_bytes: int  # a response body past this is not cached (the tee gives up)

    async def cache_get(self, key: str) -> CachedEntry | None:
        """The live entry under `key`, or None (also when the store is unreachable)."""

    async def cache_set(self, key: str, entry: CachedEntry, ttl: float) -> bool:
        """Store `entry` for `ttl` seconds; False when it was not stored."""

    async def rate_hit(self, bucket: str, limit: int, interval: float,
                       technique: str) -> RateDecision:
        """Check and count one request against `limit` per `interval` ("fixed"|"sliding")."""

    async def close(self) -> None:
        """Release connections."""
