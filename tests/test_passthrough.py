"""Provider pass-through routes: byte-exact relay, header hygiene, URL mapping."""

from __future__ import annotations

import gzip

import aiohttp

from aigw import _json
from tests.conftest import Reply, odd_chunks

SSE_EVENTS = [
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n',
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo"}}]}\n\n',
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n',
    b"data: [DONE]\n\n",
]


async def test_json_reply_is_relayed_byte_exact(upstream, gw):
    body = b'{"id":"x","weird spacing" :  [1,2 ,3],"unicode":"\\u00e9\xc3\xa9"}  \n'
    upstream.script("/v1/chat/completions", Reply(body=body, headers={
        "Content-Type": "application/json", "x-request-id": "req-1", "openai-processing-ms": "7"}))
    async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b'{"model":"m"}',
                       headers={"Content-Type": "application/json"}) as r:
        assert r.status == 200
        assert await r.read() == body
        assert r.headers["x-request-id"] == "req-1"
        assert r.headers["openai-processing-ms"] == "7"
        assert "cf-aig-step" not in r.headers
    seen = upstream.seen[-1]
    assert seen.method == "POST" and seen.path == "/v1/chat/completions"
    assert seen.body == b'{"model":"m"}'


async def test_large_streamed_body_of_unknown_length_is_relayed_exact(upstream, gw):
    blob = bytes(range(256)) * 20000  # 5 MB, not SSE, chunked upstream
    upstream.script("/v1/files", Reply(chunks=odd_chunks(blob, (4096, 1, 65536, 333)),
                                       headers={"Content-Type": "application/octet-stream"}))
    async with gw.request("GET", "/v1/a/g/openai/files/abc/content") as r:
        assert r.status == 200
        assert await r.read() == blob


async def test_sse_relay_is_byte_exact_with_odd_chunk_boundaries(upstream, gw):
    data = b"".join(SSE_EVENTS)
    upstream.script("/v1/chat/completions", Reply(
        chunks=odd_chunks(data), headers={"Content-Type": "text/event-stream; charset=utf-8"}))
    async with gw.post("/v1/a/g/openai/chat/completions", data=b'{"stream":true}') as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert r.headers["X-Accel-Buffering"] == "no"
        assert r.headers["Cache-Control"] == "no-cache"
        assert await r.read() == data


async def test_sse_chunks_reach_the_client_before_the_stream_ends(upstream, gw):
    upstream.script("/v1/chat/completions", Reply(
        chunks=SSE_EVENTS, chunk_delay=0.3, headers={"Content-Type": "text/event-stream"}))
    async with gw.post("/v1/a/g/openai/chat/completions", data=b"{}") as r:
        first = await r.content.readany()
        # the first event arrives while the upstream is still sending the rest
        assert first.startswith(b"data: ")
        assert len(upstream.seen) == 1
        rest = await r.read()
    assert first + rest == b"".join(SSE_EVENTS)


async def test_compressed_body_stays_compressed(upstream, gw):
    raw = b'{"answer":"' + b"x" * 5000 + b'"}'
    packed = gzip.compress(raw)
    upstream.script("/v1/models", Reply(body=packed, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip"}))
    async with gw.request("GET", "/v1/a/g/openai/models",
                          headers={"Accept-Encoding": "gzip"}) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert await r.read() == packed
    assert upstream.seen[-1].headers["accept-encoding"] == "gzip"


async def test_header_hygiene_upstream(upstream, gw):
    async with gw.post("/v1/a/g/openai/chat/completions?x=1&y=%20", data=b"{}", headers={
        "Authorization": "Bearer sk-client",
        "X-Custom": "keep me",
        "cf-aig-cache-ttl": "60",
        "cf-aig-authorization": "Bearer gateway-token",
        "Connection": "keep-alive, X-Drop-Me",
        "X-Drop-Me": "hop",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Host": "evil.example",
    }, skip_auto_headers=("User-Agent",)) as r:
        assert r.status == 200
    seen = upstream.seen[-1]
    assert seen.path == "/v1/chat/completions?x=1&y=%20"
    h = seen.headers
    assert h["authorization"] == "Bearer sk-client"
    assert h["x-custom"] == "keep me"
    assert h["host"] == f"127.0.0.1:{upstream.server.port}"
    for gone in ("cf-aig-cache-ttl", "cf-aig-authorization", "x-drop-me", "keep-alive", "te"):
        assert gone not in h
    # the gateway adds none of its own client headers
    assert "user-agent" not in h


async def test_response_hop_by_hop_headers_are_not_copied(upstream, gw):
    upstream.script("/v1/x", Reply(body=b"{}", headers={
        "Content-Type": "application/json", "Keep-Alive": "timeout=1", "X-Up": "1"}))
    async with gw.request("GET", "/v1/a/g/openai/x") as r:
        assert r.headers["X-Up"] == "1"
        assert "Keep-Alive" not in r.headers


async def test_methods_and_query_are_preserved(upstream, gw):
    for method in ("GET", "DELETE", "PUT", "PATCH"):
        async with gw.request(method, "/v1/a/g/openai/files/f1?purpose=x") as r:
            assert r.status == 200
        assert upstream.seen[-1].method == method
        assert upstream.seen[-1].path == "/v1/files/f1?purpose=x"


async def test_upstream_error_status_is_passed_through(upstream, gw):
    err = b'{"error":{"message":"bad key","type":"invalid_request_error"}}'
    upstream.script("/v1/chat", Reply(status=401, body=err))
    async with gw.post("/v1/a/g/openai/chat/completions", data=b"{}") as r:
        assert r.status == 401
        assert await r.read() == err


async def test_duplicated_v1_and_workers_ai_run_are_tolerated(upstream, gw):
    async with gw.post("/v1/a/g/openai/v1/chat/completions", data=b"{}") as r:
        assert r.status == 200
    assert upstream.seen[-1].path == "/v1/chat/completions"
    async with gw.post("/v1/a/g/groq/v1/chat/completions", data=b"{}") as r:
        assert r.status == 200
    assert upstream.seen[-1].path == "/openai/v1/chat/completions"
    for path in ("/workers-ai/@cf/meta/llama-3.1-8b-instruct",
                 "/workers-ai/run/@cf/meta/llama-3.1-8b-instruct"):
        async with gw.post("/v1/acct42/g" + path, data=b"{}") as r:
            assert r.status == 200
        assert upstream.seen[-1].path == (
            "/client/v4/accounts/acct42/ai/run/@cf/meta/llama-3.1-8b-instruct")
    async with gw.post("/v1/acct42/g/workers-ai/v1/chat/completions", data=b"{}") as r:
        assert r.status == 200
    assert upstream.seen[-1].path == "/client/v4/accounts/acct42/ai/v1/chat/completions"


async def test_anthropic_gets_a_default_version_header_unless_sent(upstream, gw):
    async with gw.post("/v1/a/g/anthropic/v1/messages", data=b"{}") as r:
        assert r.status == 200
    assert upstream.seen[-1].headers["anthropic-version"] == "2023-06-01"
    async with gw.post("/v1/a/g/anthropic/v1/messages", data=b"{}",
                       headers={"anthropic-version": "2099-01-01"}) as r:
        assert r.status == 200
    assert upstream.seen[-1].headers["anthropic-version"] == "2099-01-01"


async def test_unknown_provider_and_gateway(upstream, make_gateway):
    gw = await make_gateway({"gateways": {"prod": {}}})
    async with gw.post("/v1/a/prod/nope/chat", data=b"{}") as r:
        assert r.status == 400
        body = _json.loads(await r.read())
        assert body["error"][0]["code"] == 2008 and body["internalCode"] == 2008
        assert body["name"] == "AiGatewayError"
    async with gw.post("/v1/a/other/openai/chat", data=b"{}") as r:
        assert r.status == 400
        assert _json.loads(await r.read())["error"][0]["code"] == 2001
    async with gw.post("/v1/a/prod/openai/chat/completions", data=b"{}") as r:
        assert r.status == 200
    assert len(upstream.seen) == 1


async def test_body_over_the_limit_gets_413_and_nothing_goes_upstream(upstream, make_gateway):
    gw = await make_gateway({"server": {"max_body_bytes": 1000}})
    async with gw.post("/v1/a/g/openai/chat/completions", data=b"x" * 1001) as r:
        assert r.status == 413
        assert _json.loads(await r.read())["httpCode"] == 413

    async def chunked():
        for _ in range(20):
            yield b"y" * 100

    async with gw.post("/v1/a/g/openai/chat/completions", data=chunked()) as r:
        assert r.status == 413
    async with gw.post("/v1/a/g/openai/chat/completions", data=b"x" * 1000) as r:
        assert r.status == 200
    assert len(upstream.seen) == 1


async def test_custom_provider_from_config(upstream, make_gateway):
    gw = await make_gateway({"providers": {"custom-mine": {"base_url": upstream.url("/base")}}})
    async with gw.post("/v1/a/g/custom-mine/v1/chat/completions", data=b"{}") as r:
        assert r.status == 200
    assert upstream.seen[-1].path == "/base/v1/chat/completions"


async def test_not_found_and_health(gw):
    async with gw.request("GET", "/nope") as r:
        assert r.status == 404
        assert _json.loads(await r.read())["success"] is False
    async with gw.request("GET", "/healthz") as r:
        assert r.status == 200
    async with gw.request("GET", "/v1/a/g") as r:
        assert r.status == 405


async def test_redirects_are_not_followed(upstream, gw):
    upstream.script("/v1/redir", Reply(status=302, body=b"", headers={
        "Location": "http://127.0.0.1:1/steal"}))
    async with gw.request("GET", "/v1/a/g/openai/redir", allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["Location"] == "http://127.0.0.1:1/steal"
    assert len(upstream.seen) == 1


async def test_keepalive_reuses_upstream_connections(upstream, gw):
    for _ in range(5):
        async with gw.post("/v1/a/g/openai/chat/completions", data=b"{}") as r:
            await r.read()
    pools = gw.server.gateway.pools
    assert pools.counts()["openai"] == (0, 1), repr(pools)
    assert "idle 1" in repr(pools)


async def test_client_session_reuse_does_not_leak_cookies(upstream, gw):
    upstream.script("/v1/set", Reply(body=b"{}", headers={
        "Content-Type": "application/json", "Set-Cookie": "session=tenant-a"}))
    async with gw.request("GET", "/v1/a/g/openai/set") as r:
        assert r.headers["Set-Cookie"] == "session=tenant-a"
    async with aiohttp.ClientSession() as other:
        async with other.get(gw.url("/v1/a/g/openai/next")) as r:
            await r.read()
    assert "cookie" not in upstream.seen[-1].headers
