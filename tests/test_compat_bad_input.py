"""Malformed compat requests end to end: a field of the wrong JSON type is a 400 in OpenAI's
error shape naming the field, for every translated provider, and nothing goes upstream;
OpenAI-wire providers get the body forwarded as it is (the provider judges it)."""

from __future__ import annotations

from typing import Any

import pytest

from aigw import _json

HI = {"role": "user", "content": "hi"}
# Translated providers and a model each: the wire each translator speaks.
TRANSLATED = ["anthropic/claude-sonnet-4-5", "google-ai-studio/gemini-2.5-flash",
              "workers-ai/@cf/meta/llama-3.1-8b-instruct"]
# (name, body without its model, the param the 400 names)
MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("messages-string", {"messages": "hi"}, "messages"),
    ("messages-object", {"messages": {"role": "user"}}, "messages"),
    ("message-number", {"messages": [1]}, "messages[0]"),
    ("message-string", {"messages": [HI, "hi"]}, "messages[1]"),
    ("content-number", {"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("content-object", {"messages": [{"role": "user", "content": {"type": "text"}}]}, "messages[0].content"),
    ("content-part-number", {"messages": [{"role": "user", "content": [5]}]}, "messages[0].content[0]"),
    ("content-part-one", {"messages": [{"role": "user", "content": [1]}]}, "messages[0].content[0]"),
    ("content-part-string", {"messages": [{"role": "user", "content": ["x"]}]}, "messages[0].content[0]"),
    ("text-part-number", {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
     "messages[0].content[0].text"),
    ("system-content-string-part", {"messages": [{"role": "system", "content": ["x"]}, HI]},
     "messages[0].content[0]"),
    ("system-content-number", {"messages": [HI, {"role": "system", "content": 7}]}, "messages[1].content"),
    ("assistant-content-number", {"messages": [HI, {"role": "assistant", "content": 7}]},
     "messages[1].content"),
    ("tool-content-part-number", {"messages": [HI, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": [3]}]}, "messages[2].content[0]"),
    ("response-format-string", {"messages": [HI], "response_format": "json"}, "response_format"),
    ("tools-string", {"messages": [HI], "tools": "x"}, "tools"),
    ("tool-number", {"messages": [HI], "tools": [1]}, "tools[0]"),
    ("tool-function-string", {"messages": [HI], "tools": [{"type": "function", "function": "f"}]},
     "tools[0].function"),
    ("stop-number", {"messages": [HI], "stop": 5}, "stop"),
    ("tool-calls-number", {"messages": [HI, {"role": "assistant", "tool_calls": [1]}]},
     "messages[1].tool_calls[0]"),
    ("tool-calls-string", {"messages": [HI, {"role": "assistant", "tool_calls": "x"}]},
     "messages[1].tool_calls"),
    ("tool-call-function-string", {"messages": [HI, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": "f"}]}]}, "messages[1].tool_calls[0].function"),
    ("image-url-string", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
     "messages[0].content[0].image_url"),
    ("image-url-url-number", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": 5}}]}]}, "messages[0].content[0].image_url.url"),
]


def check_refusal(status: int, doc: Any, param: str, name: str = "") -> None:
    assert status == 400, (name, doc)
    err = doc["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param, (name, err)
    assert isinstance(err["message"], str) and err["message"], name


@pytest.mark.parametrize("model", TRANSLATED)
async def test_wrong_json_types_are_a_400_naming_the_field(upstream, gw, model):
    """Every case against one gateway per provider (a gateway per case would cost a
    quarter second each to stop)."""
    for name, body, param in MALFORMED:
        if model.startswith("workers-ai/") and "stop" in body:
            param = "stop"  # ai/run has no stop sequences: refused whatever its type
        async with gw.post("/v1/acct/gw/compat/chat/completions",
                           data=_json.dumps({"model": model, **body})) as r:
            check_refusal(r.status, await r.json(), param, name)
        async with gw.post("/v1/acct/gw/compat/chat/completions",  # streamed: refused the same
                           data=_json.dumps({"model": model, "stream": True, **body})) as r:
            check_refusal(r.status, await r.json(), param, name)
    assert upstream.seen == []


async def test_a_universal_compat_step_with_a_wrong_type_is_a_400_naming_the_field(upstream, gw):
    for name, body, param in MALFORMED:
        step = {"provider": "compat", "endpoint": "chat/completions",
                "query": {"model": "anthropic/claude-sonnet-4-5", **body}}
        async with gw.post("/v1/acct/gw", data=_json.dumps([step])) as r:
            check_refusal(r.status, await r.json(), param, name)
    assert upstream.seen == []


async def test_openai_wire_providers_get_malformed_bodies_forwarded_as_they_are(upstream, gw):
    """Pass-through reads only `model`: the rest goes to the provider untouched, to judge."""
    for name, body, _ in MALFORMED:
        sent = {"model": "groq/llama-3.1-8b-instant", **body}
        async with gw.post("/v1/acct/gw/compat/chat/completions", data=_json.dumps(sent)) as r:
            assert r.status == 200, name  # the mock upstream echoes
        assert _json.loads(upstream.seen[-1].body) == {**body, "model": "llama-3.1-8b-instant"}, name
        step = {"provider": "compat", "endpoint": "chat/completions", "query": sent}
        async with gw.post("/v1/acct/gw", data=_json.dumps(step)) as r:
            assert r.status == 200, name
        assert _json.loads(upstream.seen[-1].body) == {**body, "model": "llama-3.1-8b-instant"}, name
