"""OpenAI <-> Gemini generateContent: request building, replies, errors and incremental streams."""

from __future__ import annotations

import pytest

from aigw import _json
from aigw.compat import TRANSLATORS, CompatError
from aigw.compat import openai_google as t
from compat_support import (assembled_tool_calls, clock, feed_in, golden, ids, pretty, read, split_events,
                            sse_payloads, validate_completion, validate_stream)


def built(**extra: object) -> dict:
    body = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "Hi"}], **extra}
    return _json.loads(t.build_request(body, "gemini-2.5-flash", False)[2])


def test_registered_under_its_wire_name() -> None:
    assert TRANSLATORS["google"] is t


def test_request_golden_and_paths() -> None:
    body = _json.loads(read("openai_request_tools.json"))
    path, headers, out = t.build_request(body, "gemini-2.5-flash", True)
    assert (path, headers) == ("v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", {})
    assert t.build_request(body, "gemini-2.5-flash", False)[0] == "v1beta/models/gemini-2.5-flash:generateContent"
    golden("google_request_tools.expected.json", pretty(out))


@pytest.mark.parametrize(("fmt", "expected"), [
    ({"type": "json_object"}, {"responseMimeType": "application/json"}),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
     {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}}),
])
def test_json_mode(fmt: dict, expected: dict) -> None:
    assert built(response_format=fmt)["generationConfig"] == expected


def test_sampling_and_tool_choice() -> None:
    out = built(n=2, seed=3, stop=["x"], max_tokens=5, tool_choice={"type": "function", "function": {"name": "f"}})
    assert out["generationConfig"] == {"maxOutputTokens": 5, "candidateCount": 2, "seed": 3, "stopSequences": ["x"]}
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}


@pytest.mark.parametrize("extra", [
    {"logprobs": True}, {"parallel_tool_calls": False}, {"reasoning_effort": "low"},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]},
    {"messages": [{"role": "tool", "tool_call_id": "nope", "content": "1"}]},
])
def test_refusals(extra: dict) -> None:
    with pytest.raises(CompatError):
        built(**extra)


def test_files_api_link_becomes_file_data() -> None:
    url = "https://generativelanguage.googleapis.com/v1beta/files/abc123"
    out = built(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    assert out["contents"][0]["parts"] == [{"fileData": {"fileUri": url}}]


@pytest.mark.parametrize("name", ["google_response_tools", "google_response_text"])
def test_response_golden(name: str) -> None:
    out = t.translate_response(200, read(f"{name}.json"), "gemini-2.5-flash", clock=clock, new_id=ids())
    validate_completion(out)
    golden(f"{name}.expected.json", pretty(out))


def test_response_finish_and_usage() -> None:
    out = _json.loads(t.translate_response(200, read("google_response_tools.json"), "g", clock=clock, new_id=ids()))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert out["usage"]["completion_tokens"] == 62
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 42}
    text = _json.loads(t.translate_response(200, read("google_response_text.json"), "g", clock=clock, new_id=ids()))
    assert [c["finish_reason"] for c in text["choices"]] == ["stop", "content_filter"]


def test_blocked_prompt_is_a_content_filter_choice() -> None:
    body = b'{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":5,"totalTokenCount":5}}'
    out = validate_completion(t.translate_response(200, body, "g", clock=clock, new_id=ids()))
    assert out.choices[0].finish_reason == "content_filter"


def test_errors() -> None:
    out = _json.loads(t.translate_error(400, read("google_error_invalid.json")))
    assert out == {"error": {"message": "API key not valid. Please pass a valid API key.",
                             "type": "invalid_request_error", "param": None, "code": "INVALID_ARGUMENT"}}
    listed = _json.loads(t.translate_error(429, b'[{"error":{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED"}}]'))
    assert listed["error"]["type"] == "rate_limit_error"
    assert _json.loads(t.translate_error(500, b""))["error"]["message"] == "Upstream returned HTTP 500"


@pytest.mark.parametrize("name", ["google_stream_tools", "google_stream_text"])
@pytest.mark.parametrize("usage", [True, False])
def test_stream_golden_in_any_chunking(name: str, usage: bool) -> None:
    data = read(f"{name}.sse")
    outs = {size: feed_in(t.StreamTranslator("gemini", usage, clock=clock, new_id=ids()), data, size)
            for size in (1, 7, None)}
    assert len(set(outs.values())) == 1
    validate_stream(outs[None])
    golden(f"{name}.{'usage' if usage else 'plain'}.expected.sse", outs[None])


def test_stream_tools_and_usage() -> None:
    out = feed_in(t.StreamTranslator("gemini", True, clock=clock, new_id=ids()), read("google_stream_tools.sse"), 7)
    chunks = validate_stream(out)
    calls = assembled_tool_calls(chunks)
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    assert _json.loads(calls[0]["arguments"]) == {"location": "Paris, France", "unit": "celsius"}
    assert len({c["id"] for c in calls.values()}) == 2
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage.total_tokens == 121 and chunks[-1].usage.completion_tokens == 80


def test_stream_is_incremental() -> None:
    translator = t.StreamTranslator("gemini", False, clock=clock, new_id=ids())
    for event in split_events(read("google_stream_text.sse")):
        assert translator.feed(event) != b""


def test_stream_error_event() -> None:
    data = b'data: {"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}\r\n\r\n'
    payloads = sse_payloads(feed_in(t.StreamTranslator("gemini", True, clock=clock, new_id=ids()), data, 1))
    assert payloads == [{"error": {"message": "The model is overloaded.", "type": "api_error", "param": None,
                                   "code": "UNAVAILABLE"}}, "[DONE]"]
