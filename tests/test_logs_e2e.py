"""End to end on real sockets: gateway → mock upstream, rows read back through the API."""

from __future__ import annotations

import contextlib
import logging
import gzip
import zlib

import aiohttp
import pytest

from conftest import Reply, base_config

TOKEN = "admin-tok-123456"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOGS = "/client/v4/accounts/acct/ai-gateway/gateways/gw1/logs"


async def _gateway(make_gateway, upstream, tmp_path):
    raw = base_config(upstream, {"logs": {"backend": "sqlite", "path": str(tmp_path / "l.db")},
                                 "admin": {"tokens": [TOKEN]}})
    return await make_gateway(raw=raw)


async def _rows(gw, params=None):
    await gw.server.gateway.log_writer.flush()
    async with gw.request("GET", LOGS + "?direction=asc&per_page=50", headers=AUTH) as r:
        body = await r.json()
        assert r.status == 200, body
        return body["result"]


async def test_json_reply_row_and_headers(make_gateway, upstream, tmp_path):
    gw = await _gateway(make_gateway, upstream, tmp_path)
    upstream.script("/v1/chat", Reply(body=b'{"model":"gpt-4o-mini","usage":{"prompt_tokens":'
                                           b'1000,"completion_tokens":100}}'))
    async with gw.post("/v1/acct/gw1/openai/chat/completions?key=SEKRET",
                       data=b'{"model":"gpt-4o-mini","messages":[]}',
                       headers={"Authorization": "Bearer sk-live-abcdefghijklmnop",
                                "Content-Type": "application/json",
                                "cf-aig-metadata": '{"user":"u1","cf.x":1}',
                                "cf-aig-event-id": "ev-1"}) as r:
        assert r.status == 200
        log_id = r.headers["cf-aig-log-id"]
        assert r.headers["cf-aig-event-id"] == "ev-1"
    (row,) = await _rows(gw)
    assert row["id"] == log_id and row["provider"] == "openai" and row["model"] == "gpt-4o-mini"
    assert row["tokens_in"] == 1000 and row["tokens_out"] == 100
    assert row["cost"] == 1000 * 0.15e-6 + 100 * 0.6e-6
    assert row["metadata"] == '{"user":"u1"}' and row["event_id"] == "ev-1"
    assert "SEKRET" not in row["path"] and "key=[REDACTED]" in row["path"]
    async with gw.request("GET", f"{LOGS}/{log_id}/request", headers=AUTH) as r:
        assert await r.json() == {"model": "gpt-4o-mini", "messages": []}


async def test_bad_metadata_is_400(make_gateway, upstream, tmp_path):
    gw = await _gateway(make_gateway, upstream, tmp_path)
    async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b"{}",
                       headers={"cf-aig-metadata": "{nope"}) as r:
        assert r.status == 400 and "cf-aig-metadata" in (await r.json())["message"]
    for bad in ('{"a":"x\\u0000"}', '{"\\u0000":1}'):  # PostgreSQL's jsonb refuses NUL
        async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b"{}",
                           headers={"cf-aig-metadata": bad}) as r:
            assert r.status == 400 and "NUL" in (await r.json())["message"]


async def test_streamed_usage_is_captured(make_gateway, upstream, tmp_path):
    gw = await _gateway(make_gateway, upstream, tmp_path)
    chunks = [b'event: message_start\ndata: {"type":"message_start","message":{"model":'
              b'"claude-haiku-4-5","usage":{"input_tokens":10,"output_tokens":1}}}\n\n',
              b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":'
              b'{"text":"hi"}}\n\nevent: message_delta\ndata: {"type":"message_del',
              b'ta","usage":{"output_tokens":7}}\n\n']
    upstream.script("/v1/messages", Reply(chunks=chunks,
                                          headers={"Content-Type": "text/event-stream"}))
    async with gw.post("/v1/acct/gw1/anthropic/v1/messages", data=b'{"stream":true}') as r:
        assert await r.read() == b"".join(chunks)
    (row,) = await _rows(gw)
    assert row["model"] == "claude-haiku-4-5"
    assert row["tokens_in"] == 10 and row["tokens_out"] == 7
    assert row["response_content_type"] == "text/event-stream"


@pytest.mark.parametrize("whole", [False, True])
async def test_translated_stream_row_has_the_upstreams_usage(make_gateway, upstream, tmp_path, whole):
    # /compat reads a translated stream's usage from the events its translator parses (not
    # from a second scan of the bytes): the row still has Anthropic's counts and model,
    # cache reads and writes included, with the events cut anywhere, or read whole with the
    # response head (then translated in one pass: StreamTranslator.whole).
    gw = await _gateway(make_gateway, upstream, tmp_path)
    stream = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"m1",'
              b'"model":"claude-haiku-4-5-20251001","usage":{"input_tokens":10,'
              b'"cache_read_input_tokens":100,"cache_creation_input_tokens":5,"output_tokens":1}}}\n\n'
              b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
              b'"content_block":{"type":"text","text":""}}\n\n'
              b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
              b'"delta":{"type":"text_delta","text":"hi"}}\n\n'
              b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
              b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
              b'"end_turn"},"usage":{"output_tokens":7}}\n\n'
              b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    cuts = [0, len(stream)] if whole else [0, 40, 41, 250, 300, len(stream)]
    upstream.script("/v1/messages", Reply(chunks=[stream[a:b] for a, b in zip(cuts, cuts[1:])],
                                          headers={"Content-Type": "text/event-stream"},
                                          chunk_delay=0 if whole else 0.01))
    async with gw.post("/v1/acct/gw1/compat/chat/completions",
                       json={"model": "anthropic/claude-haiku-4-5", "stream": True,
                             "messages": [{"role": "user", "content": "hi"}]},
                       headers={"Authorization": "Bearer sk-ant-abcdefghijklmnop"}) as r:
        assert r.status == 200
        body = await r.read()
    assert b'"content":"hi"' in body and body.endswith(b"data: [DONE]\n\n")
    (row,) = await _rows(gw)
    assert row["provider"] == "anthropic" and row["model"] == "claude-haiku-4-5-20251001"
    assert (row["tokens_in"], row["tokens_out"]) == (115, 7)
    assert row["cost"] > 0
    async with gw.request("GET", f"{LOGS}/{row['id']}", headers=AUTH) as r:
        detail = (await r.json())["result"]
    assert (detail["cache_read"], detail["cache_write"]) == (100, 5)


async def test_fallback_writes_one_row_per_step(make_gateway, upstream, tmp_path):
    gw = await _gateway(make_gateway, upstream, tmp_path)
    upstream.script("/v1/chat", Reply(status=503, body=b'{"error":"busy"}'))
    upstream.script("/openai/v1/chat", Reply(body=b'{"model":"llama-3.1-8b-instant",'
                                                  b'"usage":{"prompt_tokens":5,"completion_tokens":2}}'))
    steps = [{"provider": "openai", "endpoint": "chat/completions",
              "headers": {"Authorization": "Bearer sk-step-abcdefghijklmnop"},
              "query": {"model": "gpt-4o-mini"}},
             {"provider": "groq", "endpoint": "chat/completions",
              "query": {"model": "llama-3.1-8b-instant"}}]
    async with gw.post("/v1/acct/gw1", json=steps) as r:
        assert r.status == 200 and r.headers["cf-aig-step"] == "1"
        log_id = r.headers["cf-aig-log-id"]
    rows = await _rows(gw)
    assert [(x["step"], x["provider"], x["status_code"], x["success"]) for x in rows] == \
        [(0, "openai", 503, False), (1, "groq", 200, True)]
    assert rows[1]["id"] == log_id and rows[1]["tokens_in"] == 5
    assert rows[0]["model"] == "gpt-4o-mini"
    async with gw.request("GET", "/metrics") as r:
        text = await r.text()
    assert 'aigw_fallbacks_total{gateway=""} 1' in text or "aigw_fallbacks_total" in text
    assert 'provider="groq",status="200"} 1' in text
    assert 'aigw_log_rows_dropped_total{reason="queue_full"} 0' in text


async def test_collect_log_header_turns_logging_off(make_gateway, upstream, tmp_path):
    gw = await _gateway(make_gateway, upstream, tmp_path)
    async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b"{}",
                       headers={"cf-aig-collect-log": "false"}) as r:
        assert r.status == 200
    async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b'{"a":1}',
                       headers={"cf-aig-collect-log-payload": "false"}) as r:
        assert r.status == 200
    (row,) = await _rows(gw)
    assert row["request_size"] if "request_size" in row else True
    async with gw.request("GET", f"{LOGS}/{row['id']}/request", headers=AUTH) as r:
        assert r.status == 404


async def _gateway_with(make_gateway, upstream, tmp_path, **extra):
    raw = base_config(upstream, {"logs": {"backend": "sqlite", "path": str(tmp_path / "l.db")},
                                 "admin": {"tokens": [TOKEN]}, **extra})
    return await make_gateway(raw=raw)


async def _detail(gw, log_id):
    async with gw.request("GET", f"{LOGS}/{log_id}", headers=AUTH) as r:
        return (await r.json())["result"]


async def _stored_response(gw, log_id):
    async with gw.request("GET", f"{LOGS}/{log_id}/response", headers=AUTH) as r:
        return r.status, await r.read()


CHAT_REPLY = (b'{"id":"c1","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,'
              b'"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],'
              b'"usage":{"prompt_tokens":1000,"completion_tokens":100,"total_tokens":1100}}')


async def test_json_reply_relayed_in_pieces_has_its_usage(make_gateway, upstream, tmp_path):
    # A JSON reply whose body is not all there when its head arrives (chunked, as providers
    # often send it) is relayed as it comes; its usage is read from it at the end.
    gw = await _gateway(make_gateway, upstream, tmp_path)
    upstream.script("/v1/chat", Reply(chunks=[CHAT_REPLY[:50], CHAT_REPLY[50:200], CHAT_REPLY[200:]],
                                      chunk_delay=0.05))
    async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b'{"model":"gpt-4o-mini"}') as r:
        assert await r.read() == CHAT_REPLY
    (row,) = await _rows(gw)
    assert (row["tokens_in"], row["tokens_out"]) == (1000, 100)
    assert row["model"] == "gpt-4o-mini-2024-07-18" and row["cost"] > 0


async def test_large_json_reply_usage_comes_from_its_tail(make_gateway, upstream, tmp_path):
    # Past the bound a JSON reply is kept whole for, only its tail is kept: the usage that
    # every supported shape puts last is still found there.
    gw = await _gateway(make_gateway, upstream, tmp_path)
    vector = b"[" + b",".join(b"0.0123456789" for _ in range(1536)) + b"]"
    items = b",".join(b'{"object":"embedding","index":%d,"embedding":%s}' % (i, vector) for i in range(40))
    body = (b'{"object":"list","data":[' + items + b'],"model":"text-embedding-3-small",'
            b'"usage":{"prompt_tokens":321,"total_tokens":321}}')
    assert len(body) > 600_000
    step = 16_384
    upstream.script("/v1/embeddings", Reply(chunks=[body[i:i + step] for i in range(0, len(body), step)]))
    async with gw.post("/v1/acct/gw1/openai/embeddings", data=b'{"model":"text-embedding-3-small"}') as r:
        assert await r.read() == body
    (row,) = await _rows(gw)
    assert row["tokens_in"] == 321 and row["model"] == "text-embedding-3-small"


async def test_gzip_reply_is_relayed_as_is_and_logged_decoded(make_gateway, upstream, tmp_path):
    gw = await _gateway(make_gateway, upstream, tmp_path)
    upstream.script("/v1/chat", Reply(body=gzip.compress(CHAT_REPLY),
                                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}))
    async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b'{"model":"gpt-4o-mini"}',
                       headers={"Accept-Encoding": "gzip"}, auto_decompress=False) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await r.read()) == CHAT_REPLY
    (row,) = await _rows(gw)
    assert (row["tokens_in"], row["tokens_out"]) == (1000, 100) and row["cost"] > 0
    assert await _stored_response(gw, row["id"]) == (200, CHAT_REPLY)


async def test_compressed_stream_usage_is_read_from_the_decoded_bytes(make_gateway, upstream, tmp_path):
    gw = await _gateway(make_gateway, upstream, tmp_path)
    sse = (b'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,'
           b'"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
           b'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[],'
           b'"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}\n\ndata: [DONE]\n\n')
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    wire = c.compress(sse) + c.flush()
    upstream.script("/v1/chat", Reply(chunks=[wire[:20], wire[20:]], chunk_delay=0.02,
                                      headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}))
    async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b'{"stream":true}',
                       auto_decompress=False) as r:
        assert await r.read() == wire
    (row,) = await _rows(gw)
    assert (row["tokens_in"], row["tokens_out"]) == (7, 3)
    assert await _stored_response(gw, row["id"]) == (200, sse)


async def test_body_in_an_undecodable_encoding_is_not_stored(make_gateway, upstream, tmp_path):
    gw = await _gateway(make_gateway, upstream, tmp_path)
    upstream.script("/v1/chat", Reply(body=b"\x1b\x00\xf8opaque-brotli-bytes",
                                      headers={"Content-Type": "application/json", "Content-Encoding": "br"}))
    async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b'{"model":"gpt-4o-mini"}',
                       auto_decompress=False) as r:
        assert r.status == 200 and await r.read() == b"\x1b\x00\xf8opaque-brotli-bytes"
    (row,) = await _rows(gw)
    assert row["tokens_in"] is None and row["success"] is True
    detail = await _detail(gw, row["id"])
    assert detail["response_size"] == 22 and detail["response_head_complete"] is False
    status, _ = await _stored_response(gw, row["id"])
    assert status == 404


async def test_custom_auth_header_and_gateway_token_are_not_stored(make_gateway, upstream, tmp_path):
    # A custom provider's own credential header (auth_header) is a secret like Authorization;
    # so is the gateway token, though it never goes upstream.
    gw = await _gateway_with(
        make_gateway, upstream, tmp_path,
        providers={"custom-tok": {"base_url": upstream.url("/tok"), "auth_header": "x-custom-token"}},
        gateways={"gw1": {"authentication": True, "tokens": ["cf-gw-token-SEKRET-987654"]}})
    upstream.script("/tok", Reply(status=401, body=b'{"error":"invalid token abcdefSECRETTOKEN42"}'))
    async with gw.post("/v1/acct/gw1/custom-tok/generate",
                       data=b'{"note":"my gateway token is cf-gw-token-SEKRET-987654"}',
                       headers={"x-custom-token": "abcdefSECRETTOKEN42",
                                "cf-aig-authorization": "Bearer cf-gw-token-SEKRET-987654"}) as r:
        assert r.status == 401
        log_id = r.headers["cf-aig-log-id"]
    (row,) = await _rows(gw)
    assert row["id"] == log_id
    _, response = await _stored_response(gw, log_id)
    async with gw.request("GET", f"{LOGS}/{log_id}/request", headers=AUTH) as r:
        request = await r.read()
    assert b"abcdefSECRETTOKEN42" not in response and b"[REDACTED]" in response
    assert b"SEKRET-987654" not in request and b"[REDACTED]" in request


async def test_error_replies_name_their_log_row(make_gateway, upstream, tmp_path):
    gw = await _gateway(make_gateway, upstream, tmp_path)
    upstream.script("/v1/chat", Reply(status=429, body=b'{"error":"slow down"}'))
    async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b"{}",
                       headers={"cf-aig-event-id": "ev-err"}) as r:
        assert r.status == 429
        log_id = r.headers["cf-aig-log-id"]
        assert r.headers["cf-aig-event-id"] == "ev-err"
    async with gw.post("/v1/acct/gw1/custom-dead/chat/completions", data=b"{}") as r:
        assert r.status == 502 and (await r.json())["internalCode"] == 2909
        dead_id = r.headers["cf-aig-log-id"]
    async with gw.post("/v1/acct/gw1/compat/chat/completions",
                       json={"model": "openai/gpt-4o-mini", "messages": []}) as r:
        assert r.status == 429 and "error" in await r.json()
        compat_id = r.headers["cf-aig-log-id"]
    rows = {x["id"]: x for x in await _rows(gw)}
    assert rows[log_id]["status_code"] == 429 and rows[log_id]["event_id"] == "ev-err"
    assert rows[dead_id]["provider"] == "custom-dead" and rows[dead_id]["success"] is False
    assert rows[compat_id]["status_code"] == 429


async def test_a_stream_cut_midway_is_not_logged_as_a_success(make_gateway, upstream, tmp_path):
    gw = await _gateway(make_gateway, upstream, tmp_path)
    event = b'data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n'
    upstream.script("/v1/chat", Reply(chunks=[event] * 5, chunk_delay=0.02, abort_after=2,
                                      headers={"Content-Type": "text/event-stream"}))
    async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b'{"stream":true}') as r:
        with contextlib.suppress(aiohttp.ClientPayloadError):
            await r.read()
    # /compat: an Anthropic stream that ends without a stop reason
    upstream.script("/v1/messages", Reply(chunks=[
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-haiku-4-5",'
        b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"hi"}}\n\n'], headers={"Content-Type": "text/event-stream"}))
    async with gw.post("/v1/acct/gw1/compat/chat/completions",
                       json={"model": "anthropic/claude-haiku-4-5", "stream": True, "messages": []}) as r:
        with contextlib.suppress(aiohttp.ClientPayloadError):
            await r.read()
    rows = await _rows(gw)
    assert [(x["provider"], x["status_code"], x["success"]) for x in rows] == \
        [("openai", 200, False), ("anthropic", 200, False)]


async def test_a_cache_hit_of_a_compressed_reply_is_logged_decoded(make_gateway, upstream, tmp_path):
    gw = await _gateway(make_gateway, upstream, tmp_path)
    upstream.script("/v1/chat", Reply(body=gzip.compress(CHAT_REPLY),
                                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}))
    for _ in range(2):
        async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b'{"model":"gpt-4o-mini"}',
                           headers={"cf-aig-cache-ttl": "60"}, auto_decompress=False) as r:
            assert gzip.decompress(await r.read()) == CHAT_REPLY
    rows = await _rows(gw)
    assert [x["cached"] for x in rows] == [False, True]
    assert rows[1]["response_content_type"] == "application/json"
    assert await _stored_response(gw, rows[1]["id"]) == (200, CHAT_REPLY)


async def test_translated_replies_that_are_not_the_providers_are_failed_rows(make_gateway, upstream,
                                                                            tmp_path, caplog):
    # A 2xx that is not Anthropic's reply (502 to the client), and a stream whose event has a
    # member of the wrong type (an error event, then the cut): rows with success false, and
    # no traceback in the process log.
    gw = await _gateway(make_gateway, upstream, tmp_path)
    upstream.script("/v1/messages", Reply(body=b"<html>oops</html>", headers={"Content-Type": "text/html"}))
    async with gw.post("/v1/acct/gw1/compat/chat/completions",
                       json={"model": "anthropic/claude-haiku-4-5", "messages": []}) as r:
        assert r.status == 502 and "error" in await r.json()
    upstream.script("/v1/messages", Reply(chunks=[
        b'event: message_start\ndata: {"type":"message_start","message":"not an object"}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"hi"}}\n\n'], chunk_delay=0.02,
        headers={"Content-Type": "text/event-stream"}))
    with caplog.at_level(logging.WARNING):
        async with gw.post("/v1/acct/gw1/compat/chat/completions",
                           json={"model": "anthropic/claude-haiku-4-5", "stream": True, "messages": []}) as r:
            assert r.status == 200
            body = b""
            with contextlib.suppress(aiohttp.ClientPayloadError):
                async for piece in r.content.iter_any():
                    body += piece
    assert b"bad_upstream_event" in body and b"[DONE]" not in body
    assert not [rec for rec in caplog.records if rec.exc_info]
    rows = await _rows(gw)
    assert [(x["status_code"], x["success"]) for x in rows] == [(200, False), (200, False)]


async def test_time_to_first_byte_is_observed_in_fractions_of_a_second(make_gateway, upstream, tmp_path):
    gw = await _gateway(make_gateway, upstream, tmp_path)
    upstream.script("/v1/chat", Reply(body=CHAT_REPLY, delay=0.0125))
    async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b"{}") as r:
        assert r.status == 200
    async with gw.request("GET", "/metrics") as r:
        text = await r.text()
    total = next(float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith('aigw_upstream_ttfb_seconds_sum{provider="openai"}'))
    assert 0.0125 <= total < 1.0 and total * 1000 != int(total * 1000)
    assert 'aigw_upstream_ttfb_seconds_bucket{provider="openai",le="0.01"} 0' in text


async def test_translated_json_row_has_the_upstreams_usage(make_gateway, upstream, tmp_path):
    # /compat JSON: the reply is parsed once, by the translator, and the row's usage read
    # from that (Attempt.usage_from).
    gw = await _gateway(make_gateway, upstream, tmp_path)
    upstream.script("/v1/messages", Reply(body=(
        b'{"id":"m1","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001",'
        b'"content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":10,'
        b'"cache_read_input_tokens":100,"cache_creation_input_tokens":5,"output_tokens":7}}')))
    async with gw.post("/v1/acct/gw1/compat/chat/completions",
                       json={"model": "anthropic/claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]},
                       headers={"Authorization": "Bearer sk-ant-abcdefghijklmnop"}) as r:
        assert r.status == 200 and (await r.json())["usage"]["prompt_tokens"] == 115
    (row,) = await _rows(gw)
    assert row["model"] == "claude-haiku-4-5-20251001" and (row["tokens_in"], row["tokens_out"]) == (115, 7)
    assert row["cost"] > 0 and row["success"] is True
