import asyncio

import pytest

from aigw.store.base import CachedEntry
from aigw.store.coalesce import Coalescer
from aigw.store.memory import MemoryCache, MemoryLimiter, MemoryStore


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def entry(body=b"x" * 100, **kw):
    return CachedEntry.build(200, [("content-type", "application/json")], body, **kw)


def test_entry_drops_hop_by_hop_and_per_request_headers():
    e = CachedEntry.build(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked",
                                "Content-Length": "5", "Connection": "keep-alive",
                                "cf-aig-log-id": "abc", "x-request-id": "r1"}, b"data")
    assert e.headers == (("Content-Type", "text/event-stream"), ("x-request-id", "r1"))


def test_entry_roundtrip_is_byte_exact():
    body = bytes(range(256)) * 10 + b"data: {\"x\":1}\n\n\r\n"
    e = CachedEntry.build(201, [("a", "1"), ("a", "2")], body, step=2, is_stream=True)
    back = CachedEntry.loads(e.dumps())
    assert back == e


def test_cache_hit_miss_and_expiry():
    clock = Clock()
    c = MemoryCache(10_000, clock)
    assert c.get("k") is None
    assert c.set("k", entry(), 60)
    assert c.get("k").body == b"x" * 100
    clock.t += 59.9
    assert c.get("k") is not None
    clock.t += 0.2
    assert c.get("k") is None and len(c) == 0 and c.used == 0


def test_cache_is_lru_by_bytes_and_never_exceeds_bound():
    c = MemoryCache(2_000, Clock())
    sizes = []
    for i in range(50):
        assert c.set(f"k{i}", entry(b"y" * (100 + i * 7)), 60)
        c.get("k0")  # keep k0 hot
        sizes.append(c.used)
        assert c.used <= c.max_bytes
    assert c.get("k0") is not None
    assert c.get("k1") is None
    assert c.get("k49") is not None
    assert c.evictions > 0
    assert "evictions" in repr(c)


def test_entry_larger_than_cache_is_refused():
    c = MemoryCache(500, Clock())
    assert not c.set("big", entry(b"z" * 1000), 60)
    assert c.used == 0


def test_replacing_a_key_accounts_bytes():
    c = MemoryCache(10_000, Clock())
    c.set("k", entry(b"a" * 1000), 60)
    c.set("k", entry(b"a" * 10), 60)
    assert c.used == entry(b"a" * 10).size + 1 and len(c) == 1


def test_fixed_window_aligned_and_exact():
    clock = Clock(1000.0)  # window [1000, 1010) for interval 10
    lim = MemoryLimiter(clock)
    got = [lim.hit("g", 3, 10, "fixed").allowed for _ in range(5)]
    assert got == [True, True, True, False, False]
    clock.t = 1007.5
    d = lim.hit("g", 3, 10, "fixed")
    assert not d.allowed and d.retry_after == pytest.approx(2.5)
    clock.t = 1010.0
    assert lim.hit("g", 3, 10, "fixed").allowed
    assert lim.hit("other", 3, 10, "fixed").remaining == 2


def test_sliding_vs_fixed_per_cloudflare_example():
    # 10 per 10 minutes; 10 requests at 12:09 and 10 at 12:11.
    t0 = 600.0 * 1000  # a window boundary: "12:00"
    for technique, expected_late in (("fixed", 10), ("sliding", 0)):
        clock = Clock(t0 + 9 * 60)
        lim = MemoryLimiter(clock)
        assert sum(lim.hit("g", 10, 600, technique).allowed for _ in range(10)) == 10
        clock.t = t0 + 11 * 60
        assert sum(lim.hit("g", 10, 600, technique).allowed for _ in range(10)) == expected_late


def test_sliding_retry_after_and_release():
    clock = Clock(50.0)
    lim = MemoryLimiter(clock)
    assert lim.hit("g", 2, 10, "sliding").allowed
    clock.t = 53.0
    assert lim.hit("g", 2, 10, "sliding").allowed
    clock.t = 55.0
    d = lim.hit("g", 2, 10, "sliding")
    assert not d.allowed and d.retry_after == pytest.approx(5.0)
    clock.t = 60.0
    assert lim.hit("g", 2, 10, "sliding").allowed
    assert not lim.hit("g", 2, 10, "sliding").allowed


async def test_store_interface():
    s = MemoryStore(10_000)
    assert await s.cache_get("k") is None
    assert await s.cache_set("k", entry(), 60)
    assert (await s.cache_get("k")).status == 200
    assert (await s.rate_hit("g", 1, 60, "fixed")).allowed
    assert not (await s.rate_hit("g", 1, 60, "fixed")).allowed
    await s.close()
    assert "MemoryStore" in repr(s)


async def test_memory_limit_exact_under_concurrency():
    s = MemoryStore(1000)
    res = await asyncio.gather(*(s.rate_hit("g", 50, 60, "sliding") for _ in range(200)))
    assert sum(r.allowed for r in res) == 50


async def test_coalescer_one_leader_waiters_get_entry():
    co = Coalescer()
    calls = 0
    e = entry()

    async def request():
        nonlocal calls
        fut = co.claim("k")
        if fut is None:
            try:
                calls += 1
                await asyncio.sleep(0.01)
                return "upstream"
            finally:
                co.release("k", e)
        got = await co.wait(fut)
        return "shared" if got is e else "own"

    out = await asyncio.gather(*(request() for _ in range(10)))
    assert calls == 1 and out.count("upstream") == 1 and out.count("shared") == 9
    assert len(co) == 0 and "led 1 | joined 9" in repr(co)


async def test_coalescer_failed_leader_releases_waiters_empty():
    co = Coalescer()
    assert co.claim("k") is None
    fut = co.claim("k")
    waiter = asyncio.ensure_future(co.wait(fut))
    co.release("k", None)
    assert await waiter is None
    assert co.claim("k") is None  # a new leader can start


async def test_cancelled_waiter_does_not_cancel_others():
    co = Coalescer()
    co.claim("k")
    fut = co.claim("k")
    w1 = asyncio.ensure_future(co.wait(fut))
    w2 = asyncio.ensure_future(co.wait(fut))
    await asyncio.sleep(0)
    w1.cancel()
    e = entry()
    co.release("k", e)
    assert await w2 is e


def test_capture_gives_up_past_limit():
    from aigw.policy.tee import Capture

    t = Capture(10)
    t.start(200, [("content-type", "text/plain")], 1, True)
    t.feed(b"abc")
    t.feed(b"defg")
    assert t.data() == b"abcdefg"
    assert t.entry() is None  # not complete yet
    t.complete = True
    e = t.entry()
    assert e.body == b"abcdefg" and e.step == 1 and e.is_stream
    t.feed(b"hijk")
    assert t.data() is None and t.entry() is None and "overflowed" in repr(t)


def test_capture_of_error_is_not_an_entry():
    from aigw.policy.tee import Capture

    t = Capture(100)
    t.start(500, [], 0, False)
    t.feed(b"boom")
    t.complete = True
    assert t.entry() is None


async def test_enforce_rate_limit_raises_429_2003_with_retry_after():
    from aigw import config as cfg
    from aigw.errors import RateLimited
    from aigw.policy.gateway import GatewayPolicy
    from aigw.policy.ratelimit import enforce_rate_limit

    gw = cfg.from_dict({"gateways": {"g": {"rate_limiting_limit": 2,
                                           "rate_limiting_interval": 60}}}).gateways["g"]
    gp = GatewayPolicy.of(gw)
    s = MemoryStore(1000)
    await enforce_rate_limit(s, gp, "g")
    await enforce_rate_limit(s, gp, "g")
    with pytest.raises(RateLimited) as info:
        await enforce_rate_limit(s, gp, "g")
    err = info.value
    assert (err.status, err.code) == (429, 2003)
    name, value = err.headers[0]
    assert name == "retry-after" and 1 <= int(value) <= 60
    unlimited = GatewayPolicy.of(cfg.from_dict({}).default_gateway)
    assert unlimited.limit == 0 and unlimited.auth is None
    for _ in range(10):
        await enforce_rate_limit(s, unlimited, "x")


def test_limiter_forgets_expired_buckets():
    clock = Clock(100.0)
    lim = MemoryLimiter(clock)
    for i in range(100):
        lim.hit(f"f{i}", 5, 10, "fixed")
        lim.hit(f"s{i}", 5, 10, "sliding")
    assert len(lim) == 200
    clock.t = 200.0
    for _ in range(MemoryLimiter.SWEEP_EVERY):
        lim.hit("live", 10**9, 10, "fixed")
    assert len(lim) == 1
