"""OpenAI <-> Workers AI `ai/run`: request building, replies, errors and incremental streams."""

from __future__ import annotations

import pytest

from aigw import _json
from aigw.compat import TRANSLATORS, CompatError
from aigw.compat import openai_workersai as t
from compat_support import (assembled_tool_calls, clock, feed_in, golden, ids, pretty, read, split_events,
                            sse_payloads, validate_completion, validate_stream)

MODEL = "@cf/meta/llama-4-scout-17b-16e-instruct"


def built(**extra: object) -> dict:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], **extra}
    return _json.loads(t.build_request(body, MODEL, False)[2])


def test_registered_under_its_wire_name() -> None:
    assert TRANSLATORS["workers-ai"] is t


def test_request_golden() -> None:
    body = _json.loads(read("openai_request_tools.json"))
    path, headers, out = t.build_request(body, MODEL, True)
    assert (path, headers) == (MODEL, {})
    golden("workersai_request_tools.expected.json", pretty(out))


def test_text_parts_are_joined_and_tool_choice_none_hides_tools() -> None:
    content = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    out = built(messages=[{"role": "developer", "content": content}], tools=tools, tool_choice="none")
    assert out["messages"] == [{"role": "system", "content": "ab"}]
    assert "tools" not in out


def test_json_schema_is_unwrapped() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {}}}}
    assert built(response_format=fmt)["response_format"] == {"type": "json_schema",
                                                              "json_schema": {"type": "object", "properties": {}}}


@pytest.mark.parametrize("extra", [
    {"n": 3}, {"stop": ["x"]}, {"tool_choice": "required"}, {"logprobs": True},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}]},
])
def test_refusals(extra: dict) -> None:
    with pytest.raises(CompatError):
        built(**extra)


@pytest.mark.parametrize("name", ["workersai_response_tools", "workersai_response_text"])
def test_response_golden(name: str) -> None:
    out = t.translate_response(200, read(f"{name}.json"), MODEL, clock=clock, new_id=ids())
    validate_completion(out)
    golden(f"{name}.expected.json", pretty(out))


def test_json_mode_object_response_becomes_a_string() -> None:
    body = b'{"result":{"response":{"city":"Paris"},"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}},"success":true}'
    out = validate_completion(t.translate_response(200, body, MODEL, clock=clock, new_id=ids()))
    assert _json.loads(out.choices[0].message.content) == {"city": "Paris"}


def test_openai_shaped_result_is_rebuilt_under_our_id() -> None:
    body = (b'{"result":{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant",'
            b'"content":"hi"},"finish_reason":"length"}],"usage":{"prompt_tokens":4,"completion_tokens":1,'
            b'"total_tokens":5}},"success":true}')
    out = validate_completion(t.translate_response(200, body, MODEL, clock=clock, new_id=ids()))
    assert (out.id, out.choices[0].finish_reason, out.usage.total_tokens) == ("chatcmpl-test00000001", "length", 5)


def test_errors() -> None:
    out = _json.loads(t.translate_error(429, read("workersai_error_capacity.json")))
    assert out["error"]["code"] == 3040 and out["error"]["type"] == "rate_limit_error"
    assert out["error"]["message"].startswith("AiError: AiError: Capacity temporarily exceeded")
    assert _json.loads(t.translate_error(503, b"upstream connect error"))["error"]["type"] == "api_error"


@pytest.mark.parametrize("name", ["workersai_stream_tools", "workersai_stream_text"])
@pytest.mark.parametrize("usage", [True, False])
def test_stream_golden_in_any_chunking(name: str, usage: bool) -> None:
    data = read(f"{name}.sse")
    outs = {size: feed_in(t.StreamTranslator(MODEL, usage, clock=clock, new_id=ids()), data, size)
            for size in (1, 7, None)}
    assert len(set(outs.values())) == 1
    validate_stream(outs[None])
    golden(f"{name}.{'usage' if usage else 'plain'}.expected.sse", outs[None])


def test_stream_tool_argument_deltas_assemble() -> None:
    out = feed_in(t.StreamTranslator(MODEL, True, clock=clock, new_id=ids()), read("workersai_stream_tools.sse"), 7)
    chunks = validate_stream(out)
    assert assembled_tool_calls(chunks) == {0: {"id": "chatcmpl-tool-5b1e5c2a9a1f4f0e", "name": "get_weather",
                                                "arguments": '{"location": "Paris, France"}'}}
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage.total_tokens == 236


def test_legacy_whole_tool_call_in_stream() -> None:
    data = b'data: {"response":"","tool_calls":[{"name":"f","arguments":{"a":1}}]}\n\ndata: [DONE]\n\n'
    chunks = validate_stream(feed_in(t.StreamTranslator(MODEL, False, clock=clock, new_id=ids()), data, 1))
    assert assembled_tool_calls(chunks)[0]["arguments"] == '{"a":1}'


def test_stream_is_incremental() -> None:
    translator = t.StreamTranslator(MODEL, False, clock=clock, new_id=ids())
    events = split_events(read("workersai_stream_text.sse"))
    assert [translator.feed(e) != b"" for e in events] == [True, True, False, True]


def test_stream_error_and_missing_done() -> None:
    data = b'data: {"success":false,"errors":[{"message":"AiError: timeout","code":3007}]}\n\n'
    payloads = sse_payloads(feed_in(t.StreamTranslator(MODEL, True, clock=clock, new_id=ids()), data, 3))
    assert payloads[0]["error"]["code"] == 3007 and payloads[-1] == "[DONE]"
    cut = read("workersai_stream_text.sse").split(b"data: [DONE]")[0]
    payloads = sse_payloads(feed_in(t.StreamTranslator(MODEL, True, clock=clock, new_id=ids()), cut, None))
    assert "ended before" in payloads[-2]["error"]["message"]
