"""Smoke tests of the benchmark tools: mock upstream shapes, fault headers, load generators.

The gateway itself is not exercised here; bench/run.py drives it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import loadgen, ttfb  # noqa: E402
from bench.mock_upstream import MockThread, bound_port, start  # noqa: E402
from bench.scenarios import SCENARIOS, parse_other  # noqa: E402

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"
WORKERS = "/client/v4/accounts/acct/ai/run/@cf/meta/llama-3.1-8b-instruct"


@pytest.fixture
async def mock_url():
    server = await start("127.0.0.1", 0)
    yield f"http://127.0.0.1:{bound_port(server)}"
    server.close()
    await server.wait_closed()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def parse_sse(raw: bytes) -> list[tuple[str | None, bytes]]:
    """Split SSE bytes into (event name, data); assert each event is well-formed."""
    assert raw.endswith(b"\n\n"), raw[-40:]
    events = []
    for block in raw[:-2].split(b"\n\n"):
        name, data = None, None
        for line in block.split(b"\n"):
            field, sep, value = line.partition(b": ")
            assert sep, f"malformed SSE line {line!r}"
            if field == b"event":
                name = value.decode()
            else:
                assert field == b"data", line
                data = value
        assert data is not None
        if data != b"[DONE]":
            orjson.loads(data)
        events.append((name, data))
    return events


async def post(session, url, body=None, headers=None, stream=False):
    payload = {**(body or CHAT), **({"stream": True} if stream else {})}
    async with session.post(url, data=orjson.dumps(payload), headers=headers or {}) as r:
        return r.status, dict(r.headers), await r.read()


async def test_openai_json_has_usage(mock_url, session):
    status, headers, body = await post(session, mock_url + OPENAI)
    doc = orjson.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert doc["object"] == "chat.completion" and doc["choices"][0]["message"]["role"] == "assistant"
    assert doc["usage"]["total_tokens"] == doc["usage"]["prompt_tokens"] + doc["usage"]["completion_tokens"]


async def test_openai_stream_has_usage_chunk_and_done(mock_url, session):
    status, headers, raw = await post(session, mock_url + OPENAI, stream=True)
    events = parse_sse(raw)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    assert events[-1] == (None, b"[DONE]")
    chunks = [orjson.loads(d) for _, d in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 20
    content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) == 20


async def test_anthropic_json_and_event_sequence(mock_url, session):
    _, _, body = await post(session, mock_url + ANTHROPIC)
    doc = orjson.loads(body)
    assert doc["type"] == "message" and doc["usage"]["output_tokens"] == 20
    _, _, raw = await post(session, mock_url + ANTHROPIC, stream=True, headers={"x-mock-chunks": "3"})
    events = parse_sse(raw)
    names = [n for n, _ in events]
    assert names == ["message_start", "content_block_start", "ping", *["content_block_delta"] * 3,
                     "content_block_stop", "message_delta", "message_stop"]
    assert all(orjson.loads(d)["type"] == n for n, d in events)
    assert orjson.loads(events[-2][1])["usage"]["output_tokens"] == 3


async def test_workers_ai_json_and_stream(mock_url, session):
    _, _, body = await post(session, mock_url + WORKERS)
    doc = orjson.loads(body)
    assert doc["success"] is True and doc["errors"] == [] and doc["result"]["usage"]["total_tokens"] > 0
    _, _, raw = await post(session, mock_url + WORKERS, stream=True, headers={"x-mock-chunks": "4"})
    events = parse_sse(raw)
    assert events[-1][1] == b"[DONE]"
    assert [orjson.loads(d)["response"] for _, d in events[:4]] == ["tok0 ", "tok1 ", "tok2 ", "tok3 "]
    assert "usage" in orjson.loads(events[-2][1])


async def test_embeddings_and_unknown_path(mock_url, session):
    status, _, body = await post(session, mock_url + "/v1/embeddings", {"input": "x"})
    assert status == 200 and orjson.loads(body)["data"][0]["object"] == "embedding"
    status, _, _ = await post(session, mock_url + "/nowhere")
    assert status == 404


@pytest.mark.parametrize(
    ("path", "check"),
    [
        (OPENAI, lambda d: d["error"]["type"] == "server_error"),
        (ANTHROPIC, lambda d: d["type"] == "error" and d["error"]["type"] == "api_error"),
        (WORKERS, lambda d: d["success"] is False and d["errors"][0]["message"]),
    ],
)
async def test_status_header_gives_provider_error_shape(mock_url, session, path, check):
    status, headers, body = await post(session, mock_url + path, stream=True,
                                       headers={"x-mock-status": "503", "x-mock-retry-after": "7"})
    assert status == 503 and headers["Retry-After"] == "7"
    assert check(orjson.loads(body))


async def test_delay_header_delays_the_head(mock_url, session):
    t0 = time.perf_counter()
    status, _, _ = await post(session, mock_url + OPENAI, headers={"x-mock-delay-ms": "150"})
    assert status == 200 and time.perf_counter() - t0 >= 0.14


async def test_chunk_delay_paces_the_stream(mock_url, session):
    t0 = time.perf_counter()
    _, _, raw = await post(session, mock_url + OPENAI, stream=True,
                           headers={"x-mock-chunks": "5", "x-mock-chunk-delay-ms": "20"})
    assert time.perf_counter() - t0 >= 0.075 and parse_sse(raw)[-1][1] == b"[DONE]"


async def test_abort_after_truncates_the_stream(mock_url, session):
    got = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(mock_url + OPENAI, data=orjson.dumps({**CHAT, "stream": True}),
                                headers={"x-mock-abort-after": "3"}) as r:
            async for data in r.content.iter_any():
                got += data
    assert got.count(b"data: ") == 1 + 3  # the role chunk, then three content chunks
    assert b"[DONE]" not in got


async def test_error_event_comes_first(mock_url, session):
    _, _, raw = await post(session, mock_url + ANTHROPIC, stream=True, headers={"x-mock-error-event": "1"})
    name, data = parse_sse(raw)[0]
    assert name == "error" and orjson.loads(data)["error"]["type"] == "overloaded_error"
    status, _, raw = await post(session, mock_url + OPENAI, stream=True, headers={"x-mock-error-event": "1"})
    assert status == 200 and "error" in orjson.loads(parse_sse(raw)[0][1])


async def test_body_bytes_pads_json(mock_url, session):
    _, _, body = await post(session, mock_url + OPENAI, headers={"x-mock-body-bytes": "20000"})
    assert 19_000 <= len(body) <= 21_000 and orjson.loads(body)["usage"]


async def test_pipelined_and_chunked_requests_answered_in_order(mock_url):
    port = int(mock_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = orjson.dumps({**CHAT, "stream": True})
    first = (f"POST {OPENAI} HTTP/1.1\r\nHost: x\r\nx-mock-delay-ms: 50\r\n"
             f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    second = (f"POST {ANTHROPIC} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              f"{len(body[:10]):x}\r\n").encode() + body[:10] + f"\r\n{len(body[10:]):x}\r\n".encode() + \
        body[10:] + b"\r\n0\r\n\r\n"
    writer.write(first + second)
    try:
        for _ in range(2):  # the delayed first answer must still come first
            status, _, keep = await asyncio.wait_for(loadgen.read_response(reader), 5)
            assert status == 200 and keep
        writer.write(b"GET /__stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = await asyncio.wait_for(reader.read(), 5)
        stats = orjson.loads(head.split(b"\r\n\r\n", 1)[1])
        assert stats["by_route"] == {"openai": 1, "anthropic": 1} and stats["streams"] == 2
    finally:
        writer.close()


async def test_loadgen_and_ttfb_against_mock(mock_url):
    spec = loadgen.RequestSpec.build(mock_url + OPENAI, "POST", orjson.dumps(CHAT), [("authorization", "x")])
    out = await loadgen.run(spec, connections=4, duration=0.8)
    assert out["requests"] > 100 and out["errors"] == 0 and out["non2xx"] == 0
    assert 0 < out["latency_ms"]["p50"] <= out["latency_ms"]["p99"]
    sspec = loadgen.RequestSpec.build(mock_url + OPENAI, "POST", orjson.dumps({**CHAT, "stream": True}),
                                      [("x-mock-chunk-delay-ms", "2"), ("x-mock-chunks", "5")])
    t = await ttfb.measure(sspec, requests=10, duration=5)
    assert t["requests"] == 10 and t["errors"] == 0
    assert t["ttfb_ms"]["p50"] < t["total_ms"]["p50"] and t["total_ms"]["p50"] >= 7


async def test_loadgen_counts_errors_and_non2xx(mock_url):
    spec = loadgen.RequestSpec.build(mock_url + OPENAI, "POST", orjson.dumps(CHAT), [("x-mock-status", "429")])
    out = await loadgen.run(spec, connections=2, duration=0.2)
    assert out["requests"] > 0 and out["non2xx"] == out["requests"]
    spec = loadgen.RequestSpec.build(mock_url + OPENAI, "POST", orjson.dumps({**CHAT, "stream": True}),
                                     [("x-mock-abort-after", "1")])
    out = await loadgen.run(spec, connections=1, duration=0.2)
    assert out["requests"] == 0 and out["errors"] > 0


def test_mock_thread_and_cli():
    with MockThread() as m:
        with urllib.request.urlopen(f"http://127.0.0.1:{m.port}/__stats", timeout=5) as r:
            assert orjson.loads(r.read())["requests"] == 0
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "mock_upstream.py"), "--port", "0"],
                            stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("READY 127.0.0.1:")
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()


def test_other_gateway_url_templates():
    t = parse_other("cf=http://127.0.0.1:1/v1/a/g")
    assert t.chat_url.endswith("/v1/a/g/openai/chat/completions") and t.universal_url == "http://127.0.0.1:1/v1/a/g"
    t = parse_other("lite=http://127.0.0.1:1/{endpoint}")
    assert t.chat_url == "http://127.0.0.1:1/chat/completions" and t.universal_url is None
    assert t.url_for(next(s for s in SCENARIOS if s.route == "universal")) is None


def test_overhead_comparisons_name_real_scenarios():
    from bench.overhead import COMPARISONS
    from bench.scenarios import LIVE_SCENARIOS
    names = {s.name for s in SCENARIOS}
    live = {s.name for s in LIVE_SCENARIOS}
    for c in COMPARISONS:
        # the default set is the judged one; the live streams are run by name only
        assert {c.baseline.scenario, c.variant.scenario} <= (names if c.default else live), c.name
        assert 0 < c.target < 1


def test_live_anthropic_config_asks_the_mock_for_a_paced_stream():
    """/compat does not forward the client's x-mock-* headers: both live Anthropic sides get
    the pacing header from the gateway's provider config, which must be valid aigw config."""
    import tomllib

    from aigw.config import from_dict
    from bench.overhead import PROVIDER_CONFIG
    from bench.run import CONFIG_TEMPLATE
    assert PROVIDER_CONFIG["compat_sse_live_c32"] == PROVIDER_CONFIG["anthropic_sse_live_c32"]
    text = CONFIG_TEMPLATE.format(port=8787, mock=9999) + "\n" + PROVIDER_CONFIG["compat_sse_live_c32"]
    config = from_dict(tomllib.loads(text))
    assert ("x-mock-chunk-delay-ms", "1") in config.providers["anthropic"].default_headers


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
@pytest.mark.parametrize("against", [False, True])
def test_overhead_runs_both_sides_together(tmp_path, against):
    """One short round of one comparison: both gateways answer and a ratio comes out. With
    --against, the comparison is of code: the variant's configuration on both sides, the
    baseline run from the other checkout (here this one again)."""
    out = tmp_path / "overhead.json"
    extra = ["--against", str(ROOT)] if against else []
    cp = subprocess.run([sys.executable, str(ROOT / "bench" / "overhead.py"), "--comparison", "compat_json",
                         "--rounds", "1", "--duration", "1", "--out", str(out), *extra],
                        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert cp.returncode == 0, cp.stderr[-2000:]
    res = orjson.loads(out.read_bytes())["results"][0]
    assert res["comparison"] == ("compat_json@against" if against else "compat_json") and res["errors"] == 0
    if against:
        assert res["baseline"]["scenario"] == res["variant"]["scenario"] == "compat_json_c32"
        assert "code comparison" in cp.stdout
    assert 0.2 < res["throughput_kept"] < 2.0 and 0.2 < res["loop_throughput_kept"] < 2.0
    for side in ("baseline", "variant"):  # the loop's thread is part of the whole process
        # (within the kernel's tick-based accounting: /proc scales a thread's and the whole
        # process's times apart, so on a short, busy run the part can read a few % over)
        assert 0 < res[side]["loop_us_per_req"] <= res[side]["cpu_us_per_req"] * 1.1


def test_main_thread_seconds_counts_the_main_thread_only():
    """A helper thread's CPU goes into cpu_seconds, not into main_thread_seconds."""
    import threading
    import time as _time

    from bench import procstat

    pid = os.getpid()
    main0, all0 = procstat.main_thread_seconds(pid), procstat.cpu_seconds(pid)

    def spin() -> None:
        end = _time.thread_time() + 0.5
        while _time.thread_time() < end:
            pass

    t = threading.Thread(target=spin)
    t.start()
    t.join()
    main1, all1 = procstat.main_thread_seconds(pid), procstat.cpu_seconds(pid)
    assert all1 - all0 >= 0.4
    assert main1 - main0 < 0.2


def test_helper_threads_lists_every_thread_but_the_main_one():
    import threading

    from bench import procstat

    pid = os.getpid()
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        helpers = procstat.helper_threads(pid)
        assert t.native_id in helpers and pid not in helpers
    finally:
        stop.set()
        t.join()
    assert t.native_id not in procstat.helper_threads(pid)


def test_overhead_against_needs_a_checkout(tmp_path):
    cp = subprocess.run([sys.executable, str(ROOT / "bench" / "overhead.py"), "--against", str(tmp_path)],
                        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert cp.returncode == 2 and "not an aigw checkout" in cp.stderr
