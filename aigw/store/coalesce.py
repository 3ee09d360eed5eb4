"""Request coalescing: concurrent identical cache misses make one upstream call.

The first miss for a key becomes the leader and goes upstream; the misses that arrive
while it runs wait for it. The leader hands over the entry it cached, or None when its
response was not cacheable (error status, too large, upstream failure), and then each
waiter goes upstream itself. Per process: across processes, identical misses may still
each make a call. Cloudflare does not coalesce at all.
"""

from __future__ import annotations

import asyncio

from aigw.store.base import CachedEntry


class Coalescer:
    """In-flight cache keys and the futures their waiters sleep on."""

    __slots__ = ("_inflight", "led", "joined")

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[CachedEntry | None]] = {}
        self.led = 0
        self.joined = 0

    def claim(self, key: str) -> asyncio.Future[CachedEntry | None] | None:
        """None: the caller leads and must call `release`. Else a future to await."""
        fut = self._inflight.get(key)
        if fut is not None:
            self.joined += 1
            return fut
        self._inflight[key] = asyncio.get_running_loop().create_future()
        self.led += 1
        return None

    def release(self, key: str, entry: CachedEntry | None) -> None:
        """Wake the waiters with the leader's cached entry (None: go upstream yourselves)."""
        fut = self._inflight.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(entry)

    @staticmethod
    async def wait(fut: asyncio.Future[CachedEntry | None]) -> CachedEntry | None:
        """Await the leader; a cancelled waiter does not cancel the shared future."""
        return await asyncio.shield(fut)

    def __len__(self) -> int:
        return len(self._inflight)

    def __repr__(self) -> str:
        return f"<Coalescer [inflight {len(self._inflight)} | led {self.led} | joined {self.joined}]>"
