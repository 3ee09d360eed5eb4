"""Hostile or broken input to the logging and compat paths: one bad value, one deep or huge
body, must cost a bounded amount and lose nothing else (third audit, 2026-11-26)."""

from __future__ import annotations

import asyncio
import gzip
import logging
import zlib

import pytest

from _logfixtures import make_row
from aigw.compat import relay as relay_mod
from aigw.compat import sse as sse_mod
from aigw.compat.sse import EventTooLarge, SSESplitter
from aigw.logstore import capture
from aigw.logstore.row import clean_text
from aigw.logstore.writer import LogWriter
from aigw.usage import usage_from_tail
from conftest import Reply, base_config

TOKEN = "admin-tok-123456"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOGS = "/client/v4/accounts/acct/ai-gateway/gateways/gw1/logs"
DEEP = 300  # orjson reads 1024 levels and writes 254


async def _logged_gateway(make_gateway, upstream, tmp_path, **extra):
    raw = base_config(upstream, {"logs": {"backend": "sqlite", "path": str(tmp_path / "l.db")},
                                 "admin": {"tokens": [TOKEN]}, **extra})
    return await make_gateway(raw=raw)


async def _rows(gw):
    await gw.server.gateway.log_writer.flush()
    async with gw.request("GET", LOGS + "?direction=asc&per_page=50", headers=AUTH) as r:
        return (await r.json())["result"]


async def _raw(gw, request: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", gw.server.port)
    w.write(request)
    data = await asyncio.wait_for(r.read(), 10)
    w.close()
    return data


def _deep(n: int) -> bytes:
    """A JSON object nested `n` levels deep, as text (orjson would not write it)."""
    return b'{"a":' * n + b'"x"' + b"}" * n


def test_text_columns_take_any_header_byte_and_no_nul() -> None:
    assert clean_text("python-httpx/0.27") == "python-httpx/0.27"
    assert clean_text("evil\udcff") == "evil?" and clean_text("gpt\x00x") == "gptx"
    assert clean_text("modèle") == "modèle" and clean_text(None) is None


async def test_one_bad_byte_neither_stops_the_writer_nor_loses_the_batch(make_gateway, upstream,
                                                                       tmp_path, caplog):
    # A gateway token and a User-Agent with a byte that is not UTF-8 (aiohttp hands them on
    # as lone surrogates): before, redaction raised and the writer task died; a lone surrogate
    # in a text column failed the whole batch's insert.
    gw = await _logged_gateway(make_gateway, upstream, tmp_path)
    for i in range(3):
        reply = await _raw(gw, b"POST /v1/acct/gw1/openai/chat/completions HTTP/1.1\r\nHost: x\r\n"
                               b"cf-aig-authorization: Bearer tok\xff" + str(i).encode() + b"\r\n"
                               b"User-Agent: evil\xfe\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
        assert reply.startswith(b"HTTP/1.1 200")
    async with gw.post("/v1/acct/gw1/openai/chat/completions",
                       data=b'{"model":"gpt\\u0000x"}') as r:
        assert r.status == 200
    rows = await _rows(gw)
    assert len(rows) == 4 and gw.server.gateway.log_writer.failed == 0
    assert rows[0]["user_agent"] == "evil?" and rows[3]["model"] == "gptx"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_writer_error_is_counted_and_the_writer_goes_on(monkeypatch, caplog):
    class Store:
        rows: list = []

        async def start(self): pass

        async def close(self): pass

        async def insert_many(self, rows, prepare=None):
            prepare(rows)
            self.rows.extend(rows)
            return len(rows)

    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("a bug in a redaction pass")

    monkeypatch.setattr("aigw.logstore.writer.redact_rows", flaky)
    store = Store()
    w = LogWriter(store, batch_size=2)
    await w.start()
    for i in range(4):
        w.submit(make_row(i))
    await w.flush()
    w.submit(make_row(9))
    await w.close()
    assert w.failed == 2 and w.written == 3 and len(store.rows) == 3
    assert any("RuntimeError" in r.getMessage() for r in caplog.records)


async def test_requests_nested_deeper_than_json_can_be_written_are_400(make_gateway, upstream, tmp_path):
    gw = await _logged_gateway(make_gateway, upstream, tmp_path)
    for model in ("anthropic/claude-x", "google-ai-studio/gemini-2.5-flash",
                  "workers-ai/@cf/meta/llama-3.1-8b-instruct"):
        body = (b'{"model":"' + model.encode() + b'","messages":[{"role":"user","content":"hi"}],'
                b'"tools":[{"type":"function","function":{"name":"f","parameters":' + _deep(DEEP) + b"}}]}")
        async with gw.post("/v1/acct/gw1/compat/chat/completions", data=body) as r:
            assert r.status == 400, model
            assert "nested too deeply" in (await r.json())["error"]["message"]
    async with gw.post("/v1/acct/gw1/compat/chat/completions",
                       data=b'{"model":"openai\\/gpt-4o","deep":' + _deep(DEEP) + b"}") as r:
        assert r.status == 400
    steps = b'[{"provider":"openai","endpoint":"chat/completions","query":' + _deep(DEEP) + b"}]"
    async with gw.post("/v1/acct/gw1", data=steps) as r:
        assert r.status == 400 and "nested too deeply" in (await r.json())["message"]
    assert not upstream.seen


async def test_a_reply_nested_deeper_than_json_can_be_written_is_a_502(make_gateway, upstream, tmp_path):
    gw = await _logged_gateway(make_gateway, upstream, tmp_path)
    reply = (b'{"id":"m","type":"message","role":"assistant","model":"claude","stop_reason":"tool_use",'
             b'"usage":{"input_tokens":1,"output_tokens":1},"content":[{"type":"tool_use","id":"t",'
             b'"name":"f","input":' + _deep(DEEP) + b"}]}")
    upstream.script("/v1/messages", Reply(body=reply))
    async with gw.post("/v1/acct/gw1/compat/chat/completions",
                       json={"model": "anthropic/claude-x", "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status == 502 and "error" in await r.json()
    assert [(x["status_code"], x["success"]) for x in await _rows(gw)] == [(200, False)]


def test_usage_in_an_adversarial_tail_is_bounded_and_never_raises() -> None:
    deep = b'"usage":' + b'{"a":' * 5000 + b"1" + b"}" * 5000
    assert usage_from_tail(deep) is None
    many = b'"usage":{},' * 6000
    assert usage_from_tail(many) is None


def test_a_compression_bomb_is_decoded_in_bounded_pieces() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = bomb.compress(b" " * (64 << 20)) + bomb.flush()
    assert len(data) < 200_000
    dec = capture.decoder(b"gzip")
    assert dec is not None
    sizes = [len(p) for p in dec.pieces(data)]
    assert max(sizes) <= capture.PIECE and sum(sizes) == capture.DECODE_MAX
    assert list(dec.pieces(b"more")) == []


async def test_a_compressed_bomb_reply_is_relayed_and_logged_with_a_bounded_head(make_gateway, upstream,
                                                                                  tmp_path):
    gw = await _logged_gateway(make_gateway, upstream, tmp_path)
    body = gzip.compress(b'{"usage":' + b" " * (40 << 20) + b"}", 9)
    upstream.script("/v1/chat", Reply(body=body, headers={"Content-Type": "application/json",
                                                         "Content-Encoding": "gzip"}))
    async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b"{}", auto_decompress=False) as r:
        assert r.status == 200 and await r.read() == body
    (row,) = await _rows(gw)
    assert row["tokens_in"] is None
    async with gw.request("GET", f"{LOGS}/{row['id']}", headers=AUTH) as r:
        detail = (await r.json())["result"]
    assert detail["response_size"] == len(body) and detail["response_head_complete"] is False


async def test_a_translated_reply_too_large_to_translate_is_a_502(make_gateway, upstream, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr(relay_mod, "MAX_REPLY", 64 << 10)
    gw = await _logged_gateway(make_gateway, upstream, tmp_path)
    big = b'{"id":"m","type":"message","content":[{"type":"text","text":"' + b"x" * (200 << 10) + b'"}]}'
    upstream.script("/v1/messages", Reply(chunks=[big[i:i + 16384] for i in range(0, len(big), 16384)]))
    async with gw.post("/v1/acct/gw1/compat/chat/completions",
                       json={"model": "anthropic/claude-x", "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status == 502 and (await r.json())["error"]["code"] == "reply_too_large"
    assert [x["success"] for x in await _rows(gw)] == [False]


def test_an_sse_event_that_never_ends_is_given_up(monkeypatch) -> None:
    monkeypatch.setattr(sse_mod, "MAX_EVENT", 1000)
    for feed in ("feed", "take_complete"):
        s = SSESplitter()
        getattr(s, feed)(b"data: " + b"x" * 500)
        with pytest.raises(EventTooLarge):
            getattr(s, feed)(b"x" * 600)
    s = SSESplitter()
    with pytest.raises(EventTooLarge):  # many data lines, no blank line (CR line ends)
        for _ in range(20):
            s.feed(b"data: " + b"y" * 100 + b"\r")


async def test_a_non_utf8_admin_token_is_401(make_gateway, upstream, tmp_path):
    gw = await _logged_gateway(make_gateway, upstream, tmp_path)
    reply = await _raw(gw, b"GET " + LOGS.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                           b"Authorization: Bearer admin\xff\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 401")
