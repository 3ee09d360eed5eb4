"""The access log: one line per request with the documented fields, written by a thread,
never blocking the caller, never carrying secrets."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time

import aiohttp

from aigw import _json
from aigw import config as config_mod
from aigw.accesslog import AccessLog, JsonFormatter, split_route
from aigw.server import Server
from tests.conftest import Reply, base_config

FIELDS = {"ts", "method", "route", "path", "gateway", "provider", "status", "step",
          "duration_ms", "ttfb_ms", "bytes", "cache", "pid"}
SSE = {"Content-Type": "text/event-stream"}


def _entry(path: str = "/v1/a/prod/openai/chat/completions?key=SECRET", step: str | None = None):
    return (time.time(), "POST", path, 200, step, "MISS", 0.25, 0.01, 1234)


def test_json_lines_have_every_field_and_no_query():
    buf = io.BytesIO()
    log = AccessLog("json", buf)
    log.add(_entry())
    log.close()
    line = _json.loads(buf.getvalue())
    assert set(line) == FIELDS
    assert line["path"] == "/v1/a/prod/openai/chat/completions" and b"SECRET" not in buf.getvalue()
    assert (line["route"], line["gateway"], line["provider"]) == ("provider", "prod", "openai")
    assert line["duration_ms"] == 250.0 and line["ttfb_ms"] == 10.0 and line["cache"] == "MISS"
    assert log.written == 1 and log.dropped == 0


def test_text_format():
    buf = io.BytesIO()
    log = AccessLog("text", buf)
    log.add(_entry("/v1/a/prod", step="1"))
    log.close()
    text = buf.getvalue().decode()
    assert " POST /v1/a/prod 200 route=universal gateway=prod " in text and "step=1" in text


def test_routes():
    assert split_route("/v1/a/g") == ("universal", "g", None)
    assert split_route("/v1/a/g/") == ("universal", "g", None)
    assert split_route("/v1/a/g/anthropic/v1/messages") == ("provider", "g", "anthropic")
    assert split_route("/readyz") == ("readyz", None, None)
    assert split_route("/nope") == ("other", None, None)


def test_a_stuck_output_never_blocks_the_caller_and_drops_are_counted():
    gate = threading.Event()

    class Stuck(io.BytesIO):
        def write(self, data):  # type: ignore[override]
            gate.wait(10)
            return super().write(data)

    log = AccessLog("json", Stuck(), maxlen=5)
    log.start()
    log.add(_entry())
    time.sleep(0.2)  # the writer thread is now stuck in write()
    t0 = time.perf_counter()
    for _ in range(50):
        log.add(_entry())
    assert time.perf_counter() - t0 < 0.05
    assert log.dropped == 45 and "dropped 45" in repr(log)
    gate.set()
    log.close()
    assert log.written == 6


def test_process_messages_are_json():
    rec = logging.LogRecord("aigw.server", logging.INFO, __file__, 1, "serving on %d", (8787,),
                            None)
    line = _json.loads(JsonFormatter().format(rec))
    assert line["msg"] == "serving on 8787" and line["level"] == "info"
    assert line["logger"] == "aigw.server" and line["ts"].endswith("Z")


async def test_served_requests_are_logged_with_step_ttfb_and_bytes(upstream):
    chunks = [b'data: {"n":%d}\n\n' % i for i in range(5)] + [b"data: [DONE]\n\n"]
    upstream.script("/v1/chat", Reply(chunks=chunks, chunk_delay=0.05, headers=SSE))
    cfg = config_mod.from_dict(base_config(upstream))
    buf = io.BytesIO()
    access = AccessLog("json", buf)
    access.start()
    srv = Server(cfg, access)
    await srv.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{srv.port}"
    steps = [{"provider": "custom-dead", "endpoint": "chat/completions", "query": {}},
             {"provider": "openai", "endpoint": "chat/completions", "query": {"stream": True},
              "headers": {"Authorization": "Bearer sk-SECRET-123"}}]
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{base}/v1/acct/prod", json=steps) as r:
                assert r.status == 200
                body = await r.read()
            async with s.post(f"{base}/v1/acct/prod/openai/chat/completions?key=SECRET2",
                              data=b"{}", headers={"Authorization": "Bearer sk-SECRET-9"}) as r:
                await r.read()
            async with s.get(f"{base}/healthz") as r:
                await r.read()
    finally:
        await srv.stop()
        access.close()
    assert b"SECRET" not in buf.getvalue()
    lines = [_json.loads(line) for line in buf.getvalue().splitlines()]
    assert [(x["route"], x["status"]) for x in lines] == [
        ("universal", 200), ("provider", 200), ("healthz", 200)]
    uni = lines[0]
    assert uni["step"] == 1 and uni["gateway"] == "prod" and uni["bytes"] > len(body)
    assert 0 < uni["ttfb_ms"] < uni["duration_ms"] and uni["duration_ms"] >= 250
    assert lines[1]["provider"] == "openai"
    await asyncio.sleep(0)
