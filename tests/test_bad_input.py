"""Bad input: each a clear error in the gateway's envelope, nothing sent upstream."""

from __future__ import annotations

import pytest

from aigw import _json


def good_step(**kw):
    s = {"provider": "openai", "endpoint": "chat/completions", "query": {"model": "m"}}
    s.update(kw)
    return s


async def expect(gw, body, status, code, headers=None, path="/v1/acct/gw"):
    data = body if isinstance(body, bytes) else _json.dumps(body)
    async with gw.post(path, data=data, headers=headers or {}) as r:
        raw = await r.read()
        assert r.status == status, raw
        env = _json.loads(raw)
        assert env["success"] is False and env["name"] == "AiGatewayError"
        assert env["error"][0]["code"] == code and env["internalCode"] == code
        assert env["httpCode"] == status
        assert env["error"][0]["message"]
        return env


@pytest.mark.parametrize("body,code", [
    (b"{not json", 2900),
    (b"", 2900),
    (b'"a string"', 2901),
    (b"42", 2901),
    (b"[]", 2901),
    (_json.dumps([good_step()] * 17), 2901),
    (_json.dumps([{"endpoint": "chat/completions"}]), 2901),
    (_json.dumps([{"provider": "openai"}]), 2901),
    (_json.dumps([{"provider": 3, "endpoint": "x"}]), 2901),
    (_json.dumps([good_step(), "not an object"]), 2901),
    (_json.dumps([good_step(), good_step(provider="nope")]), 2008),
    (_json.dumps([good_step(headers={"X-N": 5})]), 2902),
    (_json.dumps([good_step(headers={"X-N": True})]), 2902),
    (_json.dumps([good_step(headers={"X-A": "a\r\nX-Injected: 1"})]), 2902),
    (_json.dumps([good_step(headers={"X-A": "a\nb"})]), 2902),
    (_json.dumps([good_step(headers={"Bad Name": "v"})]), 2902),
    (_json.dumps([good_step(headers=["a"])]), 2902),
    (_json.dumps([good_step(authorization=7)]), 2902),
    (_json.dumps([good_step(config={"maxAttempts": 9})]), 2901),
    (_json.dumps([good_step(config={"backoff": "random"})]), 2901),
    (_json.dumps([good_step(config={"requestTimeout": "1"})]), 2901),
])
async def test_bad_universal_bodies(upstream, gw, body, code):
    await expect(gw, body, 400, code)
    assert upstream.seen == []


@pytest.mark.parametrize("endpoint", [
    "http://evil.example/x", "https://evil.example", "//evil.example/x", "https:evil",
    "javascript:alert(1)", "user@evil.example/x", "a@evil.example:80/x",
    "../secret", "chat/../../x", "chat/..", "./x/../..", "%2e%2e/x", "%2E%2E%2Fx",
    "chat/%2e%2e/%2e%2e/x", "%252e%252e/x", "%25252e%25252e/x", "..%2fx", "..%5cx",
    "chat\\..\\x", "chat%5c..%5cx", "．．/x", "chat/%EF%BC%8E%EF%BC%8E/x",
    "chat//x", "chat/%2f/x", "chat%00x", "chat%0d%0aX:1", "chat\x00", "%c0%ae%c0%ae/x",
    "x" * 5000,
])
async def test_endpoints_that_could_leave_the_base_are_refused(upstream, gw, endpoint):
    await expect(gw, [good_step(endpoint=endpoint)], 400, 2903)
    assert upstream.seen == []


@pytest.mark.parametrize("path", [
    "/openai/%2e%2e/x", "/openai/..%2f..%2fx", "/openai/%252e%252e/x", "/openai/a%5c..%5cb",
    "/openai//evil.example/x", "/openai/http:%2f%2fevil/x", "/openai/u@evil.example/x",
    "/anthropic/%2E%2E/%2E%2E/etc/passwd", "/workers-ai/%EF%BC%8E%EF%BC%8E/x",
])
async def test_passthrough_paths_that_could_leave_the_base_are_refused(upstream, gw, path):
    await expect(gw, b"{}", 400, 2903, path="/v1/acct/gw" + path)
    assert upstream.seen == []


async def test_workers_ai_and_vertex_style_names_stay_valid(upstream, gw):
    for ep in ("@cf/meta/llama-3.1-8b-instruct", "@hf/thebloke/model-awq",
               "run/@cf/meta/m", "@cf/meta/llama-3.3-70b-instruct-fp8-fast"):
        async with gw.post("/v1/acct/gw", data=_json.dumps([good_step(
                provider="workers-ai", endpoint=ep)])) as r:
            assert r.status == 200, ep
    async with gw.post("/v1/acct/gw", data=_json.dumps([good_step(
            provider="google-ai-studio",
            endpoint="v1/projects/p/locations/us/publishers/anthropic/models/"
                     "claude@20240620:streamRawPredict")])) as r:
        assert r.status == 200


@pytest.mark.parametrize("header,value", [
    ("cf-aig-max-attempts", "9"), ("cf-aig-max-attempts", "x"), ("cf-aig-retry-delay", "-1"),
    ("cf-aig-retry-delay", "6000"), ("cf-aig-backoff", "random"),
    ("cf-aig-request-timeout", "soon"),
])
async def test_bad_cf_aig_headers(upstream, gw, header, value):
    await expect(gw, b"{}", 400, 2902, headers={header: value},
                 path="/v1/acct/gw/openai/chat/completions")
    await expect(gw, [good_step()], 400, 2902, headers={header: value})
    await expect(gw, [good_step(headers={header: value})], 400, 2902)
    assert upstream.seen == []


async def test_bad_ids(upstream, gw):
    await expect(gw, b"{}", 400, 2904, path="/v1/a%2fb/gw/openai/chat")
    await expect(gw, [good_step()], 400, 2904, path="/v1/" + "a" * 65 + "/gw")


async def test_universal_body_over_limit(upstream, make_gateway):
    gw = await make_gateway({"server": {"max_body_bytes": 200}})
    await expect(gw, [good_step(query={"x": "y" * 300})], 413, 2906)
    assert upstream.seen == []


async def test_a_bad_last_step_rejects_the_whole_request(upstream, gw):
    await expect(gw, [good_step(), good_step(), good_step(endpoint="../x")], 400, 2903)
    assert upstream.seen == []


async def test_undecodable_header_bytes_quoted_in_an_error_are_a_clear_400(gw):
    """aiohttp turns a header byte that is not UTF-8 into a lone surrogate; an error message
    quoting that value must still serialise (regression: a 500 from the JSON encoder)."""
    import asyncio
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
    writer.write(b"POST /v1/acct/gw/openai/chat/completions HTTP/1.1\r\nHost: x\r\n"
                 b"cf-aig-byok-alias: \x80\xff\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b'"code":2040' in body and b"named '??'" in body
