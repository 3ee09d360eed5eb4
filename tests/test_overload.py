"""Over `server.max_concurrent_requests` the gateway sheds with 503 at once instead of
queueing, keeps health routes answering, and recovers when the load drops."""

from __future__ import annotations

import asyncio
import time

from aigw import _json

from conftest import Reply, base_config

LIMIT = 4


async def _gateway(make_gateway, upstream, limit=LIMIT):
    return await make_gateway(raw=base_config(
        upstream, {"server": {"max_concurrent_requests": limit}}))


async def _post(gw, path="/v1/acct/gw/openai/chat/completions"):
    t0 = time.monotonic()
    async with gw.post(path, data=b"{}") as r:
        body = await r.read()
        return r.status, body, dict(r.headers), time.monotonic() - t0


async def test_load_above_capacity_is_shed_with_503_and_recovers(make_gateway, upstream):
    gw = await _gateway(make_gateway, upstream)
    upstream.script("/v1/chat", Reply(delay=0.4))
    results = await asyncio.gather(*(_post(gw) for _ in range(5 * LIMIT)))
    ok = [r for r in results if r[0] == 200]
    shed = [r for r in results if r[0] == 503]
    assert len(ok) == LIMIT and len(shed) == 4 * LIMIT
    for status, body, headers, took in shed:
        env = _json.loads(body)
        assert env["error"][0]["code"] == 2911 and env["name"] == "AiGatewayError"
        assert headers["Retry-After"] == "1"
        assert took < 0.3  # answered at once, not queued behind the slow ones
    assert len(upstream.seen) == LIMIT  # shed requests never went upstream
    assert gw.server.gateway.inflight == 0
    upstream.script("/v1/chat", Reply())
    again = await asyncio.gather(*(_post(gw) for _ in range(LIMIT)))
    assert [r[0] for r in again] == [200] * LIMIT


async def test_health_and_metrics_answer_while_saturated(make_gateway, upstream):
    gw = await _gateway(make_gateway, upstream, limit=1)
    upstream.script("/v1/chat", Reply(delay=0.5))
    slow = asyncio.create_task(_post(gw))
    await asyncio.sleep(0.1)
    assert gw.server.gateway.inflight == 1
    assert (await _post(gw))[0] == 503
    for path in ("/healthz", "/readyz", "/metrics"):
        async with gw.request("GET", path) as r:
            assert r.status == 200, path
    assert (await slow)[0] == 200


async def test_streams_hold_their_slot_until_done_and_disconnects_free_it(make_gateway,
                                                                           upstream):
    gw = await _gateway(make_gateway, upstream, limit=1)
    upstream.script("/v1/chat", Reply(chunks=[b"data: {}\n\n"] * 50, chunk_delay=0.05,
                                      headers={"Content-Type": "text/event-stream"}))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
    writer.write(b"POST /v1/acct/gw/openai/chat/completions HTTP/1.1\r\nHost: gw\r\n"
                 b"Content-Length: 2\r\n\r\n{}")
    async with asyncio.timeout(3):
        await reader.readuntil(b"\r\n\r\n")
    assert (await _post(gw))[0] == 503  # the stream is still in flight
    writer.transport.abort()
    deadline = time.monotonic() + 2
    while gw.server.gateway.inflight and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert gw.server.gateway.inflight == 0
    upstream.script("/v1/chat", Reply())
    assert (await _post(gw))[0] == 200


async def test_unbounded_by_default(make_gateway, upstream):
    gw = await make_gateway()
    upstream.script("/v1/chat", Reply(delay=0.2))
    results = await asyncio.gather(*(_post(gw) for _ in range(40)))
    assert {r[0] for r in results} == {200}
