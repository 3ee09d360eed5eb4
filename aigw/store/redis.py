"""The redis backend: cache and rate-limit counters shared by every aigw process.

Rate limits are exact across processes and machines: each check-and-increment is one Lua
script, so Redis runs it atomically, and the window is computed from Redis's own clock
(`TIME`), so hosts with skewed clocks still agree on window boundaries.

Redis going away never stops traffic: a failed call is a cache miss or an admitted request
(fail open), counted in `errors` and logged at most every LOG_EVERY seconds. After a
failure a breaker skips Redis for `breaker` seconds, so a dead server costs one short
timeout per breaker period instead of one per request; the next call after that is a
probe, and redis-py reconnects by itself when the server is back.
"""

from __future__ import annotations

import logging
import os
import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from aigw.store.base import ADMIT, MAX_ENTRY_BYTES, CachedEntry, RateDecision

logger = logging.getLogger("aigw.store")

LOG_EVERY = 10.0

# KEYS[1] = window key prefix. ARGV = interval ms, limit.
# The window index comes from Redis TIME; the counter key expires one second after its window.
_FIXED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local idx = math.floor(now / win)
local key = KEYS[1] .. ':' .. idx
local n = tonumber(redis.call('GET', key) or '0')
if n >= limit then
  return {0, 0, (idx + 1) * win - now}
end
n = redis.call('INCR', key)
if n == 1 then redis.call('PEXPIRE', key, win + 1000) end
return {1, limit - n, 0}
"""

# KEYS[1] = sorted set of admission times (microseconds). ARGV = interval us, limit, member.
_SLIDING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local win = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)
local n = redis.call('ZCARD', KEYS[1])
if n < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(win / 1000) + 1000)
  return {1, limit - n - 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + win - now}
"""


class RedisStore:
    """Store backed by one Redis server; see the module docstring for failure behaviour."""

    kind = "redis"

    def __init__(self, url: str, *, prefix: str = "aigw:", cache_max_bytes: int = 2**28,
                 timeout: float = 0.5, breaker: float = 1.0, max_connections: int = 64) -> None:
        self.url = url
        self.prefix = prefix
        self.cache_max_bytes = cache_max_bytes
        self.max_entry_bytes = min(cache_max_bytes, MAX_ENTRY_BYTES)
        self.breaker = breaker
        self.errors = 0
        self.skipped = 0
        self._down_until = 0.0
        self._last_log = -LOG_EVERY
        self._unlogged = 0
        # A bounded pool that queues (for at most a second) instead of refusing: the
        # default pool raises past 100 connections, which would turn load into fail-open.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=1.0, socket_timeout=timeout,
            socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0),
        )
        self._r = aioredis.Redis(connection_pool=pool)
        self._fixed = self._r.register_script(_FIXED)
        self._sliding = self._r.register_script(_SLIDING)

    # -------------------------------------------------------------- breaker (no awaits)

    def _usable(self) -> bool:
        if self._down_until == 0.0:
            return True
        now = time.monotonic()
        if now < self._down_until:
            self.skipped += 1
            return False
        # Half-open: this call probes; the others keep skipping until it answers.
        self._down_until = now + self.breaker
        return True

    def _ok(self) -> None:
        if self._down_until:
            self._down_until = 0.0
            logger.warning("redis store %s reachable again", self._safe_url())

    def _failed(self, op: str, exc: Exception) -> None:
        self.errors += 1
        now = time.monotonic()
        self._down_until = now + self.breaker
        if now - self._last_log >= LOG_EVERY:
            logger.error("redis store %s: %s failed (%s: %s); failing open, %d earlier errors "
                         "not logged", self._safe_url(), op, type(exc).__name__, exc,
                         self._unlogged)
            self._last_log = now
            self._unlogged = 0
        else:
            self._unlogged += 1

    def _safe_url(self) -> str:
        host = self.url.split("@")[-1].split("//")[-1]
        return f"redis://{host}"

    # -------------------------------------------------------------- cache

    async def cache_get(self, key: str) -> CachedEntry | None:
        """The live entry under `key`; None on a miss or when Redis is unreachable."""
        if not self._usable():
            return None
        try:
            data = await self._r.get(self.prefix + "c:" + key)
        except (RedisError, OSError) as exc:
            self._failed("cache get", exc)
            return None
        self._ok()
        if not isinstance(data, bytes):
            return None
        try:
            return CachedEntry.loads(data)  # bytes: the client never decodes responses
        except (ValueError, KeyError, TypeError) as exc:
            self._failed("cache decode", exc)
            return None

    async def cache_set(self, key: str, entry: CachedEntry, ttl: float) -> bool:
        """SET with PX; refused above cache_max_bytes or when Redis is unreachable."""
        if ttl <= 0 or entry.size > self.cache_max_bytes or not self._usable():
            return False
        try:
            await self._r.set(self.prefix + "c:" + key, entry.dumps(), px=int(ttl * 1000))
        except (RedisError, OSError) as exc:
            self._failed("cache set", exc)
            return False
        self._ok()
        return True

    # -------------------------------------------------------------- rate limits

    async def rate_hit(self, bucket: str, limit: int, interval: float,
                       technique: str) -> RateDecision:
        """One atomic check-and-increment in Redis; admits when Redis is unreachable."""
        if not self._usable():
            return ADMIT
        key = f"{self.prefix}rl:{{{bucket}}}"
        try:
            if technique == "sliding":
                res = await self._sliding(keys=[key + ":s"],
                                          args=[int(interval * 1_000_000), limit,
                                                os.urandom(8).hex()])
                scale = 1_000_000
            else:
                res = await self._fixed(keys=[key + ":f"], args=[int(interval * 1000), limit])
                scale = 1000
        except (RedisError, OSError) as exc:
            self._failed("rate limit", exc)
            return ADMIT
        self._ok()
        allowed, remaining, wait = (int(v) for v in res)
        return RateDecision(bool(allowed), remaining, wait / scale)

    async def ping(self) -> bool:
        """True when Redis answers now (start-up check; never raises)."""
        try:
            await self._r.ping()
        except (RedisError, OSError) as exc:
            self._failed("ping", exc)
            return False
        self._ok()
        return True

    async def close(self) -> None:
        """Close the pool."""
        await self._r.aclose(close_connection_pool=True)

    def __repr__(self) -> str:
        state = "down" if self._down_until else "up"
        return (f"<RedisStore {self._safe_url()} [{state} | errors {self.errors} "
                f"| skipped {self.skipped}]>")
