"""The compat routes end to end: the official OpenAI SDK, pointed at the gateway, talks to
mock Anthropic, Gemini, Workers AI and OpenAI-wire upstreams and parses every reply."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import openai
import pytest

import aigw
from aigw import _json
from aigw.compat.route import rewrite_model
from tests.compat_support import read
from tests.conftest import Reply, base_config

SSE = {"Content-Type": "text/event-stream"}
JSON = {"Content-Type": "application/json"}
WAI_PATH = "/client/v4/accounts/acct/ai/run/@cf/meta/llama-3.1-8b-instruct"
GEMINI = "/v1beta/models/gemini-2.5-flash"
HI = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a place",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                   "required": ["location"]}}}]


def sse_chunks(name: str, size: int = 97) -> list[bytes]:
    """A fixture stream cut at odd byte boundaries, as a network would."""
    raw = read(name)
    return [raw[i:i + size] for i in range(0, len(raw), size)]


def client_for(gw, key: str = "sk-client") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=str(gw.url("/v1/acct/gw/compat")), max_retries=0)


async def collect(stream) -> tuple[str, dict[int, dict[str, str]], str | None, object]:
    """Text, tool calls by index, the finish reason and the usage of an SDK stream."""
    text, calls, finish, usage = "", {}, None, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            text += ch.delta.content or ""
            for tc in ch.delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += tc.id or ""
                call["name"] += (tc.function.name or "") if tc.function else ""
                call["arguments"] += (tc.function.arguments or "") if tc.function else ""
            finish = ch.finish_reason or finish
    return text, calls, finish, usage


async def read_cut(gw, body: bytes) -> bytes:
    """A 200 compat stream that must end as a cut (no chunked terminator): the bytes it had."""
    received = b""
    async with gw.post("/v1/acct/gw/compat/chat/completions", data=body) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in r.content.iter_any():
                received += chunk
    return received


async def test_sdk_against_anthropic(upstream, gw):
    client = client_for(gw, "sk-ant-key")
    upstream.script("/v1/messages", Reply(body=read("anthropic_response_text.json")))
    r = await client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=HI)
    assert r.object == "chat.completion" and r.choices[0].message.content
    assert r.model == "claude-sonnet-4-5"
    seen = upstream.seen[-1]
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == "sk-ant-key"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen.headers
    sent = _json.loads(seen.body)
    assert sent["model"] == "claude-sonnet-4-5" and sent["max_tokens"] == 4096

    upstream.script("/v1/messages", Reply(chunks=sse_chunks("anthropic_stream_text.sse"), headers=SSE))
    stream = await client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=HI,
                                                  stream=True, stream_options={"include_usage": True})
    text, _, finish, usage = await collect(stream)
    assert text and finish == "stop" and usage.completion_tokens > 0

    upstream.script("/v1/messages", Reply(body=read("anthropic_response_tools.json")))
    r = await client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=HI, tools=TOOLS)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert _json.loads(call.function.arguments)["location"] == "Paris, France"
    assert _json.loads(upstream.seen[-1].body)["tools"][0]["input_schema"]["required"] == ["location"]

    upstream.script("/v1/messages", Reply(chunks=sse_chunks("anthropic_stream_tools.sse", 61), headers=SSE))
    stream = await client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=HI,
                                                  tools=TOOLS, stream=True)
    _, calls, finish, _ = await collect(stream)
    assert finish == "tool_calls" and calls[0]["name"] and _json.loads(calls[0]["arguments"])

    # JSON mode has no Anthropic equivalent: refused before any I/O, in OpenAI's error shape.
    before = len(upstream.seen)
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=HI,
                                             response_format={"type": "json_object"})
    assert info.value.param == "response_format" and len(upstream.seen) == before
    await client.close()


async def test_sdk_against_gemini(upstream, gw):
    client = client_for(gw, "goog-key")
    upstream.script(GEMINI + ":generateContent", Reply(body=read("google_response_text.json")))
    r = await client.chat.completions.create(model="google-ai-studio/gemini-2.5-flash", messages=HI, n=2)
    assert [c.message.content for c in r.choices][0] == "Paris is the capital of France."
    seen = upstream.seen[-1]
    assert seen.path == GEMINI + ":generateContent" and seen.headers["x-goog-api-key"] == "goog-key"
    assert "authorization" not in seen.headers

    upstream.script(GEMINI + ":streamGenerateContent", Reply(chunks=sse_chunks("google_stream_text.sse"),
                                                             headers=SSE))
    stream = await client.chat.completions.create(model="google-ai-studio/gemini-2.5-flash", messages=HI,
                                                  stream=True, stream_options={"include_usage": True})
    text, _, finish, usage = await collect(stream)
    assert text.startswith("The sky") and finish == "length" and usage.prompt_tokens == 8
    assert upstream.seen[-1].path == GEMINI + ":streamGenerateContent?alt=sse"

    upstream.script(GEMINI + ":generateContent", Reply(body=read("google_response_tools.json")))
    r = await client.chat.completions.create(model="google-ai-studio/gemini-2.5-flash", messages=HI,
                                             tools=TOOLS, tool_choice="required")
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"

    upstream.script(GEMINI + ":streamGenerateContent", Reply(chunks=sse_chunks("google_stream_tools.sse"),
                                                             headers=SSE))
    stream = await client.chat.completions.create(model="google-ai-studio/gemini-2.5-flash", messages=HI,
                                                  tools=TOOLS, stream=True)
    _, calls, finish, _ = await collect(stream)
    assert finish == "tool_calls" and calls[0]["name"] == "get_weather"

    answer = {"candidates": [{"content": {"parts": [{"text": '{"capital": "Paris"}'}], "role": "model"},
                              "finishReason": "STOP", "index": 0}],
              "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 6, "totalTokenCount": 11}}
    upstream.script(GEMINI + ":generateContent", Reply(body=_json.dumps(answer)))
    r = await client.chat.completions.create(model="google-ai-studio/gemini-2.5-flash", messages=HI,
                                             response_format={"type": "json_object"})
    assert _json.loads(r.choices[0].message.content) == {"capital": "Paris"}
    assert _json.loads(upstream.seen[-1].body)["generationConfig"]["responseMimeType"] == "application/json"
    await client.close()


async def test_sdk_against_workers_ai(upstream, gw):
    client = client_for(gw, "cf-token")
    model = "workers-ai/@cf/meta/llama-3.1-8b-instruct"
    upstream.script(WAI_PATH, Reply(body=read("workersai_response_text.json")))
    r = await client.chat.completions.create(model=model, messages=HI)
    assert "scarecrow" in r.choices[0].message.content and r.usage.total_tokens == 35
    assert upstream.seen[-1].headers["authorization"] == "Bearer cf-token"

    upstream.script(WAI_PATH, Reply(chunks=sse_chunks("workersai_stream_text.sse", 13), headers=SSE))
    text, _, finish, _ = await collect(await client.chat.completions.create(model=model, messages=HI,
                                                                            stream=True))
    assert text and finish == "stop"

    upstream.script(WAI_PATH, Reply(body=read("workersai_response_tools.json")))
    r = await client.chat.completions.create(model=model, messages=HI, tools=TOOLS)
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"

    upstream.script(WAI_PATH, Reply(chunks=sse_chunks("workersai_stream_tools.sse", 50), headers=SSE))
    _, calls, finish, _ = await collect(await client.chat.completions.create(model=model, messages=HI,
                                                                             tools=TOOLS, stream=True))
    assert finish == "tool_calls" and _json.loads(calls[0]["arguments"]) == {"location": "Paris, France"}

    reply = {"result": {"response": {"capital": "Paris"}, "usage": {"prompt_tokens": 3, "completion_tokens": 5,
                                                                    "total_tokens": 8}},
             "success": True, "errors": [], "messages": []}
    upstream.script(WAI_PATH, Reply(body=_json.dumps(reply)))
    r = await client.chat.completions.create(model=model, messages=HI, response_format={"type": "json_object"})
    assert _json.loads(r.choices[0].message.content) == {"capital": "Paris"}
    assert "response_format" in _json.loads(upstream.seen[-1].body)
    await client.close()


async def test_openai_wire_is_forwarded_untouched_but_for_the_model(upstream, gw):
    client = client_for(gw, "gsk-key")
    chunks = [b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"llama","choices":'
              b'[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n',
              b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"llama","choices":'
              b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n', b"data: [DONE]\n\n"]
    upstream.script("/openai/v1/chat/completions", Reply(chunks=chunks, headers=SSE))
    body = (b'{"model" : "groq/llama-3.1-8b-instant","messages":[{"role":"user","content":"groq/x"}],'
            b'"stream":true,"seed":7}')
    async with gw.post("/v1/acct/gw/compat/chat/completions", data=body,
                       headers={"Authorization": "Bearer gsk-key"}) as r:
        assert r.status == 200
        assert await r.read() == b"".join(chunks)  # relayed byte for byte
    seen = upstream.seen[-1]
    assert seen.path == "/openai/v1/chat/completions" and seen.headers["authorization"] == "Bearer gsk-key"
    assert seen.body == body.replace(b"groq/llama", b"llama")  # only the model changed

    upstream.script("/openai/v1/chat/completions", Reply(body=b'{"id":"c2","object":"chat.completion","created":1,'
                    b'"model":"llama","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},'
                    b'"finish_reason":"stop"}]}'))
    r = await client.chat.completions.create(model="groq/llama-3.1-8b-instant", messages=HI)
    assert r.choices[0].message.content == "ok"
    await client.close()


def test_model_rewrite_splices_bytes_or_serialises_once():
    raw = b'{"messages":[],"model":"openai/gpt-4o"}'
    doc = _json.loads(raw)
    assert rewrite_model(raw, doc, "openai/gpt-4o", "gpt-4o") == b'{"messages":[],"model":"gpt-4o"}'
    escaped = b'{"model":"openai\\/gpt-4o"}'
    assert _json.loads(rewrite_model(escaped, _json.loads(escaped), "openai/gpt-4o", "gpt-4o")) == {
        "model": "gpt-4o"}


async def test_embeddings_go_to_the_openai_route(upstream, gw):
    upstream.script("/v1/embeddings", Reply(body=b'{"object":"list","data":[{"object":"embedding","index":0,'
                                            b'"embedding":[0.5,0.25]}],"model":"text-embedding-3-small",'
                                            b'"usage":{"prompt_tokens":1,"total_tokens":1}}'))
    client = client_for(gw)
    r = await client.embeddings.create(model="openai/text-embedding-3-small", input="hi",
                                       encoding_format="float")
    assert r.data[0].embedding == [0.5, 0.25]
    assert _json.loads(upstream.seen[-1].body)["model"] == "text-embedding-3-small"

    upstream.script("/client/v4/accounts/acct/ai/v1/embeddings", Reply(body=b'{"object":"list","data":[],'
                    b'"model":"bge","usage":{"prompt_tokens":1,"total_tokens":1}}'))
    r = await client.embeddings.create(model="workers-ai/@cf/baai/bge-small-en-v1.5", input="hi",
                                       encoding_format="float")
    assert upstream.seen[-1].path == "/client/v4/accounts/acct/ai/v1/embeddings"
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model="anthropic/claude-sonnet-4-5", input="hi")
    await client.close()


async def test_models_list(gw):
    client = client_for(gw)
    models = [m async for m in client.models.list()]
    ids = {m.id for m in models}
    assert {"openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"} <= ids
    async with gw.request("GET", "/v1/acct/gw/compat/models") as r:
        doc = await r.json()
    entry = next(m for m in doc["data"] if m["id"] == "openai/gpt-4o-mini")
    price = gw.server.gateway.prices.lookup("openai", "gpt-4o-mini")
    assert entry["owned_by"] == "openai"
    assert (entry["pricing"]["input"], entry["pricing"]["output"]) == (price.input, price.output)
    await client.close()


async def test_every_listed_model_is_served_by_the_compat_route(upstream, make_gateway):
    """The list and the route agree: each listed model's request goes upstream (cohere's
    priced models are not listed: the compat endpoint has no route to cohere)."""
    priced = _json.loads((Path(aigw.__file__).parent / "data" / "prices.json").read_bytes())["providers"]
    configured = base_config(upstream)["providers"]
    gw = await make_gateway({"providers": {slug: {"base_url": upstream.url(f"/{slug}")}  # all on the mock
                                           for slug in priced if slug not in configured}})
    async with gw.request("GET", "/v1/acct/gw/compat/models") as r:
        ids = [m["id"] for m in (await r.json())["data"]]
    assert {i.split("/", 1)[0] for i in ids} >= {"openai", "anthropic", "google-ai-studio", "workers-ai", "groq"}
    assert not [i for i in ids if i.startswith("cohere/")]
    assert "cohere" in gw.server.gateway.prices.providers()  # priced, so it was listed before
    for n, model in enumerate(ids, 1):
        async with gw.post("/v1/acct/gw/compat/chat/completions",
                           data=_json.dumps({"model": model, "messages": HI})) as r:
            body = await r.read()
            assert r.status in (200, 502), (model, body)  # a translated provider's reply to the echo: 502
        assert len(upstream.seen) == n, model


@pytest.mark.parametrize("model, status, code", [
    ("gpt-4o-mini", 400, 2019), ("nope/some-model", 400, 2008), ("anthropic/", 400, 2019)])
async def test_bad_model_names(gw, model, status, code):
    async with gw.post("/v1/acct/gw/compat/chat/completions",
                       data=_json.dumps({"model": model, "messages": HI})) as r:
        assert r.status == status
        assert (await r.json())["error"][0]["code"] == code


@pytest.mark.parametrize("model", ["workers-ai/@cf/../../../accounts/other/ai/run/x", "workers-ai/@cf/a//b"])
async def test_models_that_would_leave_the_providers_path_are_refused_every_time(upstream, gw, model):
    """The path a translator builds from the model name is checked (and only paths that
    passed are remembered, so a refused one is refused again)."""
    for _ in range(2):
        async with gw.post("/v1/acct/gw/compat/chat/completions",
                           data=_json.dumps({"model": model, "messages": HI})) as r:
            assert r.status == 400
            assert (await r.json())["error"][0]["code"] == 2903
    assert upstream.seen == []


@pytest.mark.parametrize("model", [
    "google-ai-studio/gemini?key=abc", "google-ai-studio/gemini#x", "google-ai-studio/../../v1/files",
    "google-ai-studio/gemini-2.5-flash:countTokens", "google-ai-studio/models/gemini-2.5-flash/x",
    "google-ai-studio/gemini%3Fkey=abc", "google-ai-studio/gemini 2", "google-ai-studio/gemini\u00e9",
    "workers-ai/@cf/meta/llama?x=1", "workers-ai/@cf/meta/llama#x", "workers-ai/@cf/meta/%2e%2e/x",
    "workers-ai/@cf/meta/llama 3", "workers-ai/@cf/meta/llama\n", "workers-ai/@cf/meta/llama\u00a0"])
async def test_model_names_that_would_change_the_providers_path_are_refused(upstream, gw, model):
    """A translator puts the model in the upstream path: a name that would end it, start a
    query, be decoded upstream or (Gemini) span segments is a 400 naming `model`."""
    for stream in (False, True):
        async with gw.post("/v1/acct/gw/compat/chat/completions",
                           data=_json.dumps({"model": model, "messages": HI, "stream": stream})) as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "model"
    assert upstream.seen == []


async def test_real_model_names_reach_their_path(upstream, gw):
    upstream.script(GEMINI + ":generateContent", Reply(body=read("google_response_text.json")))
    upstream.script(WAI_PATH, Reply(body=read("workersai_response_text.json")))
    upstream.script("/client/v4/accounts/acct/ai/run/@hf/", Reply(body=read("workersai_response_text.json")))
    for model, path in (("google-ai-studio/gemini-2.5-flash", GEMINI + ":generateContent"),
                        ("google-ai-studio/models/gemini-2.5-flash", GEMINI + ":generateContent"),
                        ("workers-ai/@cf/meta/llama-3.1-8b-instruct", WAI_PATH),
                        ("workers-ai/@hf/thebloke/deepseek-coder-6.7b-instruct-awq",
                         "/client/v4/accounts/acct/ai/run/@hf/thebloke/deepseek-coder-6.7b-instruct-awq")):
        async with gw.post("/v1/acct/gw/compat/chat/completions",
                           data=_json.dumps({"model": model, "messages": HI})) as r:
            assert r.status == 200, model
        assert upstream.seen[-1].path == path


async def test_provider_error_keeps_status_in_openai_shape(upstream, gw):
    upstream.script("/v1/messages", Reply(status=529, body=read("anthropic_error_overloaded.json")))
    client = client_for(gw)
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=HI, stream=True)
    assert info.value.status_code == 529 and info.value.body["message"] == "Overloaded"

    upstream.script(WAI_PATH, Reply(status=429, body=read("workersai_error_capacity.json")))
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="workers-ai/@cf/meta/llama-3.1-8b-instruct", messages=HI)
    assert "Capacity" in info.value.body["message"]
    await client.close()


async def test_stream_cut_midway_ends_with_error_and_no_terminator(upstream, gw):
    upstream.script("/v1/messages", Reply(chunks=sse_chunks("anthropic_stream_text.sse", 40), headers=SSE,
                                          abort_after=15))
    body = _json.dumps({"model": "anthropic/claude-sonnet-4-5", "messages": HI, "stream": True})
    received = await read_cut(gw, body)
    assert b'"chat.completion.chunk"' in received
    assert received.rstrip().endswith(b"}") and b'"error"' in received.rsplit(b"data: ", 1)[1]
    assert b"[DONE]" not in received


async def test_streams_that_arrive_whole_keep_the_upstream_connection(upstream, gw):
    """A short stream can arrive in one piece with its head; the connection goes back to the
    pool once, and the next requests reuse it (regression: every such stream was released
    twice, which dropped the pooled connection, or cut another request's exchange on it)."""
    upstream.script("/v1/messages", Reply(body=read("anthropic_stream_text.sse"), headers=SSE))
    body = _json.dumps({"model": "anthropic/claude-sonnet-4-5", "messages": HI, "stream": True})
    for _ in range(5):
        async with gw.post("/v1/acct/gw/compat/chat/completions", data=body) as r:
            assert r.status == 200
            assert (await r.read()).endswith(b"data: [DONE]\n\n")
    assert len({s.peer for s in upstream.seen[-5:]}) == 1


async def test_a_whole_but_unfinished_stream_is_cut_not_completed(upstream, gw):
    """A stream that arrives in one piece without its end still reaches the client as a cut:
    the chunks it had, an error event, and no [DONE] or clean end."""
    cut = read("anthropic_stream_text.sse").split(b"event: message_delta")[0]
    upstream.script("/v1/messages", Reply(body=cut, headers=SSE))
    body = _json.dumps({"model": "anthropic/claude-sonnet-4-5", "messages": HI, "stream": True})
    received = await read_cut(gw, body)
    assert b'"content":"Hello"' in received
    assert b"ended before the reply was complete" in received.rsplit(b"data: ", 1)[1]
    assert b"[DONE]" not in received


async def test_stored_key_applies_without_client_key(upstream, make_gateway):
    gw = await make_gateway({"gateways": {"gw": {"authentication": True, "tokens": ["cf-gw-token-123456"],
                                                 "keys": {"anthropic": {"default": "sk-stored"}}}}})
    upstream.script("/v1/messages", Reply(body=read("anthropic_response_text.json")))
    async with gw.post("/v1/acct/gw/compat/chat/completions",
                       data=_json.dumps({"model": "anthropic/claude-sonnet-4-5", "messages": HI}),
                       headers={"cf-aig-authorization": "Bearer cf-gw-token-123456"}) as r:
        assert r.status == 200
    assert upstream.seen[-1].headers["x-api-key"] == "sk-stored"


async def test_translated_requests_carry_the_providers_configured_headers(upstream, make_gateway):
    gw = await make_gateway({"providers": {"anthropic": {
        "base_url": upstream.url(""),
        "headers": {"anthropic-beta": "extended-cache-ttl-2025-04-11", "anthropic-version": "2099-01-01"}}}})
    upstream.script("/v1/messages", Reply(body=read("anthropic_response_text.json")))
    async with gw.post("/v1/acct/gw/compat/chat/completions",
                       data=_json.dumps({"model": "anthropic/claude-sonnet-4-5", "messages": HI}),
                       headers={"Authorization": "Bearer sk-ant-client"}) as r:
        assert r.status == 200
    seen = upstream.seen[-1].headers
    assert seen["anthropic-beta"] == "extended-cache-ttl-2025-04-11"
    assert seen["anthropic-version"] == "2023-06-01"  # the translator speaks this version
    assert seen["x-api-key"] == "sk-ant-client" and "authorization" not in seen


async def test_universal_mixed_fallback_returns_openai_format(upstream, gw):
    upstream.script("/v1/messages", Reply(status=529, body=read("anthropic_error_overloaded.json")))
    upstream.script(GEMINI + ":streamGenerateContent", Reply(chunks=sse_chunks("google_stream_text.sse"),
                                                             headers=SSE))
    query = {"messages": HI, "stream": True}
    steps = [
        {"provider": "compat", "endpoint": "chat/completions", "headers": {"Authorization": "Bearer sk-ant"},
         "query": {**query, "model": "anthropic/claude-sonnet-4-5"}},
        {"provider": "compat", "endpoint": "chat/completions", "headers": {"Authorization": "Bearer goog"},
         "query": {**query, "model": "google-ai-studio/gemini-2.5-flash"}},
    ]
    async with gw.post("/v1/acct/gw", data=_json.dumps(steps)) as r:
        assert r.status == 200 and r.headers["cf-aig-step"] == "1"
        raw = await r.read()
    events = [e[6:] for e in raw.decode().split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [openai.types.chat.ChatCompletionChunk.model_validate(_json.loads(e)) for e in events[:-1]]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("The sky")
    assert upstream.seen[-2].headers["x-api-key"] == "sk-ant"
    assert upstream.seen[-1].headers["x-goog-api-key"] == "goog"

    # all steps fail: the last provider's status, in OpenAI's shape
    upstream.script(GEMINI + ":streamGenerateContent", Reply(status=400, body=read("google_error_invalid.json")))
    async with gw.post("/v1/acct/gw", data=_json.dumps(steps)) as r:
        assert r.status == 400 and r.headers["cf-aig-step"] == "1"
        assert (await r.json())["error"]["message"].startswith("API key not valid")


async def test_a_2xx_that_is_not_the_providers_reply_falls_back_to_the_next_step(upstream, gw):
    # Vetted before the commit point: an HTML page with a 200 from step 0 is a failed
    # attempt (like an in-band error), so the chain goes on to Gemini.
    upstream.script("/v1/messages", Reply(body=b"<html>captive portal</html>", headers={"Content-Type": "text/html"}))
    upstream.script(GEMINI + ":generateContent", Reply(body=read("google_response_text.json")))
    steps = [{"provider": "compat", "endpoint": "chat/completions", "headers": {"Authorization": "Bearer sk-ant"},
              "query": {"messages": HI, "model": "anthropic/claude-sonnet-4-5"}},
             {"provider": "compat", "endpoint": "chat/completions", "headers": {"Authorization": "Bearer goog"},
              "query": {"messages": HI, "model": "google-ai-studio/gemini-2.5-flash"}}]
    async with gw.post("/v1/acct/gw", data=_json.dumps(steps)) as r:
        assert r.status == 200 and r.headers["cf-aig-step"] == "1"
        reply = openai.types.chat.ChatCompletion.model_validate(await r.json())
    assert reply.choices[0].message.content == "Paris is the capital of France."
    assert [s.path.split("?")[0] for s in upstream.seen[-2:]] == ["/v1/messages", GEMINI + ":generateContent"]
    # the last step's such reply: 502 in OpenAI's shape, after its retries
    upstream.script(GEMINI + ":generateContent", Reply(body=b"<html>captive portal</html>",
                                                       headers={"Content-Type": "text/html"}))
    async with gw.post("/v1/acct/gw", data=_json.dumps(steps)) as r:
        assert r.status == 502 and r.headers["cf-aig-step"] == "1"
        assert "error" in await r.json()


async def test_universal_compat_step_validation(gw):
    step = {"provider": "compat", "endpoint": "v1/messages", "query": {"model": "anthropic/x", "messages": HI}}
    async with gw.post("/v1/acct/gw", data=_json.dumps([step])) as r:
        assert r.status == 400


@pytest.mark.parametrize("model, path", [
    ("anthropic/claude-sonnet-4-5", "/v1/messages"), ("google-ai-studio/gemini-2.5-flash", GEMINI),
    ("workers-ai/@cf/meta/llama-3.1-8b-instruct", WAI_PATH)])
async def test_a_2xx_that_is_not_the_providers_reply_is_a_502_not_an_empty_completion(upstream, gw, model, path):
    """An HTML page or a JSON value of another shape with a 2xx (a proxy in between, a
    changed API) must not become a successful empty completion."""
    for reply in (Reply(body=b"<html>oops</html>", headers={"Content-Type": "text/html"}),
                  Reply(body=b"{}"), Reply(body=b"[1,2]"), Reply(body=b'{"candidates":"x","content":5,"result":7}'),
                  Reply(status=203, body=b"not json at all")):
        upstream.script(path, reply)
        for stream in (False, True):  # a non-SSE reply to a stream request is read whole too
            async with gw.post("/v1/acct/gw/compat/chat/completions",
                               data=_json.dumps({"model": model, "messages": HI, "stream": stream})) as r:
                assert r.status == 502, reply.body
                err = (await r.json())["error"]
            assert err["type"] == "api_error" and "choices" not in err
            assert err["message"] == f"Upstream returned HTTP {reply.status}: {reply.body.decode()}"
    client = client_for(gw)
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(model=model, messages=HI)
    assert info.value.status_code == 502
    await client.close()


async def test_a_2xx_carrying_the_providers_error_object_is_a_502_with_its_message(upstream, gw):
    upstream.script(WAI_PATH, Reply(body=b'{"success":false,"errors":[{"code":3040,"message":"Capacity"}],'
                                         b'"result":null}'))
    async with gw.post("/v1/acct/gw/compat/chat/completions",
                       data=_json.dumps({"model": "workers-ai/@cf/meta/llama-3.1-8b-instruct", "messages": HI})) as r:
        assert r.status == 502
        assert (await r.json())["error"] == {"message": "Capacity", "type": "api_error", "param": None, "code": 3040}
    upstream.script("/v1/messages", Reply(body=read("anthropic_error_overloaded.json")))
    async with gw.post("/v1/acct/gw/compat/chat/completions",
                       data=_json.dumps({"model": "anthropic/claude-sonnet-4-5", "messages": HI})) as r:
        assert r.status == 502
        assert (await r.json())["error"]["message"] == "Overloaded"
