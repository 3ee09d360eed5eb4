"""The official SDKs, pointed at the gateway, complete plain and streamed calls."""

from __future__ import annotations

import anthropic
import openai

from aigw import _json
from tests.conftest import Reply

SSE = {"Content-Type": "text/event-stream"}

OPENAI_JSON = _json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})


def openai_chunk(content=None, finish=None, usage=None):
    choices = [] if usage else [{"index": 0, "delta": {"content": content} if content else {},
                                 "finish_reason": finish}]
    obj = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
           "model": "gpt-4o-mini", "choices": choices}
    if usage:
        obj["usage"] = usage
    return b"data: " + _json.dumps(obj) + b"\n\n"


ANTHROPIC_JSON = _json.dumps({
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Hi from Claude"}], "stop_reason": "end_turn",
    "stop_sequence": None, "usage": {"input_tokens": 4, "output_tokens": 3}})


def ev(name, obj):
    return b"event: " + name.encode() + b"\ndata: " + _json.dumps(obj) + b"\n\n"


ANTHROPIC_SSE = [
    ev("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 4, "output_tokens": 1}}}),
    ev("content_block_start", {"type": "content_block_start", "index": 0,
                               "content_block": {"type": "text", "text": ""}}),
    ev("ping", {"type": "ping"}),
    ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                               "delta": {"type": "text_delta", "text": "Hi "}}),
    ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                               "delta": {"type": "text_delta", "text": "there"}}),
    ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                            "stop_sequence": None},
                         "usage": {"output_tokens": 3}}),
    ev("message_stop", {"type": "message_stop"}),
]


async def test_openai_sdk_plain_and_streamed(upstream, gw):
    client = openai.AsyncOpenAI(api_key="sk-test", base_url=str(gw.url("/v1/acct/gw/openai")),
                                max_retries=0)
    upstream.script("/v1/chat/completions", Reply(body=OPENAI_JSON))
    r = await client.chat.completions.create(model="gpt-4o-mini",
                                             messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hello there"
    assert r.usage.total_tokens == 7
    assert upstream.seen[-1].headers["authorization"] == "Bearer sk-test"

    upstream.script("/v1/chat/completions", Reply(chunks=[
        openai_chunk("Hel"), openai_chunk("lo"), openai_chunk(finish="stop"),
        openai_chunk(usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}),
        b"data: [DONE]\n\n"], headers=SSE))
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert text == "Hello" and usage.completion_tokens == 2
    assert _json.loads(upstream.seen[-1].body)["stream"] is True
    await client.close()


async def test_anthropic_sdk_plain_and_streamed(upstream, gw):
    client = anthropic.AsyncAnthropic(api_key="sk-ant-test",
                                      base_url=str(gw.url("/v1/acct/gw/anthropic")),
                                      max_retries=0)
    upstream.script("/v1/messages", Reply(body=ANTHROPIC_JSON))
    r = await client.messages.create(model="claude-test-model", max_tokens=100,
                                     messages=[{"role": "user", "content": "hi"}])
    assert r.content[0].text == "Hi from Claude"
    seen = upstream.seen[-1]
    assert seen.path == "/v1/messages"
    # the SDK's own credential header (x-api-key, or Bearer in SDK 2.x) arrives unchanged
    assert "sk-ant-test" in (seen.headers.get("x-api-key"), seen.headers.get("authorization", "")[7:])

    upstream.script("/v1/messages", Reply(chunks=ANTHROPIC_SSE, headers=SSE))
    async with client.messages.stream(model="claude-test-model", max_tokens=100,
                                      messages=[{"role": "user", "content": "hi"}]) as stream:
        text = ""
        async for t in stream.text_stream:
            text += t
        final = await stream.get_final_message()
    assert text == "Hi there" and final.usage.output_tokens == 3
    await client.close()
