"""SIGTERM drains in-flight streams; SIGHUP reloads (or refuses) the config under load;
readiness turns 503 while draining."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from aigw import config as config_mod
from aigw.server import Server
from tests.conftest import Reply, base_config
from tests.procs import Aigw, config_text, free_port, session

CHAT = "/v1/acct/gw/openai/chat/completions"
SSE = {"Content-Type": "text/event-stream"}
CHUNKS = [b'data: {"n":%d}\n\n' % i for i in range(10)] + [b"data: [DONE]\n\n"]


async def _stream(s: aiohttp.ClientSession, url: str, started: asyncio.Event | None = None,
                  counter: list[int] | None = None) -> bytes:
    async with s.post(url, data=b'{"stream":true}') as r:
        assert r.status == 200
        out = b""
        async for chunk in r.content.iter_any():
            out += chunk
            if counter is not None and len(out) == len(chunk):
                counter[0] += 1
                if started is not None and counter[0] == 20:
                    started.set()
        return out


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_completes_20_slow_streams(upstream, tmp_path, procs, workers):
    upstream.script("/v1/chat", Reply(chunks=CHUNKS, chunk_delay=0.1, headers=SSE))
    gw = Aigw(tmp_path, config_text(upstream, free_port()), workers=workers)
    procs.append(gw)
    await gw.ready()
    all_started, counter = asyncio.Event(), [0]
    async with session() as s:
        tasks = [asyncio.create_task(_stream(s, gw.url(CHAT), all_started, counter))
                 for _ in range(20)]
        async with asyncio.timeout(10):
            await all_started.wait()
        gw.signal(signal.SIGTERM)
        bodies = await asyncio.gather(*tasks)
    assert bodies == [b"".join(CHUNKS)] * 20
    assert await gw.wait_exit() == 0
    with pytest.raises(aiohttp.ClientConnectionError):
        async with session() as s:
            await s.get(gw.url("/healthz"))
    await asyncio.sleep(0.2)
    assert sum(1 for a in gw.access() if a["route"] == "provider" and a["status"] == 200) == 20


async def _load(gw: Aigw, stop: asyncio.Event, paths: list[str], failures: list[str]) -> None:
    async with session() as s:
        while not stop.is_set():
            try:
                async with s.post(gw.url(CHAT), data=b"{}") as r:
                    body = await r.json()
                    if r.status != 200:
                        failures.append(f"{r.status} {body}")
                    else:
                        paths.append(body["path"])
            except aiohttp.ClientError as exc:
                failures.append(repr(exc))


@pytest.mark.parametrize("workers", [1, 2])
async def test_sighup_reloads_under_load_without_failures(upstream, tmp_path, procs, workers):
    upstream.script("/a/v1/chat/stream", Reply(chunks=CHUNKS, chunk_delay=0.1, headers=SSE))
    gw = Aigw(tmp_path, config_text(upstream, free_port(), "/a/v1"), workers=workers)
    procs.append(gw)
    await gw.ready()
    stop, paths, failures = asyncio.Event(), [], []
    loaders = [asyncio.create_task(_load(gw, stop, paths, failures)) for _ in range(6)]
    async with session() as s:
        long = asyncio.create_task(_stream(s, gw.url("/v1/acct/gw/openai/chat/stream")))
        await asyncio.sleep(0.3)
        gw.config.write_text(config_text(upstream, gw.port, "/b/v1"))
        gw.signal(signal.SIGHUP)
        await gw.wait_for("reloaded config")
        seen = len(paths)
        for _ in range(100):  # bounded: up to 5 s of traffic after the reload
            if len(paths) > seen + 20:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*loaders)
        assert await long == b"".join(CHUNKS)  # a stream in flight across the reload completes
    assert failures == []
    assert paths[0] == "/a/v1/chat/completions" and paths[-1] == "/b/v1/chat/completions"
    gw.signal(signal.SIGTERM)
    assert await gw.wait_exit() == 0


@pytest.mark.parametrize("workers", [1, 2])
async def test_sighup_with_an_invalid_config_keeps_the_old_one(upstream, tmp_path, procs,
                                                                 workers):
    gw = Aigw(tmp_path, config_text(upstream, free_port(), "/a/v1"), workers=workers)
    procs.append(gw)
    await gw.ready()
    gw.config.write_text('[providers.openai]\nbase_url = "not a url"\n')
    gw.signal(signal.SIGHUP)
    await gw.wait_for("reload refused")
    refused = next(m for m in gw.messages() if "reload refused" in m["msg"])
    assert refused["level"] == "error" and "providers.openai.base_url: not a URL" in refused["msg"]
    async with session() as s:
        async with s.post(gw.url(CHAT), data=b"{}") as r:
            assert r.status == 200 and (await r.json())["path"] == "/a/v1/chat/completions"
    gw.signal(signal.SIGTERM)
    assert await gw.wait_exit() == 0


async def test_readyz_is_503_while_draining(upstream):
    upstream.script("/v1/chat", Reply(chunks=CHUNKS, chunk_delay=0.1, headers=SSE))
    cfg = config_mod.from_dict(base_config(upstream, {"server": {"shutdown_timeout": 5}}))
    srv = Server(cfg)
    await srv.start("127.0.0.1", 0)
    ready = await srv.gateway.handle(make_mocked_request("GET", "/readyz"))
    assert ready.status == 200
    async with aiohttp.ClientSession() as s:
        stream = asyncio.create_task(_stream(s, f"http://127.0.0.1:{srv.port}{CHAT}"))
        await asyncio.sleep(0.3)
        stopping = asyncio.create_task(srv.stop())
        await asyncio.sleep(0.1)
        draining = await srv.gateway.handle(make_mocked_request("GET", "/readyz"))
        assert draining.status == 503 and not stopping.done()
        assert await stream == b"".join(CHUNKS)
        await stopping
