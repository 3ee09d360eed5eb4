from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from aigw.usage import (SSEUsageScanner, Usage, model_from_path, model_from_request, usage_from_tail,
                        usage_from_json)

OPENAI = (b'{"id":"c1","model":"gpt-4o-mini-2024-07-18","choices":[],'
          b'"usage":{"prompt_tokens":120,"completion_tokens":30,"total_tokens":150,'
          b'"prompt_tokens_details":{"cached_tokens":100}}}')
OPENAI_RESPONSES = (b'{"model":"gpt-4.1","output":[],"usage":{"input_tokens":50,'
                    b'"input_tokens_details":{"cached_tokens":10},"output_tokens":7}}')
ANTHROPIC = (b'{"id":"m","model":"claude-sonnet-4-5","content":[],"usage":{"input_tokens":20,'
             b'"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":9}}')
WORKERS_AI = (b'{"result":{"response":"hi","usage":{"prompt_tokens":11,"completion_tokens":4,'
              b'"total_tokens":15}},"success":true,"errors":[],"messages":[]}')
GOOGLE = (b'{"candidates":[],"usageMetadata":{"promptTokenCount":40,"candidatesTokenCount":12,'
          b'"thoughtsTokenCount":3,"cachedContentTokenCount":8},"modelVersion":"gemini-2.5-flash"}')
COHERE_V2 = (b'{"id":"x","message":{},"usage":{"billed_units":{"input_tokens":6,"output_tokens":2},'
             b'"tokens":{"input_tokens":70,"output_tokens":2}}}')
COHERE_V1 = b'{"text":"hi","meta":{"billed_units":{"input_tokens":6,"output_tokens":3}}}'
BEDROCK = (b'{"output":{},"usage":{"inputTokens":30,"outputTokens":5,"totalTokens":35,'
           b'"cacheReadInputTokens":10,"cacheWriteInputTokens":2}}')


@pytest.mark.parametrize("wire,body,expected", [
    ("openai", OPENAI, Usage("gpt-4o-mini-2024-07-18", 120, 30, 100, 0)),
    ("openai", OPENAI_RESPONSES, Usage("gpt-4.1", 50, 7, 10, 0)),
    ("anthropic", ANTHROPIC, Usage("claude-sonnet-4-5", 125, 9, 100, 5)),
    ("workers-ai", WORKERS_AI, Usage(None, 11, 4)),
    ("google", GOOGLE, Usage("gemini-2.5-flash", 40, 15, 8, 0)),
    ("cohere", COHERE_V2, Usage(None, 6, 2)),
    ("cohere", COHERE_V1, Usage(None, 6, 3)),
    ("other", BEDROCK, Usage(None, 42, 5, 10, 2)),
])
def test_usage_from_json_each_shape(wire, body, expected):
    assert usage_from_json(wire, body) == expected


@pytest.mark.parametrize("body", [b"", b"not json", b'{"usage":null}', b"[1,2]",
                                  b'{"choices":[]}', b'{"usage":{"weird":1}}'])
def test_usage_from_json_without_usage_is_none(body):
    assert usage_from_json("openai", body) is None


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


OPENAI_SSE = (
    b'data: {"id":"c","model":"gpt-4o","choices":[{"delta":{"content":"Hel"}}],"usage":null}\n\n'
    b'data: {"id":"c","model":"gpt-4o","choices":[{"delta":{"content":"lo"}}],"usage":null}\n\n'
    b'data: {"id":"c","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,'
    b'"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0}}}\n\n'
    b'data: [DONE]\n\n')
ANTHROPIC_SSE = (
    b'event: message_start\r\ndata: {"type":"message_start","message":{"id":"m","model":'
    b'"claude-haiku-4-5","usage":{"input_tokens":12,"cache_read_input_tokens":30,'
    b'"cache_creation_input_tokens":0,"output_tokens":1}}}\r\n\r\n'
    b'event: content_block_delta\r\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"usage is fine"}}\r\n\r\n'
    b'event: message_delta\r\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":17}}\r\n\r\n'
    b'event: message_stop\r\ndata: {"type":"message_stop"}\r\n\r\n')
WORKERS_AI_SSE = (
    b'data: {"response":"Hi","p":"abc"}\n\n'
    b'data: {"response":"","usage":{"prompt_tokens":21,"completion_tokens":5,"total_tokens":26}}\n\n'
    b'data: [DONE]\n\n')
GOOGLE_SSE = (
    b'data: {"candidates":[{"content":{}}],"usageMetadata":{"promptTokenCount":8,'
    b'"candidatesTokenCount":1},"modelVersion":"gemini-2.0-flash"}\r\n\r\n'
    b'data: {"candidates":[{"content":{}}],"usageMetadata":{"promptTokenCount":8,'
    b'"candidatesTokenCount":6},"modelVersion":"gemini-2.0-flash"}\r\n\r\n')
COHERE_SSE = (
    b'event: content-delta\ndata: {"type":"content-delta","delta":{"message":{}}}\n\n'
    b'event: message-end\ndata: {"type":"message-end","delta":{"finish_reason":"COMPLETE",'
    b'"usage":{"billed_units":{"input_tokens":3,"output_tokens":4},'
    b'"tokens":{"input_tokens":60,"output_tokens":4}}}}\n\n')


@pytest.mark.parametrize("stream,expected", [
    (OPENAI_SSE, Usage("gpt-4o", 9, 2)),
    (ANTHROPIC_SSE, Usage("claude-haiku-4-5", 42, 17, 30, 0)),
    (WORKERS_AI_SSE, Usage(None, 21, 5)),
    (GOOGLE_SSE, Usage("gemini-2.0-flash", 8, 6)),
    (COHERE_SSE, Usage(None, 3, 4)),
])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, 64, 100000])
def test_scanner_finds_usage_at_any_chunk_boundary(stream, expected, size):
    scanner = SSEUsageScanner()
    for chunk in _chunks(stream, size):
        scanner.feed(chunk)
    assert scanner.result() == expected


def test_scanner_parses_only_usage_lines():
    scanner = SSEUsageScanner()
    for chunk in _chunks(OPENAI_SSE * 1, 50):
        scanner.feed(chunk)
    assert scanner.events == 1  # the "usage":null chunks are never parsed


def test_scanner_without_usage_returns_none():
    scanner = SSEUsageScanner()
    scanner.feed(b'data: {"choices":[{"delta":{"content":"x"}}]}\n\ndata: [DONE]\n\n')
    assert scanner.result() is None


def test_scanner_tolerates_garbage():
    scanner = SSEUsageScanner()
    scanner.feed(b'data: {"usage":{broken\n\n')
    scanner.feed(b"\xff\xfe\n")
    assert scanner.result() is None


def test_model_from_request_and_path():
    assert model_from_request(b'{"model":"gpt-4o","messages":[]}') == "gpt-4o"
    assert model_from_request(b'{"messages":[]}') is None
    assert model_from_request(b"nope \"model\"") is None
    assert model_from_path("workers-ai", "/@cf/meta/llama-3.1-8b-instruct") == \
        "@cf/meta/llama-3.1-8b-instruct"
    assert model_from_path("google", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse") \
        == "gemini-2.5-flash"
    assert model_from_path("openai", "/chat/completions") is None


def test_scanner_sees_groq_usage_after_null_usage_on_same_line():
    scanner = SSEUsageScanner()
    scanner.feed(b'data: {"model":"llama-3.1-8b-instant","usage":null,"x_groq":{"usage":'
                 b'{"prompt_tokens":5,"completion_tokens":6}}}\n\n')
    assert scanner.result() == Usage("llama-3.1-8b-instant", 5, 6)


def test_scanner_feed_is_cheap_on_plain_chunks():
    import time
    chunk = b'data: {"id":"c","model":"gpt-4o","choices":[{"delta":{"content":"hello"}}],"usage":null}\n\n'
    scanner = SSEUsageScanner()
    t0 = time.perf_counter()
    for _ in range(100_000):
        scanner.feed(chunk)
    per_chunk = (time.perf_counter() - t0) / 100_000
    assert scanner.events == 0
    assert per_chunk < 5e-6  # measured ~0.3 µs; generous bound for slow CI


# A translated /compat stream is not scanned as bytes: its translator hands each event it
# parses to the scanner's `see` (aigw.compat._openai.ChunkStream.on_usage). Both ways must
# find the same usage, however the stream is cut.
_TRANSLATED = [(module, name) for module, prefix in (
    ("aigw.compat.openai_anthropic", "anthropic"), ("aigw.compat.openai_google", "google"),
    ("aigw.compat.openai_workersai", "workersai"))
    for name in sorted(p.name for p in (Path(__file__).parent / "fixtures" / "compat").glob(f"{prefix}_stream_*.sse")
                       if ".expected." not in p.name)]


@pytest.mark.parametrize("size", [None, 1, 7, 64])
@pytest.mark.parametrize(("module", "fixture"), _TRANSLATED)
def test_translator_hands_the_scanner_the_same_usage_as_the_bytes(module: str, fixture: str,
                                                                   size: int | None) -> None:
    data = (Path(__file__).parent / "fixtures" / "compat" / fixture).read_bytes()
    by_bytes = SSEUsageScanner()
    by_bytes.feed(data)
    by_events = SSEUsageScanner()
    tr = importlib.import_module(module).StreamTranslator("p/m", True)
    tr.on_usage = by_events.see
    step = size or len(data)
    for i in range(0, len(data), step):
        tr.feed(data[i:i + step])
    tr.finish()
    assert by_events.result() == by_bytes.result()
    if "error" not in fixture:
        assert by_bytes.result() is not None and by_bytes.result().tokens_out > 0, fixture


def test_translated_streams_under_test_cover_every_translator() -> None:
    assert {m for m, _ in _TRANSLATED} == {"aigw.compat.openai_anthropic", "aigw.compat.openai_google",
                                          "aigw.compat.openai_workersai"}


@pytest.mark.parametrize(("tail", "expected"), [
    (b'0.5]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}',
     Usage("text-embedding-3-small", 8, 0)),
    (b'"stop_reason":"end_turn","usage": {"input_tokens": 5, "cache_read_input_tokens": 2,'
     b' "output_tokens": 3}}', Usage(None, 7, 3, 2, 0)),
    (b'}]}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2},"modelVersion":"gemini-2.5-flash"}',
     Usage("gemini-2.5-flash", 4, 2)),
    (b'"response":"hi","usage":{"prompt_tokens":3,"completion_tokens":1}},"success":true}', Usage(None, 3, 1)),
    # the last complete usage object wins; a cut-off one is skipped
    (b'"usage":{"prompt_tokens":1,"completion_tokens":1}},{"usage":{"prompt_tok', Usage(None, 1, 1)),
    (b'"usage":null,"x":"usage"', None),
    (b"no usage here", None),
])
def test_usage_from_the_tail_of_a_large_reply(tail: bytes, expected: Usage | None) -> None:
    assert usage_from_tail(tail) == expected


def test_a_last_line_without_its_line_end_is_read_at_the_end() -> None:
    scanner = SSEUsageScanner()
    scanner.feed(b'data: {"choices":[]}\n\ndata: {"model":"m","usage":{"prompt_tokens":2,')
    scanner.feed(b'"completion_tokens":1}}')
    assert scanner.result() is None
    scanner.flush()
    assert scanner.result() == Usage("m", 2, 1)


@pytest.mark.parametrize(("module", "fixture"), [
    ("aigw.compat.openai_anthropic", "anthropic_response_text.json"),
    ("aigw.compat.openai_anthropic", "anthropic_response_tools.json"),
    ("aigw.compat.openai_google", "google_response_text.json"),
    ("aigw.compat.openai_google", "google_response_tools.json"),
    ("aigw.compat.openai_workersai", "workersai_response_text.json"),
    ("aigw.compat.openai_workersai", "workersai_response_tools.json")])
def test_a_translated_reply_hands_over_the_body_it_parsed_with_the_same_usage(module: str,
                                                                              fixture: str) -> None:
    # /compat JSON: the log capture reads usage from the object the translator parsed
    # (Attempt.usage_from) instead of parsing the reply again; same usage either way.
    from aigw.usage import usage_from_obj
    body = (Path(__file__).parent / "fixtures" / "compat" / fixture).read_bytes()
    seen: list = []
    assert importlib.import_module(module).translate_response(200, body, "m", on_parsed=seen.append)
    wire = {"aigw.compat.openai_anthropic": "anthropic", "aigw.compat.openai_google": "google"}.get(
        module, "workers-ai")
    assert len(seen) == 1 and usage_from_obj(seen[0]) == usage_from_json(wire, body)
    assert usage_from_json(wire, body) is not None and usage_from_json(wire, body).tokens_out > 0
