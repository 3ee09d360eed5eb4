"""Against a fault-injecting upstream: with a healthy fallback every request succeeds, without
one every request gets a clear error in time, and no upstream connection is ever leaked.

The fault server is a raw asyncio server (no HTTP library in its way), so it can send what no
well-behaved server would: resets, stalls, short bodies, garbage, broken chunking, drips.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import pytest

from aigw import _json

from conftest import Reply, base_config

SSE_EVENT = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
JSON_OK = b'{"ok":true}'


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")


class FaultServer:
    """Reads one request, then misbehaves as its path says: /fault/{name}/..."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.open_conns = 0
        self.requests: list[str] = []
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_conns += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                path = head.split(b" ", 2)[1].decode()
                self.requests.append(path)
                name = path.split("/")[2] if path.startswith("/fault/") else "ok"
                if not await self._reply(name, writer):
                    return
        finally:
            self.open_conns -= 1
            self.tasks.discard(task)
            writer.transport.abort()

    async def _reply(self, name: str, w: asyncio.StreamWriter) -> bool:  # noqa: C901
        """Misbehave; True to keep the connection for another request."""
        if name == "ok":
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(JSON_OK), JSON_OK))
            return True
        if name == "reset":
            w.transport.abort()
            return False
        if name == "close-empty":
            w.close()
            return False
        if name == "stall-before":
            await asyncio.sleep(3600)
        if name == "stall-after-head":  # head sent, no first event
            w.write(SSE_HEAD)
            await asyncio.sleep(3600)
        if name == "reset-after-head":
            w.write(SSE_HEAD)
            await w.drain()
            await asyncio.sleep(0.02)
            w.transport.abort()
            return False
        if name == "truncated":
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n{\"ok\":")
            await w.drain()
            await asyncio.sleep(0.02)
            w.close()
            return False
        if name == "truncated-stall":
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n{\"ok\":")
            await asyncio.sleep(3600)
        if name == "garbage":
            w.write(b"\x00\xff\xfegarbage \x01\x02\r\n\r\n\xff" * 4)
            await w.drain()
            await asyncio.sleep(0.5)
            return False
        if name == "bad-chunk":
            w.write(SSE_HEAD + b"zz\r\nnot a chunk\r\n")
            await w.drain()
            await asyncio.sleep(0.5)
            return False
        if name == "429":
            body = b'{"error":{"message":"rate limited"}}'
            w.write(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body))
            return True
        if name == "error-event":
            w.write(SSE_HEAD + _chunk(b'data: {"error":{"message":"overloaded"}}\n\n')
                    + b"0\r\n\r\n")
            return True
        if name == "drip":  # one byte at a time, well inside the idle timeout
            w.write(SSE_HEAD)
            for event in (SSE_EVENT, b"data: [DONE]\n\n"):
                for i in range(len(event)):
                    w.write(_chunk(event[i:i + 1]))
                    await asyncio.sleep(0.004)
            w.write(b"0\r\n\r\n")
            return True
        if name == "stall-after-first":  # committed, then silence
            w.write(SSE_HEAD + _chunk(SSE_EVENT))
            await asyncio.sleep(3600)
        if name == "reset-after-first":
            w.write(SSE_HEAD + _chunk(SSE_EVENT))
            await w.drain()
            await asyncio.sleep(0.02)
            w.transport.abort()
            return False
        if name == "garbage-after-first":
            w.write(SSE_HEAD + _chunk(SSE_EVENT) + b"\xff\xfe garbage\r\n")
            await w.drain()
            await asyncio.sleep(0.5)
            return False
        raise AssertionError(name)


# Faults before the commit point: a fallback step must rescue them.
BEFORE = ["reset", "close-empty", "stall-before", "stall-after-head", "reset-after-head",
          "truncated", "truncated-stall", "garbage", "bad-chunk", "429", "error-event"]
# Faults after the first event went out: the stream is ended as a cut, never hangs.
AFTER = ["stall-after-first", "reset-after-first", "garbage-after-first"]
IDLE = 0.3  # server.stream_idle_timeout for these tests
STEP_TIMEOUT_MS = 600


@pytest.fixture
async def faults():
    srv = FaultServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def fgw(make_gateway, upstream, faults):
    raw = base_config(upstream, {"server": {"stream_idle_timeout": IDLE}})
    raw["providers"]["custom-fault"] = {"base_url": f"http://127.0.0.1:{faults.port}/fault"}
    return await make_gateway(raw=raw)


async def _settled(gw, limit: float = 2.0) -> dict:
    """Wait (bounded) until no upstream connection is active; return the counts."""
    deadline = time.monotonic() + limit
    while True:
        counts = gw.server.gateway.pools.counts()
        if all(active == 0 for active, _ in counts.values()) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.02)


def _step(provider: str, endpoint: str, stream: bool = True) -> dict:
    return {"provider": provider, "endpoint": endpoint,
            "headers": {"Authorization": "Bearer sk-test"},
            "config": {"requestTimeout": STEP_TIMEOUT_MS},
            "query": {"model": "m", "stream": stream}}


async def _read_all(r: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """(body, complete): complete is False when the stream ended without its terminator."""
    parts = []
    try:
        async for chunk in r.content.iter_any():
            parts.append(chunk)
    except aiohttp.ClientPayloadError:
        return b"".join(parts), False
    return b"".join(parts), True


@pytest.mark.parametrize("fault", BEFORE + ["drip"])
async def test_fallback_rescues_every_fault_before_the_first_byte(fgw, faults, fault):
    steps = [_step("custom-fault", f"{fault}/chat/completions"),
             _step("openai", "chat/completions")]
    t0 = time.monotonic()
    async with asyncio.timeout(5):
        async with fgw.post("/v1/acct/gw", data=_json.dumps(steps)) as r:
            body, complete = await _read_all(r)
    assert r.status == 200 and complete, (r.status, body[:200])
    assert r.headers["cf-aig-step"] == ("0" if fault == "drip" else "1")
    assert time.monotonic() - t0 < STEP_TIMEOUT_MS / 1000 + 1.5
    assert faults.requests and faults.requests[0].startswith(f"/fault/{fault}/")
    counts = await _settled(fgw)
    assert all(a == 0 for a, _ in counts.values()), (fault, counts, fgw.server.gateway.pools)


@pytest.mark.parametrize("fault", BEFORE)
async def test_without_fallback_every_fault_is_a_clear_error_in_time(fgw, faults, fault):
    t0 = time.monotonic()
    async with asyncio.timeout(5):
        async with fgw.post(f"/v1/acct/gw/custom-fault/{fault}/chat/completions",
                            data=b'{"stream":true}',
                            headers={"cf-aig-request-timeout": str(STEP_TIMEOUT_MS)}) as r:
            body, complete = await _read_all(r)
    elapsed = time.monotonic() - t0
    assert elapsed < STEP_TIMEOUT_MS / 1000 + 1.5
    if fault == "429":
        assert r.status == 429 and b"rate limited" in body  # the upstream's own answer
    elif fault == "error-event":
        assert r.status == 200 and b"overloaded" in body  # the provider's event, verbatim
    else:
        env = _json.loads(body)
        assert r.status in (502, 504) and env["name"] == "AiGatewayError"
        assert env["error"][0]["code"] in (2909, 2910) and env["attempts"]
        timeout_like = fault in ("stall-before", "stall-after-head", "truncated-stall")
        assert (r.status == 504) == timeout_like, (fault, r.status)
    counts = await _settled(fgw)
    assert all(a == 0 for a, _ in counts.values()), (fault, counts)


@pytest.mark.parametrize("fault", AFTER)
async def test_faults_after_the_first_byte_end_as_a_cut_stream(fgw, faults, fault):
    t0 = time.monotonic()
    async with asyncio.timeout(5):
        async with fgw.post(f"/v1/acct/gw/custom-fault/{fault}/chat/completions",
                            data=b'{"stream":true}') as r:
            body, complete = await _read_all(r)
    assert r.status == 200
    assert body.startswith(SSE_EVENT) and b'"error"' in body[len(SSE_EVENT):]
    assert not complete  # no chunked terminator: no client can take it for complete
    assert time.monotonic() - t0 < IDLE + 1.5
    counts = await _settled(fgw)
    assert all(a == 0 for a, _ in counts.values()), (fault, counts)


async def test_retry_after_on_429_is_honoured_then_falls_back(fgw, faults):
    steps = [dict(_step("custom-fault", "429/x", stream=False),
                  config={"maxAttempts": 2, "retryDelay": 0}),
             _step("openai", "chat/completions", stream=False)]
    t0 = time.monotonic()
    async with fgw.post("/v1/acct/gw", data=_json.dumps(steps)) as r:
        await r.read()
    assert r.status == 200 and r.headers["cf-aig-step"] == "1"
    assert 0.9 < time.monotonic() - t0 < 3  # waited Retry-After: 1 between the two tries
    assert len([p for p in faults.requests if p.startswith("/fault/429/")]) == 2


async def test_mixed_faults_concurrently_leak_nothing(fgw, faults):
    """Every fault at once, three times over; then the pools are back at rest."""
    async def one(fault: str) -> int:
        steps = [_step("custom-fault", f"{fault}/x"), _step("openai", "chat/completions")]
        async with fgw.post("/v1/acct/gw", data=_json.dumps(steps)) as r:
            body, complete = await _read_all(r)
            return r.status if complete else -1

    async with asyncio.timeout(10):
        statuses = await asyncio.gather(*(one(f) for f in BEFORE * 3))
    assert statuses == [200] * len(statuses)
    counts = await _settled(fgw)
    assert all(a == 0 for a, _ in counts.values()), counts
    pools = fgw.server.gateway.pools
    assert "active 0" in repr(pools)


async def test_client_disconnect_mid_stream_releases_the_upstream(fgw, faults, caplog):
    """A client that hangs up during a stream frees its upstream connection, quietly."""
    caplog.set_level(logging.WARNING)
    reader, writer = await asyncio.open_connection("127.0.0.1", fgw.server.port)
    writer.write(b"POST /v1/acct/gw/custom-fault/stall-after-first/x HTTP/1.1\r\n"
                 b"Host: gw\r\nContent-Length: 2\r\n\r\n{}")
    async with asyncio.timeout(3):
        await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(0.05)
    assert faults.open_conns >= 1
    writer.transport.abort()
    counts = await _settled(fgw)
    assert all(a == 0 for a, _ in counts.values()), counts


async def test_client_disconnect_while_writing_logs_no_traceback(fgw, upstream, caplog):
    """A write to a client that went away ends the response; it is not an error (it was
    logged as 'Error handling request' with a traceback, once per disconnect)."""
    caplog.set_level(logging.DEBUG)
    upstream.script("/v1/chat", Reply(chunks=[b"data: " + b"x" * 4000 + b"\n\n"] * 400,
                                      headers={"Content-Type": "text/event-stream"}))
    for _ in range(30):  # the race (write after the peer closed) needs a few tries
        reader, writer = await asyncio.open_connection("127.0.0.1", fgw.server.port)
        writer.write(b"POST /v1/acct/gw/openai/chat/completions HTTP/1.1\r\nHost: gw\r\n"
                     b"Content-Length: 2\r\n\r\n{}")
        async with asyncio.timeout(3):
            await reader.readuntil(b"\r\n\r\n")
        writer.close()  # a clean FIN, as most clients do (an abort cancels the handler)
        await asyncio.sleep(0.01)
    counts = await _settled(fgw)
    assert all(a == 0 for a, _ in counts.values()), counts
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


@pytest.mark.parametrize("fault", ["stall-before", "stall-after-head", "truncated-stall"])
async def test_stream_idle_timeout_alone_is_a_timeout_that_falls_back(fgw, faults, fault):
    """No request timeout anywhere: server.stream_idle_timeout still bounds every wait."""
    steps = [_step("custom-fault", f"{fault}/x"), _step("openai", "chat/completions")]
    for s in steps:
        del s["config"]
    t0 = time.monotonic()
    async with asyncio.timeout(5):
        async with fgw.post("/v1/acct/gw", data=_json.dumps(steps)) as r:
            body, complete = await _read_all(r)
    assert r.status == 200 and complete and r.headers["cf-aig-step"] == "1"
    assert IDLE * 0.9 < time.monotonic() - t0 < IDLE + 1.0
    async with asyncio.timeout(5):
        async with fgw.post(f"/v1/acct/gw/custom-fault/{fault}/x", data=b"{}") as r:
            env = _json.loads(await r.read())
    assert r.status == 504 and env["error"][0]["code"] == 2910
    assert env["attempts"][0]["outcome"] == "timeout"
    counts = await _settled(fgw)
    assert all(a == 0 for a, _ in counts.values()), counts
