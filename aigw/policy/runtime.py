"""Policy at run time: the store, the coalescer and the cache/rate-limit flow around a call.

One `PolicyRuntime` per worker, created with the Gateway and closed with it. The flow for
a request whose caching is considered:

    lookup (every step that asks for it, in order; first hit wins) -> HIT: replay
    -> claim the coalescing key -> waiter: replay the leader's entry, or go on alone
    -> rate limit (hits never count) -> upstream, capturing the committed response
    -> 2xx and complete: wake the waiters, store the entry (never before the relay ends)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from aigw.config import Config, GatewaySpec
from aigw.errors import RateLimited
from aigw.metrics import CallbackCounter
from aigw.policy.cachepolicy import STATUS_HEADER, CachePolicy
from aigw.policy.gateway import GatewayPolicy, build_policies
from aigw.policy.ratelimit import enforce_rate_limit
from aigw.policy.tee import Capture
from aigw.store import make_store
from aigw.store.base import CachedEntry, Store
from aigw.store.coalesce import Coalescer

logger = logging.getLogger("aigw.policy")

Extra = tuple[tuple[str, str], ...]
# The upstream call: extra response headers and an optional capture in, the response out.
Go = Callable[[Extra, Capture | None], Awaitable[web.StreamResponse]]
# Told of a cache hit (for its log row); returns headers for the replay (cf-aig-log-id).
OnHit = Callable[[CachedEntry], Extra]

MISS: Extra = ((STATUS_HEADER, "MISS"),)
_HIT = (STATUS_HEADER, "HIT")
_SSE_EXTRA = (("X-Accel-Buffering", "no"), ("Cache-Control", "no-cache"))
_REPLAY_CHUNK = 1 << 16


class CacheStep:
    """One step's cache decision: its key (None when it skips the cache) and its policy."""

    __slots__ = ("step", "key", "policy")

    def __init__(self, step: int, key: str | None, policy: CachePolicy) -> None:
        self.step = step
        self.key = key
        self.policy = policy


async def replay(request: web.BaseRequest, entry: CachedEntry, universal: bool,
                 extra: Extra = ()) -> web.StreamResponse:
    """Answer from a cache entry: same status, headers and bytes; streams stay streams."""
    headers: CIMultiDict[str] = CIMultiDict(entry.headers)
    headers[_HIT[0]] = _HIT[1]
    if universal:
        headers["cf-aig-step"] = str(entry.step)
    for k, v in extra:
        headers[k] = v
    if not entry.is_stream:
        return web.Response(status=entry.status, headers=headers, body=entry.body)
    for k, v in _SSE_EXTRA:
        headers[k] = v
    out = web.StreamResponse(status=entry.status, headers=headers)
    await out.prepare(request)
    view = memoryview(entry.body)
    for i in range(0, len(view), _REPLAY_CHUNK):
        await out.write(view[i:i + _REPLAY_CHUNK])
    await out.write_eof()
    return out


class PolicyRuntime:
    """Per-worker policy state; `repr` shows the store and the coalescer."""

    def __init__(self, config: Config, *, key_prefix: str = "aigw:",
                 metrics: Any = None) -> None:
        self.config = config
        self.metrics = metrics  # aigw.metrics.GatewayMetrics: cache_hits, rate_limited
        self.gateways, self.default = build_policies(config)
        self.key_prefix = key_prefix
        self.store: Store | None = None
        self.coalescer = Coalescer()
        self._tasks: set[asyncio.Task[bool]] = set()
        self._owns_store = True

    def inherit(self, old: PolicyRuntime) -> None:
        """On a config reload: keep the old generation's store (cache entries, counters)
        when the store settings did not change; the old generation then never closes it."""
        if old.store is not None and old.config.store == self.config.store:
            self.store = old.store
            old._owns_store = False

    def policy(self, gw: GatewaySpec) -> GatewayPolicy:
        """The precomputed policy of a gateway spec."""
        return self.gateways.get(gw.id, self.default)

    async def start(self) -> None:
        """Create the store; an unreachable Redis is logged, never fatal."""
        if self.store is not None:  # inherited
            return
        self.store = make_store(self.config.store, prefix=self.key_prefix)
        store: Any = self.store  # the redis store counts failures; memory cannot fail
        if self.metrics is not None and hasattr(store, "errors"):
            self.metrics.add(CallbackCounter(
                "aigw_store_errors_total", "Shared-store calls that failed (the request went "
                "on: cache miss, limit admitted), and calls skipped while it was down",
                ("outcome",), lambda: {("error",): float(store.errors),
                                       ("skipped",): float(store.skipped)}))
        ping = getattr(self.store, "ping", None)
        if ping is not None and not await ping():
            logger.error("redis store unreachable at start-up: caching is off and rate limits "
                         "admit every request until it answers")

    async def close(self) -> None:
        """Finish pending cache writes, then close the store."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.store is not None and self._owns_store:
            await self.store.close()
            self.store = None

    # -------------------------------------------------------------- the flow

    async def limited(self, gp: GatewayPolicy, bucket: str, go: Go) -> web.StreamResponse:
        """No caching considered: rate limit, then the call."""
        if gp.limit:
            assert self.store is not None
            try:
                await enforce_rate_limit(self.store, gp, bucket)
            except RateLimited:
                self._count("rate_limited", bucket)
                raise
        return await go((), None)

    def _count(self, counter: str, bucket: str) -> None:
        if self.metrics is not None:
            getattr(self.metrics, counter).inc((bucket,))

    async def cached(self, request: web.BaseRequest, gp: GatewayPolicy, bucket: str,
                     steps: list[CacheStep], go: Go, universal: bool,
                     on_hit: OnHit | None = None) -> web.StreamResponse:
        """The cache flow around `go` (module docstring); `steps` in fallback order."""
        store = self.store
        assert store is not None
        keys = [s.key for s in steps if s.key is not None]
        if not keys:  # every step skips the cache
            return (await self._call_captured(store, gp, bucket, go, steps))[0]
        if len(keys) == 1:
            found = [await store.cache_get(keys[0])]
        else:
            found = await asyncio.gather(*(store.cache_get(k) for k in keys))
        for entry in found:  # step order: the first step with an entry answers
            if entry is not None:
                self._count("cache_hits", bucket)
                extra = on_hit(entry) if on_hit is not None else ()
                return await replay(request, entry, universal, extra)
        ckey = keys[0] if len(keys) == 1 else hashlib.sha256("|".join(keys).encode()).hexdigest()
        fut = self.coalescer.claim(ckey)
        if fut is not None:
            entry = await self.coalescer.wait(fut)
            if entry is not None:
                self._count("cache_hits", bucket)
                extra = on_hit(entry) if on_hit is not None else ()
                return await replay(request, entry, universal, extra)
            return (await self._call_captured(store, gp, bucket, go, steps))[0]
        entry = None
        try:
            resp, entry = await self._call_captured(store, gp, bucket, go, steps)
            return resp
        finally:
            self.coalescer.release(ckey, entry)

    async def _call_captured(self, store: Store, gp: GatewayPolicy, bucket: str, go: Go,
                             steps: list[CacheStep]) -> tuple[web.StreamResponse,
                                                              CachedEntry | None]:
        if gp.limit:
            try:
                await enforce_rate_limit(store, gp, bucket)
            except RateLimited as exc:
                exc.headers = tuple(exc.headers) + MISS  # caching was considered
                self._count("rate_limited", bucket)
                raise
        if not any(s.key is not None for s in steps):
            return await go(MISS, None), None
        capture = Capture(store.max_entry_bytes)
        resp = await go(MISS, capture)
        entry = capture.entry()
        if entry is None:
            return resp, None
        target = next((s for s in steps if s.step == entry.step), None)
        if target is None or target.key is None:
            return resp, None  # the step that answered did not ask for caching
        await self._store(store, target.key, entry, target.policy.ttl)
        return resp, entry

    async def _store(self, store: Store, key: str, entry: CachedEntry, ttl: int) -> None:
        if store.kind == "memory":
            await store.cache_set(key, entry, ttl)  # no I/O: done before this returns
            return
        # A network write must not hold the response back: it runs beside it.
        task = asyncio.get_running_loop().create_task(store.cache_set(key, entry, ttl))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __repr__(self) -> str:
        return f"<PolicyRuntime {self.store!r} {self.coalescer!r} [writes {len(self._tasks)}]>"
