"""The embedded store: an LRU cache bounded by bytes, and exact rate-limit windows.

Every method decides and mutates without awaiting, so within one event loop a
check-and-increment is atomic. It is per process: several workers or instances that must
share one limit need the redis backend.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from aigw.store.base import MAX_ENTRY_BYTES, CachedEntry, RateDecision


class MemoryCache:
    """LRU by bytes with per-entry expiry; the total never exceeds `max_bytes`."""

    __slots__ = ("max_bytes", "used", "_items", "_clock", "hits", "misses", "evictions")

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        # key -> (entry, expires_at, size); most recently used last
        self._items: OrderedDict[str, tuple[CachedEntry, float, int]] = OrderedDict()
        self._clock = clock
        self.hits = self.misses = self.evictions = 0

    def get(self, key: str) -> CachedEntry | None:
        """The live entry, refreshed as most recently used."""
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        if item[1] <= self._clock():
            self._drop(key)
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item[0]

    def set(self, key: str, entry: CachedEntry, ttl: float) -> bool:
        """Store, evicting least recently used entries; an entry larger than the bound is refused."""
        size = entry.size + len(key)
        if size > self.max_bytes or ttl <= 0:
            return False
        if key in self._items:
            self._drop(key)
        while self.used + size > self.max_bytes:
            oldest = next(iter(self._items))
            self._drop(oldest)
            self.evictions += 1
        self._items[key] = (entry, self._clock() + ttl, size)
        self.used += size
        return True

    def _drop(self, key: str) -> None:
        _, _, size = self._items.pop(key)
        self.used -= size

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return (f"<MemoryCache [entries {len(self._items)} | bytes {self.used}/{self.max_bytes}"
                f" | hits {self.hits} | misses {self.misses} | evictions {self.evictions}]>")


class MemoryLimiter:
    """Fixed windows aligned on multiples of the interval, and exact sliding logs."""

    __slots__ = ("_fixed", "_sliding", "_until", "_clock", "_hits")

    SWEEP_EVERY = 4096  # hits between sweeps of buckets whose windows have passed

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._fixed: dict[str, list[int]] = {}  # bucket -> [window index, count]
        self._sliding: dict[str, deque[float]] = {}  # bucket -> admission times, oldest first
        # bucket -> when its state stops mattering (window end / last admission + interval)
        self._until: dict[str, float] = {}
        self._clock = clock
        self._hits = 0

    def hit(self, bucket: str, limit: int, interval: float, technique: str) -> RateDecision:
        """Check and count one request; no await, so it is atomic on the event loop."""
        now = self._clock()
        self._hits += 1
        if self._hits % self.SWEEP_EVERY == 0:
            self._sweep(now)
        if technique == "sliding":
            return self._hit_sliding(bucket, limit, interval, now)
        return self._hit_fixed(bucket, limit, interval, now)

    def _hit_fixed(self, bucket: str, limit: int, interval: float, now: float) -> RateDecision:
        index = int(now // interval)
        slot = self._fixed.get(bucket)
        if slot is None or slot[0] != index:
            slot = self._fixed[bucket] = [index, 0]
        if slot[1] >= limit:
            return RateDecision(False, 0, (index + 1) * interval - now)
        slot[1] += 1
        self._until[bucket] = (index + 1) * interval
        return RateDecision(True, limit - slot[1], 0.0)

    def _hit_sliding(self, bucket: str, limit: int, interval: float, now: float) -> RateDecision:
        log = self._sliding.get(bucket)
        if log is None:
            log = self._sliding[bucket] = deque()
        horizon = now - interval
        while log and log[0] <= horizon:
            log.popleft()
        while len(log) > limit:  # the limit was lowered by a config reload
            log.popleft()
        if len(log) >= limit:
            return RateDecision(False, 0, log[0] + interval - now)
        log.append(now)
        self._until[bucket] = now + interval
        return RateDecision(True, limit - len(log), 0.0)

    def _sweep(self, now: float) -> None:
        """Forget buckets whose state has expired (bounds memory with many gateway ids)."""
        for bucket in [b for b, until in self._until.items() if until <= now]:
            del self._until[bucket]
            self._fixed.pop(bucket, None)
            self._sliding.pop(bucket, None)

    def __len__(self) -> int:
        return len(self._fixed) + len(self._sliding)

    def __repr__(self) -> str:
        return f"<MemoryLimiter [fixed {len(self._fixed)} | sliding {len(self._sliding)}]>"


class MemoryStore:
    """The `memory` backend: MemoryCache and MemoryLimiter behind the Store interface."""

    kind = "memory"

    def __init__(self, cache_max_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.cache = MemoryCache(cache_max_bytes, clock)
        self.max_entry_bytes = min(cache_max_bytes, MAX_ENTRY_BYTES)
        self.limiter = MemoryLimiter(clock)

    async def cache_get(self, key: str) -> CachedEntry | None:
        """The live entry under `key`, or None."""
        return self.cache.get(key)

    async def cache_set(self, key: str, entry: CachedEntry, ttl: float) -> bool:
        """Store `entry` for `ttl` seconds."""
        return self.cache.set(key, entry, ttl)

    async def rate_hit(self, bucket: str, limit: int, interval: float,
                       technique: str) -> RateDecision:
        """Check and count one request."""
        return self.limiter.hit(bucket, limit, interval, technique)

    async def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"<MemoryStore {self.cache!r} {self.limiter!r}>"
