"""Slow and oversized clients, on real sockets: each is bounded by a config limit, answered or
closed, while other clients are served as usual."""

from __future__ import annotations

import asyncio
import time

import pytest

from aigw import _json

from conftest import base_config

CLIENT_TIMEOUT = 0.6
HEAD = b"POST /v1/acct/gw/openai/chat/completions HTTP/1.1\r\nHost: gw\r\n"


@pytest.fixture
async def sgw(make_gateway, upstream):
    raw = base_config(upstream, {"server": {"client_timeout": CLIENT_TIMEOUT,
                                            "max_body_bytes": 1024, "max_headers": 16,
                                            "max_field_size": 1024, "max_line_size": 2048}})
    return await make_gateway(raw=raw)


async def _until_closed(reader: asyncio.StreamReader, limit: float) -> tuple[bytes, float]:
    """Read everything until the server closes; (bytes, seconds it took)."""
    t0 = time.monotonic()
    data = b""
    async with asyncio.timeout(limit):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionError:
                break
            if not chunk:
                break
            data += chunk
    return data, time.monotonic() - t0


async def _drip(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    """Send `data` one byte at a time until done or the peer is gone."""
    for i in range(len(data)):
        if writer.is_closing():
            return
        try:
            writer.write(data[i:i + 1])
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every)


async def _healthy_latencies(gw, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        async with gw.post("/v1/acct/gw/openai/chat/completions", data=b"{}") as r:
            await r.read()
            assert r.status == 200
        out.append(time.monotonic() - t0)
        await asyncio.sleep(0.05)
    return out


async def test_slow_headers_are_cut_at_client_timeout_while_others_are_served(sgw):
    conns = [await asyncio.open_connection("127.0.0.1", sgw.server.port) for _ in range(20)]
    drips = [asyncio.create_task(_drip(w, HEAD + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n", 0.05))
             for _, w in conns]
    try:
        latencies = await _healthy_latencies(sgw, 10)
        assert max(latencies) < 0.3, latencies
        for reader, _ in conns:
            data, took = await _until_closed(reader, CLIENT_TIMEOUT + 2.0)
            assert b" 200 " not in data[:16]
        assert took < CLIENT_TIMEOUT + 1.5
    finally:
        for t in drips:
            t.cancel()
        for _, w in conns:
            w.close()


async def test_an_idle_connection_without_a_request_is_closed(sgw):
    reader, writer = await asyncio.open_connection("127.0.0.1", sgw.server.port)
    try:
        data, took = await _until_closed(reader, CLIENT_TIMEOUT + 2.0)
        assert data == b"" and CLIENT_TIMEOUT * 0.8 < took < CLIENT_TIMEOUT + 1.5
    finally:
        writer.close()


async def test_slow_body_gets_408_and_the_connection_closes(sgw, upstream):
    reader, writer = await asyncio.open_connection("127.0.0.1", sgw.server.port)
    drip = asyncio.create_task(_drip(writer, b"x" * 500, 0.05))
    try:
        writer.write(HEAD + b"Content-Length: 500\r\n\r\n")
        data, took = await _until_closed(reader, CLIENT_TIMEOUT + 2.0)
        assert data.startswith(b"HTTP/1.1 408 "), data[:100]
        env = _json.loads(data.partition(b"\r\n\r\n")[2])
        assert env["error"][0]["code"] == 2913
        assert took < 2 * CLIENT_TIMEOUT + 1.0  # body deadline, then lingering
        assert upstream.seen == []
    finally:
        drip.cancel()
        writer.close()


async def test_slow_body_within_the_timeout_is_fine(sgw, upstream):
    reader, writer = await asyncio.open_connection("127.0.0.1", sgw.server.port)
    try:
        writer.write(HEAD + b"Content-Length: 4\r\nConnection: close\r\n\r\n")
        await _drip(writer, b"{}  ", 0.05)
        data, _ = await _until_closed(reader, 3)
        assert data.startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_body_over_the_limit_is_413_without_reading_it_all(sgw, upstream, framing):
    reader, writer = await asyncio.open_connection("127.0.0.1", sgw.server.port)
    try:
        if framing == "length":
            writer.write(HEAD + b"Content-Length: 100000\r\n\r\n" + b"x" * 2000)
        else:
            writer.write(HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
                         + b"400\r\n" + b"x" * 1024 + b"\r\n" + b"400\r\n" + b"x" * 1024 + b"\r\n")
        data, took = await _until_closed(reader, 3)
        assert data.startswith(b"HTTP/1.1 413 "), data[:100]
        assert _json.loads(data.partition(b"\r\n\r\n")[2])["error"][0]["code"] == 2906
        assert took < CLIENT_TIMEOUT + 1.5 and upstream.seen == []
    finally:
        writer.close()


@pytest.mark.parametrize("what", ["many-headers", "huge-value", "huge-line", "huge-name"])
async def test_oversized_heads_are_refused(sgw, upstream, what):
    if what == "many-headers":
        extra = b"".join(b"X-H%d: v\r\n" % i for i in range(40))
        head = HEAD + extra
    elif what == "huge-value":
        head = HEAD + b"X-Big: " + b"v" * 5000 + b"\r\n"
    elif what == "huge-name":
        head = HEAD + b"X-" + b"n" * 5000 + b": v\r\n"
    else:
        head = b"POST /v1/acct/gw/openai/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: gw\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", sgw.server.port)
    try:
        writer.write(head + b"Content-Length: 2\r\n\r\n{}")
        data, took = await _until_closed(reader, 3)
        assert data == b"" or data[9:12] in (b"400", b"413", b"431"), data[:100]
        assert took < CLIENT_TIMEOUT + 1.5 and upstream.seen == []
    finally:
        writer.close()
    # the gateway still serves
    assert max(await _healthy_latencies(sgw, 2)) < 0.3


async def test_client_timeout_is_off_when_zero(make_gateway, upstream):
    gw = await make_gateway(raw=base_config(upstream, {"server": {"client_timeout": 0}}))
    assert gw.server.gateway.client_timeout is None
    async with gw.post("/v1/acct/gw/openai/chat/completions", data=b"{}") as r:
        assert r.status == 200
