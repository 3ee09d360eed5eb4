"""OpenAI chat completions <-> Anthropic Messages (`v1/messages`).

| OpenAI request key | Anthropic | Notes |
|---|---|---|
| system / developer messages | `system` text blocks | every one is hoisted, in order |
| user / assistant / tool messages | `messages` | tool results become `tool_result` blocks in a user turn |
| image_url data URL / http(s) | `image` with `base64` / `url` source | |
| max_completion_tokens, max_tokens | `max_tokens` | required upstream; defaults to 4096 |
| temperature, top_p | same | Anthropic rejects temperature > 1 itself |
| stop | `stop_sequences` | |
| tools, tool_choice, parallel_tool_calls | `tools`, `tool_choice`, `disable_parallel_tool_use` | |
| user | `metadata.user_id` | |
| presence_penalty, frequency_penalty, seed, metadata, store, service_tier, prompt_cache_key, safety_identifier | dropped | sampling hints or OpenAI-side bookkeeping |
| n > 1, logprobs, top_logprobs, logit_bias, response_format json, audio, modalities, prediction, reasoning_effort, verbosity, web_search_options, functions | refused (400) | would change what the reply means |
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from aigw import _json
from aigw.compat import _openai as oa
from aigw.compat._openai import DROPPED, MAPPED, REFUSED, CompatError
from aigw.compat.sse import SSEEvent

PROVIDER = "anthropic"
DEFAULT_MAX_TOKENS = 4096
HEADERS = {"anthropic-version": "2023-06-01"}  # what build_request returns: read-only

POLICY = {
    **dict.fromkeys(("model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
                     "temperature", "top_p", "stop", "tools", "tool_choice", "parallel_tool_calls", "user",
                     "response_format"), MAPPED),
    **dict.fromkeys(("presence_penalty", "frequency_penalty", "seed", "metadata", "store", "service_tier",
                     "prompt_cache_key", "safety_identifier"), DROPPED),
    **dict.fromkeys(("n", "logprobs", "top_logprobs", "logit_bias", "audio", "modalities", "prediction",
                     "reasoning_effort", "verbosity", "web_search_options", "functions", "function_call"),
                    REFUSED),
}

_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
           "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter"}


def build_request(body: dict[str, Any], model: str, stream: bool) -> tuple[str, dict[str, str], bytes]:
    """OpenAI request dict -> (`v1/messages`, headers, Anthropic body bytes)."""
    oa.check_params(body, POLICY, PROVIDER)
    fmt = oa.obj(body.get("response_format"), "response_format").get("type", "text")
    if fmt != "text":
        raise CompatError(f"response_format {fmt!r} is not supported by anthropic", param="response_format")
    system, messages = _messages(oa.array(body.get("messages"), "messages"))
    out: dict[str, Any] = {"model": model, "messages": messages}
    if system:
        out["system"] = system
    limit = oa.max_tokens(body)
    out["max_tokens"] = DEFAULT_MAX_TOKENS if limit is None else limit
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = oa.stop_list(body)
    if stop:
        out["stop_sequences"] = stop
    tools = oa.array(body.get("tools"), "tools")
    if tools:
        out["tools"] = [_tool(t, i) for i, t in enumerate(tools)]
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None:
        out["tool_choice"] = choice
    if body.get("user"):
        out["metadata"] = {"user_id": body["user"]}
    if stream:
        out["stream"] = True
    return "v1/messages", HEADERS, _json.dumps(out)


def _messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise oa.type_error(f"messages[{i}]", "an object")
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            text = oa.text_of(content, i)
            if text:
                system.append({"type": "text", "text": text})
            continue
        if role == "user":
            blocks = _user_blocks(content, i)
        elif role == "assistant":
            blocks = _assistant_blocks(msg, i)
        elif role == "tool":
            role = "user"
            blocks = [{"type": "tool_result", "tool_use_id": msg.get("tool_call_id", ""),
                       "content": oa.text_of(content, i)}]
        else:
            raise CompatError(f"message role {role!r} is not supported by anthropic", param=f"messages[{i}].role")
        if not blocks:
            continue  # Anthropic rejects empty turns; an empty message carries nothing.
        # Anthropic wants alternating turns: tool results and the next user text share one.
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return system, out


def _user_blocks(content: Any, i: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise oa.content_error(i)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise oa.content_error(i, j)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if text:
                if not isinstance(text, str):
                    raise oa.text_error(i, j)
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image(oa.image_url(part, i, j), f"messages[{i}].content[{j}]"))
        else:
            raise CompatError(f"content part {kind!r} is not supported by anthropic",
                              param=f"messages[{i}].content[{j}]")
    return blocks


def _image(url: str, param: str) -> dict[str, Any]:
    data = oa.parse_data_url(url, param)
    if data is not None:
        return {"type": "image", "source": {"type": "base64", "media_type": data[0], "data": data[1]}}
    if oa.is_http_url(url):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise CompatError("image_url.url must be a data URL or an http(s) link", param=param)


def _assistant_blocks(msg: dict[str, Any], i: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = oa.text_of(msg.get("content"), i)
    if text:
        blocks.append({"type": "text", "text": text})
    calls = msg.get("tool_calls")
    if calls is None:
        return blocks
    for j, call in enumerate(oa.tool_calls(calls, i)):
        fn = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""),
                       "input": oa.parse_arguments(fn.get("arguments", ""), i, j)})
    return blocks


def _tool(tool: Any, i: int) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise oa.type_error(f"tools[{i}]", "an object")
    if tool.get("type") != "function":
        raise CompatError(f"tool type {tool.get('type')!r} is not supported by anthropic", param=f"tools[{i}]")
    fn = tool.get("function") or {}
    if not isinstance(fn, dict):
        raise oa.type_error(f"tools[{i}].function", "an object")
    out: dict[str, Any] = {"name": fn.get("name", ""),
                           "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None:
        out = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out = {"type": "tool", "name": oa.obj(choice.get("function"), "tool_choice.function").get("name", "")}
    else:
        raise CompatError(f"tool_choice {choice!r} is not supported by anthropic", param="tool_choice")
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True  # type: ignore[assignment]
    return out


def _usage(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raw = {}
    cached = oa.count_or_none(raw.get("cache_read_input_tokens"))
    # OpenAI's prompt_tokens counts cached input too; Anthropic reports the parts apart.
    prompt = oa.count(raw.get("input_tokens")) + oa.count(raw.get("cache_creation_input_tokens")) + (cached or 0)
    return oa.usage(prompt, oa.count(raw.get("output_tokens")), cached=cached)


def translate_response(status: int, body: bytes, model: str, *, clock: oa.Clock = time.time,
                       new_id: oa.IdFactory = oa.new_completion_id,
                       on_parsed: Callable[[dict[str, Any]], None] | None = None) -> bytes | None:
    """A complete Anthropic message -> OpenAI chat.completion JSON bytes; None if the body
    is not a message (its `content` blocks), which the relay answers as an error."""
    msg = oa.loads_object(body)
    if on_parsed is not None and msg is not None:  # the log capture reads usage from it
        on_parsed(msg)
    if msg is None or not isinstance(msg.get("content"), list):
        return None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in msg["content"]:
        if not isinstance(block, dict):
            return None
        kind = block.get("type")
        if kind == "text":
            text = block.get("text", "")
            if not isinstance(text, str):
                return None
            texts.append(text)
        elif kind == "tool_use":
            calls.append({"id": block.get("id", ""), "type": "function",
                          "function": {"name": block.get("name", ""),
                                       "arguments": _json.dumps(block.get("input") or {}).decode()}})
    content = "".join(texts) if texts or not calls else None
    reason = msg.get("stop_reason")
    finish = _FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"
    choice = oa.message_choice(0, content, calls, finish)
    return oa.completion(new_id(), int(clock()), model, [choice], _usage(msg.get("usage")))


def _add_usage(raw: dict[str, Any], u: dict[str, Any]) -> None:
    """message_delta's usage over what came before: its counts are cumulative."""
    for k, v in u.items():
        if v is not None:
            raw[k] = v


def translate_error(status: int, body: bytes) -> bytes:
    """An Anthropic error body (or anything else) -> OpenAI error JSON bytes."""
    parsed = oa.loads_object(body)
    err = parsed.get("error") if parsed else None
    if isinstance(err, dict) and err.get("message"):
        return oa.error_body(err["message"], err.get("type") or oa.error_type(status), None, err.get("type"))
    return oa.error_body(oa.raw_error_message(status, body), oa.error_type(status))


# Events recognised by their bytes (oa.ChunkStream.feed): a text delta, with its members
# in the order the Messages API writes them, and the events that carry nothing for OpenAI.
# The literal may hold any escape but no raw quote, backslash or newline; a delta with
# another member after its text does not match, and is parsed.
_TEXT_EVENT = re.compile(
    rb'event: content_block_delta\ndata: \{"type":"content_block_delta","index":\d+,'
    rb'"delta":\{"type":"text_delta","text":("[^"\\\n]*(?:\\.[^"\\\n]*)*")\}\}\n\n')
_QUIET = tuple(b'event: %s\ndata: {"type":%s"%s"' % (name, space, name)
               for name in (b"ping", b"content_block_stop", b"message_stop") for space in (b"", b" "))
_BLOCK_STOP = b'event: content_block_stop\n'
_TEXT_START = b'event: content_block_start\ndata: {"type":"content_block_start","index":'
_EMPTY_TEXT = b',"content_block":{"type":"text","text":""}}'
# Events parsed without the general splitter: their one data line is handed to _data.
_DATA_EVENTS = (b"event: message_start\ndata: ", b"event: message_delta\ndata: ")
_DATA_AT = len(_DATA_EVENTS[0])  # both prefixes are as long: the data line starts here
# A whole stream of the usual shape (StreamTranslator.whole): these events open it, text
# deltas follow, and _CLOSING ends it (at the last _BLOCK_STOP). Its two data lines are
# parsed; the rest says nothing. Spelt with the byte constants above.
_E = re.escape
_OPENING = re.compile(
    _E(_DATA_EVENTS[0]) + rb'(\{[^\n]*\})\n\n' + _E(_TEXT_START) + rb'\d+' + _E(_EMPTY_TEXT) + rb'\n\n'
    rb'(?:event: ping\ndata: \{"type": ?"ping"\}\n\n)*')
_CLOSING = re.compile(
    _E(_BLOCK_STOP) + rb'data: \{"type":"content_block_stop","index":\d+\}\n\n'
    + _E(_DATA_EVENTS[1]) + rb'(\{[^\n]*\})\n\n'
    rb'event: message_stop\ndata: \{"type": ?"message_stop"\}\n\n')

class StreamTranslator(oa.ChunkStream):
    """Anthropic Messages SSE -> OpenAI chunks, one upstream event at a time."""

    provider = PROVIDER

    def __init__(self, model: str, include_usage: bool, *, clock: oa.Clock = time.time,
                 new_id: oa.IdFactory = oa.new_completion_id) -> None:
        super().__init__(model, include_usage, clock=clock, new_id=new_id)
        self._raw_usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # content block index -> OpenAI tool_calls index
        # tool_use blocks whose arguments have not started: one with none at its stop gets
        # "{}", as the non-streamed reply has (Anthropic streams `input: {}` and no delta)
        self._no_args: set[int] = set()
        self._usage_due = False  # a message_delta came: `usage` is made from _raw_usage at the end

    TEXT_EVENT = _TEXT_EVENT

    def _fast(self, block: bytes) -> bytes | None:
        if block.startswith(_QUIET):
            if self._no_args and block.startswith(_BLOCK_STOP):
                return None  # a tool block may close without arguments: parsed
            return b""
        if block.startswith(_TEXT_START) and block.endswith(_EMPTY_TEXT) and \
                block[len(_TEXT_START):-len(_EMPTY_TEXT)].isdigit():
            return b""  # an empty text block opens: nothing to say yet
        if block.startswith(_DATA_EVENTS):
            payload = block[_DATA_AT:]
            if b"\n" in payload:
                return None  # several data lines: the general way joins them
            data = oa.loads_object(payload)
            return b"" if data is None else self._data(data)
        return None

    def whole(self, stream: bytes) -> bytes | None:
        # message_start, an empty text block, pings; text deltas only; the block's stop,
        # message_delta with a stop reason, message_stop; nothing before or after. Few calls:
        # this runs once a request, mostly with its code out of the CPU's caches.
        opening = _OPENING.match(stream)
        if opening is None:
            return None
        at = stream.rfind(_BLOCK_STOP)
        closing = _CLOSING.fullmatch(stream, at) if at >= opening.end() else None
        if closing is None:
            return None
        parts = _TEXT_EVENT.split(stream[opening.end():at])
        if any(parts[0::2]):
            return None  # another event between the deltas: the general way
        try:
            start = _json.loads(opening.group(1))
            end = _json.loads(closing.group(1))
        except _json.JSONDecodeError:
            return None
        # Only what `_data` reads without failing, with a stop reason; anything else goes the
        # general way, which ends such a stream in an error event.
        if type(start) is not dict or type(end) is not dict or start.get("type") != "message_start" \
                or end.get("type") != "message_delta":
            return None
        message = start.get("message")
        first = message.get("usage") if type(message) is dict else message
        delta = end.get("delta")
        reason = delta.get("stop_reason") if type(delta) is dict else None
        last = end.get("usage")
        if first is not None and type(first) is not dict or last is not None and type(last) is not dict \
                or type(reason) is not str:
            return None
        literals = parts[1::2]
        out = [self.role_chunk()]
        if literals:
            out.append(self.literal_chunks(literals))
        out.append(self.finish_chunk(_FINISH.get(reason, "stop")))
        if self.include_usage:
            raw = dict(first or {})
            if last:
                _add_usage(raw, last)
            try:
                out.append(self.usage_chunk(_usage(raw)))
            except _json.JSONEncodeError:  # a count past 64 bits: the general way says so
                return None
        if self.on_usage is not None:  # what `_data` gives the log capture
            self.on_usage(start)
            self.on_usage(end)
        self.finished = True
        out.append(oa.DONE)
        return b"".join(out)

    def _event(self, ev: SSEEvent) -> bytes:
        data = oa.loads_object(ev.data)
        return b"" if data is None else self._data(data)

    def _data(self, data: dict[str, Any]) -> bytes:
        if self.on_usage is not None:  # message_start and message_delta carry usage
            self.on_usage(data)
        kind = data.get("type")
        if kind == "message_start":
            self._raw_usage.update((data.get("message") or {}).get("usage") or {})
            return self.role_chunk()
        if kind == "content_block_start":
            return self._block_start(data.get("index", 0), data.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(data.get("index", 0), data.get("delta") or {})
        if kind == "content_block_stop":
            index = data.get("index", 0)
            if index in self._no_args:
                self._no_args.discard(index)
                return self.chunk({"tool_calls": [{"index": self._tools[index], "function": {"arguments": "{}"}}]})
            return b""
        if kind == "message_delta":
            u = data.get("usage")
            if u:
                _add_usage(self._raw_usage, u)
            self._usage_due = True
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason is None:
                return b""
            self.finished = True
            return self.finish_chunk(_FINISH.get(reason, "stop"))
        if kind == "error":
            err = data.get("error") or {}
            return self.error_event(err.get("message", "upstream error"), err.get("type", "api_error"),
                                    err.get("type"))
        return b""  # ping, content_block_stop, message_stop carry nothing for OpenAI

    def _tail(self) -> bytes:
        if self._usage_due:  # made once, when the final usage chunk may need it
            self.usage = _usage(self._raw_usage)
        return b""

    def _block_start(self, index: int, block: dict[str, Any]) -> bytes:
        if block.get("type") == "text" and block.get("text"):
            return self.content_chunk(block["text"])
        if block.get("type") == "tool_use":
            self._tools[index] = call = len(self._tools)
            given = block.get("input")  # {} when streamed; anything else is sent at once
            if given:
                arguments = _json.dumps(given).decode()
            else:
                arguments = ""
                self._no_args.add(index)
            return self.chunk({"tool_calls": [{"index": call, "id": block.get("id", ""), "type": "function",
                                               "function": {"name": block.get("name", ""), "arguments": arguments}}]})
        return b""

    def _block_delta(self, index: int, delta: dict[str, Any]) -> bytes:
        if delta.get("type") == "text_delta":
            return self.content_chunk(delta.get("text", ""))
        if delta.get("type") == "input_json_delta" and delta.get("partial_json") and index in self._tools:
            self._no_args.discard(index)
            return self.chunk({"tool_calls": [{"index": self._tools[index],
                                               "function": {"arguments": delta["partial_json"]}}]})
        return b""  # thinking and signature deltas have no OpenAI chat equivalent
