"""The benchmark scenarios and targets, as data (bench/README.md explains each one)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 32}
CHAT_STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
# The same question as CHAT in Anthropic's shape, and in OpenAI's shape addressed to Anthropic.
MESSAGES = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 32}
MESSAGES_STREAM = {**MESSAGES, "stream": True}
COMPAT = {**CHAT, "model": "anthropic/claude-sonnet-4-5"}
COMPAT_STREAM = {**COMPAT, "stream": True, "stream_options": {"include_usage": True}}
# The provider key every benchmark client sends, shaped like a real one (OpenAI's project
# keys: "sk-proj-" and ~150 random letters, digits, "-" and "_"; fixed here so runs repeat).
# A real key matters to what logging costs: the log writer searches every stored body for
# it, by memchr on its rarest byte; a key of common letters only (the "bench" used before
# 2026-11-26, whose letters are in every JSON event) falls back to a plain search, and made
# redacting a 4 KB stream head take twice as long (4.7 µs instead of 2.3).
API_KEY = "sk-proj-bX3qN8vJ2kWz7RtY5mLp0HcQ9sDf4GaE6uKo1VnT8yZi2OwBx7JrM3eUh5PlS0dC"
AUTHORIZATION = f"Bearer {API_KEY}"
STEP_HEADERS = {"authorization": AUTHORIZATION, "content-type": "application/json"}


@dataclass(frozen=True, slots=True)
class Scenario:
    """One measured situation; `route` picks the URL, `mode` the tool."""

    name: str
    route: str  # "chat" (pass-through), "universal", "anthropic" (pass-through) or "compat"
    body: bytes
    direct_body: bytes  # what the direct baseline sends (direct has no universal endpoint)
    connections: int
    mode: str  # "load" (throughput tool + optional TTFB) or "paced" (sequential timing)
    stream: bool = False
    headers: tuple[tuple[str, str], ...] = ()


def _universal(*failing_first: bool) -> bytes:
    steps = []
    for fail in failing_first:
        headers = {**STEP_HEADERS, "x-mock-status": "503"} if fail else STEP_HEADERS
        steps.append({"provider": "openai", "endpoint": "chat/completions", "headers": headers, "query": CHAT})
    return orjson.dumps(steps)


_JSON = orjson.dumps(CHAT)
_SSE = orjson.dumps(CHAT_STREAM)
_CHUNKS = (("x-mock-chunks", "20"),)

_MSG = orjson.dumps(MESSAGES)
_MSG_SSE = orjson.dumps(MESSAGES_STREAM)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("json_c1", "chat", _JSON, _JSON, 1, "load"),
    Scenario("json_c64", "chat", _JSON, _JSON, 64, "load"),
    Scenario("sse_c1", "chat", _SSE, _SSE, 1, "load", stream=True, headers=_CHUNKS),
    Scenario("sse_c32", "chat", _SSE, _SSE, 32, "load", stream=True, headers=_CHUNKS),
    Scenario("sse_paced", "chat", _SSE, _SSE, 1, "paced", stream=True,
             headers=(*_CHUNKS, ("x-mock-chunk-delay-ms", "10"))),
    Scenario("universal_1", "universal", _universal(False), _JSON, 16, "load"),
    Scenario("universal_fallback", "universal", _universal(True, False), _JSON, 16, "load"),
    # Translation cost: compat (OpenAI in, Anthropic upstream, translated back) against the
    # Anthropic pass-through route on the same mock reply.
    Scenario("anthropic_json_c32", "anthropic", _MSG, _MSG, 32, "load"),
    Scenario("compat_json_c32", "compat", orjson.dumps(COMPAT), _MSG, 32, "load"),
    Scenario("anthropic_sse_c32", "anthropic", _MSG_SSE, _MSG_SSE, 32, "load", stream=True, headers=_CHUNKS),
    Scenario("compat_sse_c32", "compat", orjson.dumps(COMPAT_STREAM), _MSG_SSE, 32, "load", stream=True,
             headers=_CHUNKS),
)

# Paths under a Cloudflare-style gateway base, and the mock's own path, per non-chat route.
_ROUTE_PATHS = {"anthropic": "/anthropic/v1/messages", "compat": "/compat/chat/completions"}
_DIRECT_PATHS = {"anthropic": "/v1/messages", "compat": "/v1/messages"}


@dataclass(slots=True)
class Target:
    """Where requests go: the mock directly, aigw, or another gateway."""

    name: str
    chat_url: str
    universal_url: str | None
    pid: int | None = None

    def url_for(self, sc: Scenario) -> str | None:
        """The URL a scenario uses on this target; None when the target cannot run it."""
        if self.name == "direct" and sc.route in _DIRECT_PATHS:
            return self.chat_url.removesuffix("/v1/chat/completions") + _DIRECT_PATHS[sc.route]
        if self.name == "direct" or sc.route == "chat":
            return self.chat_url
        if sc.route in _ROUTE_PATHS:
            return None if self.universal_url is None else self.universal_url + _ROUTE_PATHS[sc.route]
        return self.universal_url

    def body_for(self, sc: Scenario) -> bytes:
        """The direct baseline sends the plain chat request in place of the universal array."""
        return sc.direct_body if self.name == "direct" else sc.body


def parse_other(spec: str, pid: int | None = None) -> Target:
    """`NAME=URL`: a Cloudflare-style base or a template with {provider} and {endpoint}."""
    name, sep, url = spec.partition("=")
    if not sep or not name or not url.startswith("http://"):
        raise ValueError(f"--other wants NAME=http://..., got {spec!r}")
    if "{" not in url:
        base = url.rstrip("/")
        return Target(name, f"{base}/openai/chat/completions", base, pid)
    chat = url.format(provider="openai", endpoint="chat/completions")
    suffix = "/{provider}/{endpoint}"
    universal = url[: -len(suffix)] if url.endswith(suffix) else None
    return Target(name, chat, universal, pid)

# Live streams: the same replies with the events 1 ms apart, so each arrives in a chunk of
# its own, as a model writes them (the scenarios above get the whole stream in one read).
# Not in run.py's set; bench/overhead.py's optional `*_live` comparisons use them.
_LIVE = (*_CHUNKS, ("x-mock-chunk-delay-ms", "1"))
LIVE_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("sse_live_c32", "chat", _SSE, _SSE, 32, "load", stream=True, headers=_LIVE),
    Scenario("anthropic_sse_live_c32", "anthropic", _MSG_SSE, _MSG_SSE, 32, "load", stream=True,
             headers=_LIVE),
    Scenario("compat_sse_live_c32", "compat", orjson.dumps(COMPAT_STREAM), _MSG_SSE, 32, "load",
             stream=True, headers=_LIVE),
)
