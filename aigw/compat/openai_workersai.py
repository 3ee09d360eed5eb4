"""OpenAI chat completions <-> Workers AI native `ai/run/{model}` (JSON and SSE).

| OpenAI request key | Workers AI | Notes |
|---|---|---|
| messages (system / user / assistant / tool) | `messages` | text-only content lists are joined into a string, which every model accepts |
| image_url data URL | kept as an `image_url` part | http(s) links are refused: `ai/run` does not fetch them |
| max_completion_tokens, max_tokens | `max_tokens` | Workers AI's own default is small (256 on most models); no default is added |
| temperature, top_p, seed, presence_penalty, frequency_penalty | same names | |
| response_format json_object / json_schema | `response_format` `json_schema` (the bare schema) | |
| tools | `tools` (OpenAI form, accepted as is) | |
| tool_choice auto / none | dropped / tools omitted | `required` and named functions are refused |
| user, metadata, store, service_tier, prompt_cache_key, safety_identifier, parallel_tool_calls | dropped | |
| n > 1, stop, logprobs, top_logprobs, logit_bias, audio, modalities, prediction, reasoning_effort, verbosity, web_search_options, functions | refused (400) | `ai/run` has no stop sequences |

Legacy replies carry no finish reason: the translator reports `tool_calls` when the model
called a tool and `stop` otherwise (a reply cut by `max_tokens` cannot be told apart).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from aigw import _json
from aigw.compat import _openai as oa
from aigw.compat._openai import DROPPED, MAPPED, REFUSED, CompatError
from aigw.compat.sse import SSEEvent

PROVIDER = "workers-ai"
HEADERS: dict[str, str] = {}  # what build_request returns: read-only

POLICY = {
    **dict.fromkeys(("model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
                     "temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "tools",
                     "tool_choice", "response_format"), MAPPED),
    **dict.fromkeys(("user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier",
                     "parallel_tool_calls"), DROPPED),
    **dict.fromkeys(("n", "stop", "logprobs", "top_logprobs", "logit_bias", "audio", "modalities", "prediction",
                     "reasoning_effort", "verbosity", "web_search_options", "functions", "function_call"),
                    REFUSED),
}

_NAMES: set[str] = set()  # model names that passed oa.path_model
_SAME = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")


def build_request(body: dict[str, Any], model: str, stream: bool) -> tuple[str, dict[str, str], bytes]:
    """OpenAI request dict -> (`{model}` under ai/run, headers, Workers AI body bytes)."""
    oa.check_params(body, POLICY, PROVIDER)
    out: dict[str, Any] = {"messages": [_message(m, i) for i, m in enumerate(
        oa.array(body.get("messages"), "messages"))]}
    limit = oa.max_tokens(body)
    if limit is not None:
        out["max_tokens"] = limit
    for key in _SAME:
        if body.get(key) is not None:
            out[key] = body[key]
    fmt = _response_format(body.get("response_format"))
    if fmt is not None:
        out["response_format"] = fmt
    choice = body.get("tool_choice")
    if choice not in (None, "auto", "none"):
        raise CompatError(f"tool_choice {choice!r} is not supported by workers-ai", param="tool_choice")
    tools = oa.array(body.get("tools"), "tools")
    if tools and choice != "none":  # "none" means: the model sees no tools
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise oa.type_error(f"tools[{i}]", "an object")
            if tool.get("type") != "function":
                raise CompatError(f"tool type {tool.get('type')!r} is not supported by workers-ai",
                                  param=f"tools[{i}]")
            if not isinstance(tool.get("function"), dict):
                raise oa.type_error(f"tools[{i}].function", "an object")
        out["tools"] = tools
    if stream:
        out["stream"] = True
    return oa.path_model(model.lstrip("/"), _NAMES), HEADERS, _json.dumps(out)


def _message(msg: Any, i: int) -> dict[str, Any]:
    if not isinstance(msg, dict):
        raise oa.type_error(f"messages[{i}]", "an object")
    role = msg.get("role")
    if role == "developer":
        role = "system"
    if role not in ("system", "user", "assistant", "tool"):
        raise CompatError(f"message role {role!r} is not supported by workers-ai", param=f"messages[{i}].role")
    out: dict[str, Any] = {"role": role, "content": _content(msg.get("content"), i)}
    if msg.get("tool_calls"):
        out["tool_calls"] = oa.tool_calls(msg["tool_calls"], i)
    if msg.get("tool_call_id"):
        out["tool_call_id"] = msg["tool_call_id"]
    return out


def _content(content: Any, i: int) -> Any:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise oa.content_error(i)
    texts: list[str] | None = []  # None: not text only
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise oa.content_error(i, j)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text", "")
            if not isinstance(text, str):
                raise oa.text_error(i, j)
            if texts is not None:
                texts.append(text)
        elif kind == "image_url":
            texts = None
            if oa.parse_data_url(oa.image_url(part, i, j), f"messages[{i}].content[{j}]") is None:
                raise CompatError("workers-ai accepts images as base64 data URLs only",
                                  param=f"messages[{i}].content[{j}]")
        else:
            raise CompatError(f"content part {kind!r} is not supported by workers-ai",
                              param=f"messages[{i}].content[{j}]")
    return "".join(texts) if texts is not None else content


def _response_format(value: Any) -> dict[str, Any] | None:
    fmt = oa.obj(value, "response_format")
    kind = fmt.get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_schema", "json_schema": {"type": "object"}}
    if kind == "json_schema":
        # Workers AI wants the schema itself where OpenAI wraps it in {name, schema, strict}.
        schema = oa.obj(fmt.get("json_schema"), "response_format.json_schema").get("schema") or {"type": "object"}
        return {"type": "json_schema", "json_schema": schema}
    raise CompatError(f"response_format {kind!r} is not supported by workers-ai", param="response_format")


def _calls(raw: list[dict[str, Any]], mint: str) -> list[dict[str, Any]]:
    calls = []
    for n, call in enumerate(raw):
        fn = call.get("function") or call  # OpenAI form nests under "function"; legacy is flat
        args = fn.get("arguments")
        calls.append({"id": call.get("id") or f"{mint}_{n}", "type": "function",
                      "function": {"name": fn.get("name", ""),
                                   "arguments": args if isinstance(args, str) else _json.dumps(args or {}).decode()}})
    return calls


def _usage(raw: Any) -> dict[str, Any] | None:
    if not raw or not isinstance(raw, dict):
        return None
    return oa.usage(oa.count(raw.get("prompt_tokens")), oa.count(raw.get("completion_tokens")),
                    oa.count_or_none(raw.get("total_tokens")))


def _call_list(raw: Any) -> list[dict[str, Any]] | None:
    """A reply's `tool_calls` (null: none); None if they are not call objects."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        return None
    for call in raw:
        if not isinstance(call, dict) or not isinstance(call.get("function", {}), dict):
            return None
    return raw


def translate_response(status: int, body: bytes, model: str, *, clock: oa.Clock = time.time,
                       new_id: oa.IdFactory = oa.new_completion_id,
                       on_parsed: Callable[[dict[str, Any]], None] | None = None) -> bytes | None:
    """A complete `ai/run` reply (the Cloudflare v4 envelope) -> OpenAI chat.completion JSON
    bytes; None if the body is not a reply (no `response`, `tool_calls` or `choices`, or
    `success: false`), which the relay answers as an error."""
    data = oa.loads_object(body)
    if on_parsed is not None and data is not None:  # the log capture reads usage from it
        on_parsed(data)
    if data is None or data.get("success") is False:
        return None
    inner = data.get("result")
    result: dict[str, Any] = inner if isinstance(inner, dict) else data
    cid = new_id()
    if "choices" in result:  # models served through an OpenAI-shaped runtime
        if not isinstance(result["choices"], list):
            return None
        choices = []
        for pos, ch in enumerate(result["choices"]):
            msg = (ch.get("message") or {}) if isinstance(ch, dict) else None
            if not isinstance(msg, dict):
                return None
            raw = _call_list(msg.get("tool_calls"))
            if raw is None:
                return None
            calls = _calls(raw, f"call_{cid[-12:]}_{pos}")
            choices.append(oa.message_choice(ch.get("index", pos), msg.get("content"), calls,
                                             ch.get("finish_reason") or ("tool_calls" if calls else "stop")))
        return oa.completion(cid, int(clock()), model, choices, _usage(result.get("usage")) or oa.usage(0, 0))
    if "response" not in result and "tool_calls" not in result:
        return None
    text = result.get("response")
    if text is not None and not isinstance(text, str):  # JSON mode returns the object itself
        text = _json.dumps(text).decode()
    raw = _call_list(result.get("tool_calls"))
    if raw is None:
        return None
    calls = _calls(raw, f"call_{cid[-12:]}")
    content = text if text or not calls else None
    choice = oa.message_choice(0, content if content is not None or calls else "", calls,
                               "tool_calls" if calls else "stop")
    return oa.completion(cid, int(clock()), model, [choice], _usage(result.get("usage")) or oa.usage(0, 0))


def translate_error(status: int, body: bytes) -> bytes:
    """A Cloudflare v4 error envelope (or anything else) -> OpenAI error JSON bytes."""
    parsed = oa.loads_object(body)
    errors = parsed.get("errors") if parsed else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return oa.error_body(first.get("message") or oa.raw_error_message(status, body), oa.error_type(status),
                             None, first.get("code"))
    return oa.error_body(oa.raw_error_message(status, body), oa.error_type(status))


class StreamTranslator(oa.ChunkStream):
    """`ai/run` SSE (`{"response": ...}` events, then `[DONE]`) -> OpenAI chunks."""

    provider = PROVIDER

    def __init__(self, model: str, include_usage: bool, *, clock: oa.Clock = time.time,
                 new_id: oa.IdFactory = oa.new_completion_id) -> None:
        super().__init__(model, include_usage, clock=clock, new_id=new_id)
        self._started = False
        self._calls = 0

    def _event(self, ev: SSEEvent) -> bytes:
        if ev.data.strip() == b"[DONE]":
            if self.finished or self.failed:
                return b""
            self.finished = True
            return self._start() + self.chunk({}, finish="tool_calls" if self._calls else "stop")
        data = oa.loads_object(ev.data)
        if data is None:
            return b""
        if self.on_usage is not None:  # usage comes on the last event, in either shape
            self.on_usage(data)
        if data.get("success") is False or (data.get("errors") and "response" not in data):
            err = (data.get("errors") or [{}])[0]
            return self.error_event(err.get("message", "upstream error"), "api_error", err.get("code"))
        if data.get("usage"):
            self.usage = _usage(data["usage"])
        if isinstance(data.get("choices"), list):
            return self._openai_chunk(data)
        out = [self._start()]
        if data.get("response"):
            out.append(self.content_chunk(data["response"]))
        for call in data.get("tool_calls") or []:
            out.append(self._tool_delta(call))
        return b"".join(out)

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self.chunk({"role": "assistant", "content": ""})

    def _tool_delta(self, call: dict[str, Any]) -> bytes:
        if "function" in call:  # OpenAI-style delta: pass its pieces on under our index space
            fn = call["function"] or {}
            delta: dict[str, Any] = {"index": call.get("index", self._calls), "function": {}}
            if call.get("id"):
                delta.update(id=call["id"], type="function")
            if fn.get("name"):
                delta["function"]["name"] = fn["name"]
            delta["function"]["arguments"] = _args(fn.get("arguments"))
            self._calls = max(self._calls, delta["index"] + 1)
            return self.chunk({"tool_calls": [delta]})
        whole = _calls([call], f"call_{self.id[-12:]}_{self._calls}")[0]  # legacy: the call arrives whole
        self._calls += 1
        return self.chunk({"tool_calls": [{"index": self._calls - 1, **whole}]})

    def _openai_chunk(self, data: dict[str, Any]) -> bytes:
        out = [self._start()]
        for ch in data["choices"]:
            delta = {k: v for k, v in (ch.get("delta") or {}).items() if k in ("content", "tool_calls") and v}
            if delta.get("tool_calls"):
                self._calls = max(self._calls, 1 + max(c.get("index", 0) for c in delta["tool_calls"]))
            if ch.get("finish_reason"):
                self.finished = True
            if delta or ch.get("finish_reason"):
                out.append(self.chunk(delta, ch.get("index", 0), ch.get("finish_reason")))
        return b"".join(out)


def _args(arguments: Any) -> str:
    """Streamed tool-call arguments as the string OpenAI deltas carry."""
    if arguments is None:
        return ""
    return arguments if isinstance(arguments, str) else _json.dumps(arguments).decode()
