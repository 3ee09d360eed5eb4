"""The universal endpoint: steps, fallback triggers, retries, the commit point."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from aigw import _json
from tests.conftest import Reply

OPENAI_SSE = [
    b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n',
    b'data: {"choices":[{"index":0,"delta":{"content":"b"}}]}\n\n',
    b"data: [DONE]\n\n",
]
SSE = {"Content-Type": "text/event-stream"}


def step(provider="openai", endpoint="chat/completions", **kw):
    s = {"provider": provider, "endpoint": endpoint,
         "headers": {"Authorization": f"Bearer key-{provider}"}, "query": {"model": "m"}}
    s.update(kw)
    return s


async def post_steps(gw, steps, headers=None):
    async with gw.post("/v1/acct/gw", data=_json.dumps(steps), headers=headers or {}) as r:
        return r.status, r.headers, await r.read()


async def test_first_step_answers(upstream, gw):
    status, headers, body = await post_steps(gw, [step(), step("anthropic", "v1/messages")])
    assert status == 200 and headers["cf-aig-step"] == "0"
    seen = upstream.seen
    assert len(seen) == 1
    assert seen[0].method == "POST" and seen[0].path == "/v1/chat/completions"
    assert seen[0].body == b'{"model":"m"}'
    assert seen[0].headers["content-type"] == "application/json"
    assert seen[0].headers["authorization"] == "Bearer key-openai"


async def test_single_object_is_one_step(upstream, gw):
    async with gw.post("/v1/acct/gw", data=_json.dumps(step())) as r:
        assert r.status == 200 and r.headers["cf-aig-step"] == "0"


async def test_only_the_steps_own_headers_go_upstream(upstream, gw):
    steps = [step("openai", "chat/completions",
                  headers={"Authorization": "Bearer key-a", "Host": "evil.example",
                           "cf-aig-cache-ttl": "60"}),
             step("anthropic", "v1/messages", headers={"x-api-key": "key-b"})]
    upstream.script("/v1/chat", Reply(status=500, body=b"{}"))
    await post_steps(gw, steps, headers={"Authorization": "Bearer outer", "X-Outer": "1"})
    first, second = upstream.seen
    assert first.headers["authorization"] == "Bearer key-a"
    assert first.headers["host"] == f"127.0.0.1:{upstream.server.port}"
    assert "x-outer" not in first.headers and "cf-aig-cache-ttl" not in first.headers
    assert second.headers["x-api-key"] == "key-b"
    assert "authorization" not in second.headers  # one provider's key never reaches another


async def test_authorization_field_and_header_precedence(upstream, gw):
    s = step(authorization="Bearer from-field")
    del s["headers"]
    await post_steps(gw, [s])
    assert upstream.seen[-1].headers["authorization"] == "Bearer from-field"
    s = step(authorization="Bearer from-field")
    s["headers"] = {"Authorization": "Bearer from-headers"}
    await post_steps(gw, [s])
    assert upstream.seen[-1].headers["authorization"] == "Bearer from-headers"


async def test_endpoint_forms(upstream, gw):
    await post_steps(gw, [step("openai", "v1/chat/completions")])
    assert upstream.seen[-1].path == "/v1/chat/completions"
    await post_steps(gw, [step("workers-ai", "@cf/meta/llama-3.1-8b-instruct")])
    assert upstream.seen[-1].path == "/client/v4/accounts/acct/ai/run/@cf/meta/llama-3.1-8b-instruct"
    await post_steps(gw, [step("google-ai-studio",
                               "v1beta/models/gemini-2.5-flash:generateContent?alt=sse")])
    assert upstream.seen[-1].path == "/v1beta/models/gemini-2.5-flash:generateContent?alt=sse"


@pytest.mark.parametrize("status", [500, 503, 429, 400, 401, 404])
async def test_non_2xx_falls_back(upstream, gw, status):
    upstream.script("/v1/chat", Reply(status=status, body=b'{"error":"x"}'))
    st, headers, body = await post_steps(gw, [step(), step("anthropic", "v1/messages")])
    assert st == 200 and headers["cf-aig-step"] == "1"
    assert [s.path for s in upstream.seen] == ["/v1/chat/completions", "/v1/messages"]


async def test_network_error_falls_back(upstream, gw):
    st, headers, _ = await post_steps(gw, [step("custom-dead", "chat/completions"), step()])
    assert st == 200 and headers["cf-aig-step"] == "1"


async def test_first_byte_timeout_falls_back(upstream, gw):
    upstream.script("/v1/chat", Reply(delay=2.0))
    s0 = step(config={"requestTimeout": 200})
    st, headers, _ = await post_steps(gw, [s0, step("anthropic", "v1/messages")])
    assert st == 200 and headers["cf-aig-step"] == "1"


async def test_timeout_from_outer_and_step_headers(upstream, gw):
    upstream.script("/v1/chat", Reply(delay=1.0))
    # outer header applies to every step ...
    st, headers, _ = await post_steps(gw, [step(), step("anthropic", "v1/messages")],
                                      headers={"cf-aig-request-timeout": "200"})
    assert headers["cf-aig-step"] == "1"
    # ... and a step's own cf-aig header overrides it
    s0 = step()
    s0["headers"]["cf-aig-request-timeout"] = "5000"
    st, headers, _ = await post_steps(gw, [s0, step("anthropic", "v1/messages")],
                                      headers={"cf-aig-request-timeout": "200"})
    assert headers["cf-aig-step"] == "0"


@pytest.mark.parametrize("first_event", [
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"x"}}\n\n',
    b'data: {"error":{"message":"rate limited","type":"rate_limit"}}\n\n',
    b': ping\n\ndata: {"error":{"message":"late"}}\n\n',
])
async def test_in_band_error_as_first_event_falls_back(upstream, gw, first_event):
    upstream.script("/v1/chat", Reply(chunks=[first_event, OPENAI_SSE[0]], headers=SSE))
    upstream.script("/v1/messages", Reply(chunks=OPENAI_SSE, headers=SSE))
    st, headers, body = await post_steps(gw, [step(), step("anthropic", "v1/messages")])
    assert st == 200 and headers["cf-aig-step"] == "1"
    assert body == b"".join(OPENAI_SSE)


async def test_error_after_content_is_not_a_fallback_trigger(upstream, gw):
    chunks = [OPENAI_SSE[0], b'data: {"error":{"message":"later"}}\n\n']
    upstream.script("/v1/chat", Reply(chunks=chunks, headers=SSE))
    st, headers, body = await post_steps(gw, [step(), step("anthropic", "v1/messages")])
    assert headers["cf-aig-step"] == "0" and body == b"".join(chunks)


async def test_mid_stream_cut_ends_with_error_event_and_no_clean_end(upstream, gw):
    upstream.script("/v1/chat", Reply(chunks=OPENAI_SSE, abort_after=2, headers=SSE))
    got = b""
    async with gw.post("/v1/acct/gw", data=_json.dumps([step(), step("anthropic", "v1/messages")])) as r:
        assert r.headers["cf-aig-step"] == "0"
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in r.content.iter_any():
                got += chunk
    assert got.startswith(OPENAI_SSE[0] + OPENAI_SSE[1])
    assert b'"error"' in got[len(OPENAI_SSE[0] + OPENAI_SSE[1]):]
    assert len(upstream.seen) == 1  # nothing fell back after the commit


async def test_mid_stream_cut_anthropic_format(upstream, gw):
    events = [b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n",
              b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\"}\n\n"]
    upstream.script("/v1/messages", Reply(chunks=events * 2, abort_after=2, headers=SSE))
    got = b""
    async with gw.post("/v1/a/g/anthropic/v1/messages", data=b"{}") as r:
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in r.content.iter_any():
                got += chunk
    assert got.endswith(b"\n\n") and b"event: error\ndata: " in got


async def test_all_steps_fail_returns_the_last_response(upstream, gw):
    upstream.script("/v1/chat", Reply(status=503, body=b'{"e":"openai"}'))
    upstream.script("/v1/messages", Reply(status=529, body=b'{"e":"anthropic"}',
                                          headers={"Content-Type": "application/json",
                                                   "x-last": "yes"}))
    st, headers, body = await post_steps(gw, [step(), step("anthropic", "v1/messages")])
    assert st == 529 and body == b'{"e":"anthropic"}'
    assert headers["cf-aig-step"] == "1" and headers["x-last"] == "yes"


async def test_all_steps_fail_without_response_gives_envelope(upstream, gw):
    upstream.script("/v1/messages", Reply(delay=2.0))
    st, headers, body = await post_steps(gw, [
        step("custom-dead", "chat/completions"),
        step("anthropic", "v1/messages", config={"requestTimeout": 100})])
    assert st == 504 and headers["cf-aig-step"] == "1"
    env = _json.loads(body)
    assert env["error"][0]["code"] == 2910
    assert [(a["step"], a["outcome"]) for a in env["attempts"]] == [
        (0, "connection error"), (1, "timeout")]
    st, headers, body = await post_steps(gw, [step("custom-dead", "chat/completions")])
    assert st == 502 and _json.loads(body)["error"][0]["code"] == 2909


@pytest.mark.parametrize("backoff,expected", [
    ("constant", [0.2, 0.2]), ("linear", [0.2, 0.4]), ("exponential", [0.2, 0.4])])
async def test_retries_with_backoff(upstream, gw, backoff, expected):
    upstream.script("/v1/chat", Reply(status=503), Reply(status=503), Reply(status=200))
    s = step(config={"maxAttempts": 3, "retryDelay": 200, "backoff": backoff})
    st, headers, _ = await post_steps(gw, [s, step("anthropic", "v1/messages")])
    assert st == 200 and headers["cf-aig-step"] == "0"
    times = [s.at for s in upstream.seen]
    assert len(times) == 3
    gaps = [b - a for a, b in zip(times, times[1:])]
    for gap, want in zip(gaps, expected):
        assert gap >= want * 0.95


async def test_retries_then_fallback_and_no_retry_on_4xx(upstream, gw):
    upstream.script("/v1/chat", Reply(status=500))
    s = step(config={"maxAttempts": 3})
    st, headers, _ = await post_steps(gw, [s, step("anthropic", "v1/messages")])
    assert headers["cf-aig-step"] == "1"
    assert [x.path for x in upstream.seen].count("/v1/chat/completions") == 3
    upstream.seen.clear()
    upstream.script("/v1/chat", Reply(status=400))
    await post_steps(gw, [s, step("anthropic", "v1/messages")])
    assert [x.path for x in upstream.seen].count("/v1/chat/completions") == 1


async def test_retry_after_is_honoured(upstream, gw):
    upstream.script("/v1/chat", Reply(status=429, headers={"Retry-After": "0.5"}), Reply())
    st, _, _ = await post_steps(gw, [step(config={"maxAttempts": 2})])
    assert st == 200
    a, b = upstream.seen
    assert b.at - a.at >= 0.45


async def test_passthrough_retries_via_headers(upstream, gw):
    upstream.script("/v1/chat", Reply(status=502), Reply())
    async with gw.post("/v1/a/g/openai/chat/completions", data=b"{}",
                       headers={"cf-aig-max-attempts": "2", "cf-aig-retry-delay": "10"}) as r:
        assert r.status == 200
    assert len(upstream.seen) == 2


async def test_passthrough_timeout_gives_504_envelope(upstream, gw):
    upstream.script("/v1/chat", Reply(delay=2))
    async with gw.post("/v1/a/g/openai/chat/completions", data=b"{}",
                       headers={"cf-aig-request-timeout": "100"}) as r:
        assert r.status == 504
        assert _json.loads(await r.read())["attempts"][0]["outcome"] == "timeout"


async def test_gateway_defaults_apply(upstream, make_gateway):
    gw = await make_gateway({"gateways": {"gw": {"retry_max_attempts": 3, "retry_delay": 10,
                                                 "request_timeout": 150}}})
    upstream.script("/v1/chat", Reply(status=503), Reply(delay=1), Reply())
    async with gw.post("/v1/a/gw/openai/chat/completions", data=b"{}") as r:
        assert r.status == 200
    assert len(upstream.seen) == 3


async def test_client_disconnect_cancels_the_upstream_request(upstream, gw):
    chunks = [b"data: {\"n\":%d}\n\n" % i for i in range(100)]
    upstream.script("/v1/chat", Reply(chunks=chunks, chunk_delay=0.05, headers=SSE))
    async with aiohttp.ClientSession() as s:
        resp = await s.post(gw.url("/v1/a/g/openai/chat/completions"), data=b"{}")
        await resp.content.readany()
        resp.close()  # hang up mid-stream
    for _ in range(50):
        if upstream.disconnects:
            break
        await asyncio.sleep(0.05)
    assert upstream.disconnects == 1
    await asyncio.sleep(0.1)
    assert gw.server.gateway.pools.counts().get("openai", (0, 0))[0] == 0
