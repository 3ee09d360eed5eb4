"""End to end on real sockets: gateway → mock upstream, rows read back through the API."""

from __future__ import annotations

import asyncio

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


async def test_translated_stream_row_has_the_upstreams_usage(make_gateway, upstream, tmp_path):
    # /compat reads a translated stream's usage from the events its translator parses (not
    # from a second scan of the bytes): the row still has Anthropic's counts and model,
    # cache reads and writes included, with the events cut anywhere.
    gw = await _gateway(make_gateway, upstream, tmp_path)
    stream = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"m1",'
              b'"model":"claude-haiku-4-5-20251001","usage":{"input_tokens":10,'
              b'"cache_read_input_tokens":100,"cache_creation_input_tokens":5,"output_tokens":1}}}\n\n'
              b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
              b'"delta":{"type":"text_delta","text":"hi"}}\n\n'
              b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
              b'"end_turn"},"usage":{"output_tokens":7}}\n\n'
              b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    cuts = [0, 40, 41, 250, 300, len(stream)]
    upstream.script("/v1/messages", Reply(chunks=[stream[a:b] for a, b in zip(cuts, cuts[1:])],
                                          headers={"Content-Type": "text/event-stream"}))
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
