import asyncio
import os
import subprocess
import sys
import time
import uuid

import pytest

pytest.importorskip("redis")

from aigw.store.base import CachedEntry  # noqa: E402
from aigw.store.redis import RedisStore  # noqa: E402
from tests.redis_helpers import REDIS_URL, TcpProxy, flush_prefix, require_redis  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def prefix():
    return f"aigwtest:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def store(prefix):
    require_redis()
    s = RedisStore(REDIS_URL, prefix=prefix, cache_max_bytes=100_000)
    yield s
    await s.close()
    await flush_prefix(prefix)


def entry(body=b'{"ok":true}', **kw):
    return CachedEntry.build(200, [("content-type", "application/json")], body, **kw)


async def test_cache_roundtrip_byte_exact_stream(store):
    body = b"data: {\"a\":1}\n\n" * 50 + b"data: [DONE]\n\n" + bytes(range(256))
    e = entry(body, step=1, is_stream=True)
    assert await store.cache_get("k") is None
    assert await store.cache_set("k", e, 60)
    got = await store.cache_get("k")
    assert got == e and got.body == body and got.is_stream and got.step == 1


async def test_cache_ttl_expires(store):
    await store.cache_set("k", entry(), 0.15)
    assert await store.cache_get("k") is not None
    await asyncio.sleep(0.25)
    assert await store.cache_get("k") is None


async def test_oversized_entry_not_stored(store):
    assert not await store.cache_set("k", entry(b"x" * 200_000), 60)
    assert await store.cache_get("k") is None


async def test_fixed_window_exact(store):
    got = [(await store.rate_hit("g", 5, 86400, "fixed")) for _ in range(8)]
    assert [d.allowed for d in got] == [True] * 5 + [False] * 3
    assert got[0].remaining == 4
    assert 0 < got[-1].retry_after <= 86400


async def test_fixed_window_rolls_over(store):
    # Windows of 1 s are aligned to the clock: start just after a boundary, so the four hits
    # fall in one window (they straddled two now and then, and three were allowed).
    await asyncio.sleep(1.0 - time.time() % 1.0 + 0.02)
    assert sum([(await store.rate_hit("g", 2, 1, "fixed")).allowed for _ in range(4)]) == 2
    await asyncio.sleep(1.05)
    assert (await store.rate_hit("g", 2, 1, "fixed")).allowed


async def test_sliding_window_exact_and_releases(store):
    res = [await store.rate_hit("g", 3, 0.5, "sliding") for _ in range(5)]
    assert [d.allowed for d in res] == [True, True, True, False, False]
    assert 0 < res[-1].retry_after <= 0.5
    await asyncio.sleep(res[-1].retry_after + 0.02)
    assert (await store.rate_hit("g", 3, 0.5, "sliding")).allowed


async def test_concurrent_hits_exact(prefix):
    require_redis()
    # A generous timeout: this measures atomicity, not how a loaded machine fails open.
    store = RedisStore(REDIS_URL, prefix=prefix, timeout=5.0)
    try:
        for technique in ("fixed", "sliding"):
            res = await asyncio.gather(*(store.rate_hit("g" + technique, 50, 86400, technique)
                                         for _ in range(120)))
            assert sum(d.allowed for d in res) == 50
        assert store.errors == 0
    finally:
        await store.close()
        await flush_prefix(prefix)


_WORKER = """
import asyncio, sys, time
from aigw.store.redis import RedisStore
async def main(url, prefix, technique, start_at, n):
    s = RedisStore(url, prefix=prefix, timeout=5.0)
    await s.ping()
    while time.time() < start_at:
        await asyncio.sleep(0.002)
    res = await asyncio.gather(*(s.rate_hit("gw", 50, 86400, technique) for _ in range(n)))
    print(sum(r.allowed for r in res), s.errors)
    await s.close()
asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])))
"""


@pytest.mark.parametrize("technique", ["fixed", "sliding"])
async def test_two_processes_share_one_exact_limit(store, prefix, technique):
    start_at = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, REDIS_URL, prefix, technique,
                               str(start_at), "150"], cwd=ROOT, stdout=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=30)[0].decode().split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    admitted = [int(o[0]) for o in outs]
    assert [int(o[1]) for o in outs] == [0, 0]
    assert sum(admitted) == 50, admitted


@pytest.fixture
async def proxied(prefix):
    require_redis()
    proxy = TcpProxy()
    await proxy.start()
    s = RedisStore(proxy.url, prefix=prefix, timeout=0.2, breaker=0.3)
    yield proxy, s
    await s.close()
    await proxy.close()
    await flush_prefix(prefix)


async def test_redis_going_away_fails_open_and_recovers(proxied):
    proxy, s = proxied
    assert await s.cache_set("k", entry(), 60)
    assert (await s.rate_hit("g", 1, 86400, "fixed")).allowed
    assert not (await s.rate_hit("g", 1, 86400, "fixed")).allowed

    await proxy.cut()
    t0 = time.monotonic()
    assert await s.cache_get("k") is None  # miss, not an exception
    assert (await s.rate_hit("g", 1, 86400, "fixed")).allowed  # fail open
    assert not await s.cache_set("k2", entry(), 60)
    assert time.monotonic() - t0 < 0.5
    assert s.errors >= 1 and "down" in repr(s)

    # While the breaker is open, calls skip Redis without waiting.
    t0 = time.monotonic()
    for _ in range(100):
        assert (await s.rate_hit("g", 1, 86400, "fixed")).allowed
    assert time.monotonic() - t0 < 0.05
    assert s.skipped >= 100

    await proxy.restore()
    await asyncio.sleep(0.35)
    got = None
    for _ in range(5):  # the first call after the breaker may land on a dead pooled socket
        got = await s.cache_get("k")
        if got is not None:
            break
    assert got is not None
    assert not (await s.rate_hit("g", 1, 86400, "fixed")).allowed  # the counter survived
    assert "up" in repr(s)


async def test_hanging_redis_costs_one_short_timeout(proxied):
    proxy, s = proxied
    await proxy.cut()
    await proxy.restore(mode="blackhole")
    t0 = time.monotonic()
    res = await asyncio.gather(*(s.rate_hit("g", 1, 60, "sliding") for _ in range(20)))
    first = time.monotonic() - t0
    assert all(d.allowed for d in res)
    assert first < 0.6, first  # concurrent calls share the wait; none stacks timeouts
    t0 = time.monotonic()
    for _ in range(50):
        await s.cache_get("k")
    assert time.monotonic() - t0 < 0.05  # breaker open: no waits at all


async def test_unreachable_at_start_then_appears(prefix):
    require_redis()
    proxy = TcpProxy()
    await proxy.start()
    await proxy.cut()  # the port is known but nothing listens
    s = RedisStore(proxy.url, prefix=prefix, timeout=0.2, breaker=0.2)
    try:
        assert not await s.ping()
        assert await s.cache_get("k") is None
        assert (await s.rate_hit("g", 1, 60, "fixed")).allowed
        await proxy.restore()
        await asyncio.sleep(0.25)
        assert await s.ping()
        assert await s.cache_set("k", entry(), 60)
        assert await s.cache_get("k") is not None
    finally:
        await s.close()
        await proxy.close()
        await flush_prefix(prefix)
