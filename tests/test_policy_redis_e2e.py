"""Several gateway processes sharing one Redis behave as one gateway; Redis outages fail open."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import aiohttp
import pytest

from tests.conftest import base_config, free_port
from tests.redis_helpers import REDIS_URL, TcpProxy, flush_prefix, require_redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def toml_for(upstream, prefix: str, technique: str, redis_url: str = REDIS_URL) -> str:
    return f"""
[server]
host = "127.0.0.1"
shutdown_timeout = 2
[providers.openai]
base_url = "{upstream.url('/v1')}"
[gateways.shared]
rate_limiting_limit = 50
rate_limiting_interval = 86400
rate_limiting_technique = "{technique}"
[gateways.other]
rate_limiting_limit = 1
rate_limiting_interval = 86400
[store]
backend = "redis"
redis_url = "{redis_url}"
key_prefix = "{prefix}"
[logs]
backend = "off"
"""


async def wait_healthy(session: aiohttp.ClientSession, port: int, proc) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("gateway did not start")


@pytest.fixture
def prefix():
    return f"aigwtest:{uuid.uuid4().hex[:12]}:"


@pytest.mark.parametrize("technique", ["fixed", "sliding"])
async def test_two_serve_processes_share_limit_and_cache(upstream, tmp_path, prefix, technique):
    require_redis()
    cfg = tmp_path / "aigw.toml"
    cfg.write_text(toml_for(upstream, prefix, technique))
    ports = [free_port(), free_port()]
    procs = [subprocess.Popen([sys.executable, "-m", "aigw", "serve", "--config", str(cfg),
                               "--port", str(p)], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for p in ports]
    session = aiohttp.ClientSession()
    try:
        for p, proc in zip(ports, procs):
            await wait_healthy(session, p, proc)

        async def one(i: int) -> int:
            url = f"http://127.0.0.1:{ports[i % 2]}/v1/a/shared/openai/chat/completions"
            async with session.post(url, data=b'{"n":%d}' % i) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(one(i) for i in range(140)))
        assert statuses.count(200) == 50, statuses.count(200)
        assert statuses.count(429) == 90
        assert len(upstream.seen) == 50

        # The cache is shared too, and hits do not count: `other` admits one request a day.
        h = {"cf-aig-cache-ttl": "120", "Authorization": "Bearer t"}
        url = "http://127.0.0.1:{}/v1/a/other/openai/embeddings"
        async with session.post(url.format(ports[0]), data=b"{}", headers=h) as r:
            assert r.headers["cf-aig-cache-status"] == "MISS"
        for _ in range(50):  # the Redis write runs beside the response
            async with session.post(url.format(ports[1]), data=b"{}", headers=h) as r:
                await r.read()
                if r.headers["cf-aig-cache-status"] == "HIT":
                    break
            await asyncio.sleep(0.02)
        assert r.headers["cf-aig-cache-status"] == "HIT"
    finally:
        await session.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
        await flush_prefix(prefix)


async def test_redis_down_at_start_fails_open_then_recovers(upstream, make_gateway, prefix):
    require_redis()
    proxy = TcpProxy()
    await proxy.start()
    await proxy.cut()
    try:
        gw = await make_gateway(raw=base_config(upstream, {
            "store": {"backend": "redis", "redis_url": proxy.url, "key_prefix": prefix},
            "gateways": {"g": {"rate_limiting_limit": 1, "rate_limiting_interval": 600,
                               "cache_ttl": 600}}}))
        path = "/v1/a/g/openai/chat/completions"
        for _ in range(3):  # Redis is away: no cache, the limit admits
            async with gw.post(path, data=b"{}") as r:
                assert r.status == 200 and r.headers["cf-aig-cache-status"] == "MISS"
        assert len(upstream.seen) == 3
        store = gw.server.gateway.runtime.store
        assert store.errors >= 1
        async with gw.request("GET", "/metrics") as r:
            text = (await r.read()).decode()
        assert f'aigw_store_errors_total{{outcome="error"}} {store.errors}' in text

        await proxy.restore()
        await asyncio.sleep(1.1)  # the breaker's pause
        statuses = []
        for i in range(3):
            async with gw.post(path, data=b'{"i":%d}' % i) as r:
                statuses.append(r.status)
        assert statuses == [200, 429, 429]
        await asyncio.sleep(0.05)
        async with gw.post(path, data=b'{"i":0}') as r:
            assert r.status == 200 and r.headers["cf-aig-cache-status"] == "HIT"
    finally:
        await proxy.close()
        await flush_prefix(prefix)
