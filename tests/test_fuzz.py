"""Property-based fuzzing of the universal endpoint: body, step fields, headers and every
`cf-aig-*` value. Whatever comes in, the gateway answers in time with a documented status,
and every answer it writes itself is its envelope (or, for compat steps, OpenAI's error
shape): never a 500, never a traceback, never a hung connection.

The gateway and the mock upstream run on their own event loop in a thread, so hypothesis
drives plain blocking requests.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import threading

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aigw import _json
from aigw import config as config_mod
from aigw.compat import TRANSLATORS, CompatError
from aigw.server import Server

from conftest import MockUpstream, base_config

# hypothesis' failure report imports a module that warns; keep the real failure readable
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DOCUMENTED = {200, 400, 401, 404, 405, 408, 413, 429, 502, 503, 504, 508}
EXAMPLES = settings(max_examples=400, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROVIDERS = ["openai", "anthropic", "workers-ai", "groq", "google-ai-studio", "compat",
             "azure-openai", "aws-bedrock", "nope", ""]
CF_HEADERS = ["cf-aig-request-timeout", "cf-aig-max-attempts", "cf-aig-retry-delay",
              "cf-aig-backoff", "cf-aig-metadata", "cf-aig-collect-log",
              "cf-aig-collect-log-payload", "cf-aig-custom-cost", "cf-aig-event-id",
              "cf-aig-cache-ttl", "cf-aig-skip-cache", "cf-aig-cache-key", "cf-aig-byok-alias",
              "cf-aig-authorization", "cf-aig-step", "x-aigw-hop"]


class Running:
    """Mock upstream and gateway on a private loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        mock = MockUpstream()
        runner = web.ServerRunner(web.Server(mock.handle, access_log=None))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        mock.server = type("S", (), {"port": runner.addresses[0][1]})()
        raw = base_config(mock, {"server": {"max_body_bytes": 65536, "client_timeout": 5}})
        srv = Server(config_mod.from_dict(raw))
        await srv.start("127.0.0.1", 0)
        self.port = srv.port
        self._stop = asyncio.Event()
        self.ready.set()
        await self._stop.wait()
        await srv.stop()
        await runner.cleanup()

    def start(self) -> None:
        self.thread.start()
        assert self.ready.wait(10)

    def stop(self) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)


@pytest.fixture(scope="module")
def running():
    r = Running()
    r.start()
    yield r
    r.stop()


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def check_answer(status: int, body: bytes) -> None:
    assert status in DOCUMENTED, (status, body[:300])
    if status >= 400:
        doc = _json.loads(body)
        if "name" in doc:
            assert doc["name"] == "AiGatewayError" and doc["success"] is False
            assert doc["httpCode"] == status and isinstance(doc["error"][0]["code"], int)
        else:  # a compat step's refusal, in OpenAI's shape
            assert isinstance(doc["error"]["message"], str)
    assert b"Traceback" not in body


INT64 = st.integers(-2**63, 2**63 - 1)  # orjson's range (bigger numbers come as raw bytes)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1),
                      st.floats(allow_nan=False), st.text(max_size=30))
json_value = st.recursive(json_leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=10), kids, max_size=4)),
    max_leaves=12)
small_or_bad = st.one_of(st.integers(-5, 50), st.integers(10**6, 2**63 - 1), st.text(max_size=8),
                         st.floats(allow_nan=True), st.booleans(), st.none(),
                         st.lists(INT64, max_size=2))
header_values = st.one_of(st.text(max_size=40), INT64, st.none(), st.booleans(),
                          st.lists(st.text(max_size=5), max_size=2))
endpoints = st.one_of(
    st.sampled_from(["chat/completions", "v1/chat/completions", "v1/messages",
                     "@cf/meta/llama-3.1-8b-instruct", "chat/completions?api-version=1",
                     "../x", "%2e%2e/x", "//x", "http://x/", "res/dep/chat/completions"]),
    st.text(max_size=60))
step = st.fixed_dictionaries(
    {"provider": st.one_of(st.sampled_from(PROVIDERS), st.text(max_size=12), INT64),
     "endpoint": st.one_of(endpoints, INT64, st.none())},
    optional={
        "headers": st.one_of(st.dictionaries(st.text(max_size=20), header_values, max_size=4),
                             st.dictionaries(st.sampled_from(CF_HEADERS), header_values,
                                             max_size=3),
                             json_value),
        "query": st.one_of(json_value, st.fixed_dictionaries(
            {"model": st.one_of(st.text(max_size=30), st.sampled_from(
                ["openai/gpt-4o-mini", "anthropic/claude-x", "nope/x", "x"]))},
            optional={"messages": json_value, "stream": json_leaf})),
        "config": st.one_of(st.dictionaries(
            st.sampled_from(["requestTimeout", "maxAttempts", "retryDelay", "backoff", "x"]),
            small_or_bad, max_size=4), json_value),
        "authorization": header_values,
    })
bodies = st.one_of(
    st.lists(step, min_size=0, max_size=5).map(_json.dumps),
    step.map(_json.dumps),
    json_value.map(_json.dumps),
    st.binary(max_size=200),
    st.sampled_from([  # numbers orjson cannot produce, and deep nesting
        b'[{"provider":"openai","endpoint":"x","config":{"requestTimeout":1e400}}]',
        b'[{"provider":"openai","endpoint":"x","config":{"maxAttempts":99999999999999999999}}]',
        b'[{"provider":"openai","endpoint":"x","query":' + b"[" * 5000 + b"]" * 5000 + b"}]",
        rb'[{"provider":"openai","endpoint":"x","headers":{"a":"\ud800"}}]',
        b'\xef\xbb\xbf[{"provider":"openai","endpoint":"x"}]',
    ]),
)
# Header values a client library can send at all: printable latin-1, no CR/LF.
safe_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                  blacklist_characters="\x7f"), max_size=40)
cf_values = st.one_of(safe_text, st.integers(-10**6, 10**6).map(str),
                      st.sampled_from(["0", "1", "5", "6", "5000", "true", "false",
                                       "constant", "linear", "exponential", "{}", '{"a":1}',
                                       '{"a":{"b":1}}', "[]", "1e3", "-1", " 1 "]))


@EXAMPLES
@given(body=bodies, headers=st.dictionaries(st.sampled_from(CF_HEADERS), cf_values,
                                            max_size=5))
def test_universal_endpoint_answers_every_input(running, body, headers):
    status, reply = post(running.port, "/v1/acct/gw", body,
                         {"Content-Type": "application/json", **headers})
    check_answer(status, reply)


@EXAMPLES
@given(path=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                  blacklist_characters="?#"), max_size=60),
       query=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                   blacklist_characters="#"), max_size=40),
       headers=st.dictionaries(st.sampled_from(CF_HEADERS + ["authorization", "x-api-key",
                                                             "content-type", "accept"]),
                               cf_values, max_size=5))
def test_pass_through_answers_every_path_and_header(running, path, query, headers):
    target = f"/v1/acct/gw/openai/{path}" + (f"?{query}" if query else "")
    try:
        status, reply = post(running.port, target, b"{}", headers)
    except http.client.InvalidURL:
        return  # the client refuses to send it; nothing to test
    if status == 400 and not reply.startswith(b"{"):
        return  # the HTTP parser's own 400 for a request line it cannot read
    check_answer(status, reply)


def test_fuzzing_logged_no_internal_error(running, caplog):
    caplog.set_level(logging.ERROR, logger="aigw")
    status, reply = post(running.port, "/v1/acct/gw", b"[{}]", {})
    check_answer(status, reply)
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]


# The compat translators, fed request bodies whose every field may be any JSON value (and
# often the right shape, so the walk gets deep): the only exception is CompatError, the
# compat endpoint's 400.
def _maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(strategy, json_value)


_fn = _maybe(st.fixed_dictionaries({}, optional={
    "name": _maybe(st.just("f")), "description": json_value, "parameters": json_value,
    "arguments": _maybe(st.sampled_from(['{"a": 1}', "", "not json", "[1]"]))}))
_tool = _maybe(st.fixed_dictionaries({"type": _maybe(st.just("function"))}, optional={"function": _fn}))
_call = _maybe(st.fixed_dictionaries({"id": _maybe(st.just("c1")), "type": _maybe(st.just("function"))},
                                     optional={"function": _fn}))
_url = _maybe(st.sampled_from(["data:image/png;base64,AAAA", "data:image/png,AAAA", "https://x.test/a.png",
                               "https://generativelanguage.googleapis.com/v1beta/files/f", "ftp://x", ""]))
_part = _maybe(st.fixed_dictionaries(
    {"type": _maybe(st.sampled_from(["text", "image_url", "input_audio"]))},
    optional={"text": json_value, "image_url": _maybe(st.fixed_dictionaries({}, optional={"url": _url}))}))
_message = _maybe(st.fixed_dictionaries(
    {"role": _maybe(st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"]))},
    optional={"content": st.one_of(json_value, st.lists(_part, max_size=3)),
              "tool_calls": st.one_of(json_value, st.lists(_call, max_size=2)),
              "tool_call_id": _maybe(st.just("c1")), "name": json_value}))
_format = _maybe(st.fixed_dictionaries(
    {"type": _maybe(st.sampled_from(["text", "json_object", "json_schema"]))},
    optional={"json_schema": _maybe(st.fixed_dictionaries({}, optional={"schema": json_value}))}))
_choice = _maybe(st.one_of(st.sampled_from(["auto", "none", "required"]), st.fixed_dictionaries(
    {"type": _maybe(st.just("function"))}, optional={"function": _maybe(st.fixed_dictionaries(
        {"name": _maybe(st.just("f"))}))})))
compat_bodies = st.fixed_dictionaries(
    {"messages": st.one_of(json_value, st.lists(_message, max_size=4))},
    optional={"response_format": _format, "tools": st.one_of(json_value, st.lists(_tool, max_size=2)),
              "tool_choice": _choice, "stop": _maybe(st.lists(st.text(max_size=3), max_size=2)),
              "stream_options": json_value, "max_tokens": json_value, "max_completion_tokens": json_value,
              "temperature": json_value, "top_p": json_value, "n": json_value, "seed": json_value,
              "parallel_tool_calls": json_value, "user": json_value, "metadata": json_value,
              "logprobs": json_value, "presence_penalty": json_value, "nope": json_value})
compat_models = st.one_of(st.sampled_from(["claude-sonnet-4-5", "gemini-2.5-flash", "models/gemini-2.5-flash",
                                           "@cf/meta/llama-3.1-8b-instruct"]), st.text(max_size=20))


@EXAMPLES
@given(body=compat_bodies, model=compat_models, stream=st.booleans())
def test_compat_translators_refuse_every_malformed_request_with_a_400(body, model, stream):
    for translator in TRANSLATORS.values():
        try:
            path, headers, out = translator.build_request(body, model, stream)
        except CompatError as exc:
            assert exc.status == 400 and exc.param, exc
            assert _json.loads(exc.openai_body())["error"]["param"] == exc.param
            continue
        assert isinstance(path, str) and isinstance(headers, dict)
        assert isinstance(_json.loads(out), dict)


# Their replies: a 2xx body of any JSON shape (often close to the provider's) is translated
# or, when it is not the provider's reply, None (the relay answers 502); nothing raises.
_reply_part = _maybe(st.fixed_dictionaries({}, optional={
    "type": _maybe(st.sampled_from(["text", "tool_use"])), "text": json_value, "thought": json_value,
    "functionCall": _maybe(st.fixed_dictionaries({}, optional={"name": json_value, "args": json_value})),
    "input": json_value, "id": json_value, "name": json_value}))
_reply_parts = st.one_of(json_value, st.lists(_reply_part, max_size=3))
_counts = _maybe(st.dictionaries(st.sampled_from(
    ["input_tokens", "output_tokens", "cache_read_input_tokens", "promptTokenCount", "candidatesTokenCount",
     "thoughtsTokenCount", "totalTokenCount", "prompt_tokens", "completion_tokens", "total_tokens"]),
    json_value, max_size=4))
_choice_reply = _maybe(st.fixed_dictionaries({}, optional={
    "message": _maybe(st.fixed_dictionaries({}, optional={"content": json_value, "tool_calls": json_value})),
    "finish_reason": json_value, "index": json_value}))
compat_replies = st.one_of(
    json_value,
    st.fixed_dictionaries({}, optional={"type": json_value, "content": _reply_parts, "stop_reason": json_value,
                                        "usage": _counts}),
    st.fixed_dictionaries({}, optional={
        "candidates": st.one_of(json_value, st.lists(_maybe(st.fixed_dictionaries({}, optional={
            "content": _maybe(st.fixed_dictionaries({}, optional={"parts": _reply_parts})),
            "finishReason": json_value, "index": json_value})), max_size=2)),
        "promptFeedback": json_value, "usageMetadata": _counts}),
    st.fixed_dictionaries({}, optional={"success": json_value, "result": _maybe(st.fixed_dictionaries({}, optional={
        "response": json_value, "tool_calls": st.one_of(json_value, st.lists(_reply_part, max_size=2)),
        "choices": st.one_of(json_value, st.lists(_choice_reply, max_size=2)), "usage": _counts}))}),
).map(_json.dumps)


@EXAMPLES
@given(body=st.one_of(compat_replies, st.binary(max_size=40)))
def test_compat_translators_answer_every_2xx_body_or_refuse_it(body):
    for translator in TRANSLATORS.values():
        out = translator.translate_response(200, body, "m")
        if out is not None:
            doc = _json.loads(out)
            assert doc["object"] == "chat.completion" and isinstance(doc["choices"], list)
        else:
            assert isinstance(_json.loads(translator.translate_error(200, body))["error"]["message"], str)
