"""OpenAI-side shapes shared by every translator: ids, chunks, errors, parameter policy."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from random import getrandbits
from typing import Any

from aigw import _json
from aigw.compat.sse import SSEEvent, SSESplitter, parse_block
from aigw.errors import BadRequest

Clock = Callable[[], float]
IdFactory = Callable[[], str]

DONE = b"data: [DONE]\n\n"

# OpenAI's error `type` per status; providers that name their own type keep it.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

MAPPED = "mapped"
DROPPED = "dropped"
REFUSED = "refused"


class CompatError(BadRequest):
    """A request the compat endpoint refuses rather than mistranslate (HTTP 400)."""

    code = 2019
    message = "Chat completion bad format"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def openai_body(self) -> bytes:
        """The refusal in OpenAI's error shape, which compat clients parse."""
        return error_body(self.message, "invalid_request_error", self.param, "unsupported_parameter")


def new_completion_id() -> str:
    """A fresh `chatcmpl-...` id, one per response: 128 random bits as hex, like uuid4's
    but without its `os.urandom` syscall (an id, not a secret)."""
    return "chatcmpl-%032x" % getrandbits(128)


def error_type(status: int) -> str:
    """OpenAI's error type for an HTTP status."""
    return _ERROR_TYPES.get(status, "api_error")


def error_body(message: str, type_: str, param: str | None = None, code: str | int | None = None) -> bytes:
    """`{"error": {"message", "type", "param", "code"}}` as bytes."""
    return _json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def raw_error_message(status: int, body: bytes) -> str:
    """A readable message for an upstream body that is not the provider's error JSON."""
    text = body.decode("utf-8", "replace").strip()
    return f"Upstream returned HTTP {status}" + (f": {text[:500]}" if text else "")


def loads_object(body: bytes) -> dict[str, Any] | None:
    """Parse a JSON object, or None if the bytes are not one."""
    try:
        value = _json.loads(body)
    except _json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def count(value: Any) -> int:
    """A token count as a reply carries it: 0 for anything but an integer."""
    return value if type(value) is int else 0


def count_or_none(value: Any) -> int | None:
    """An optional token count: None for anything but an integer."""
    return value if type(value) is int else None


def usage(prompt: int, completion: int, total: int | None = None, cached: int | None = None,
          reasoning: int | None = None) -> dict[str, Any]:
    """OpenAI's `usage` object; details appear only when the provider reports them."""
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion if total is None else total,
    }
    if cached is not None:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def completion(id_: str, created: int, model: str, choices: list[dict[str, Any]],
               usage_: dict[str, Any] | None) -> bytes:
    """A whole `chat.completion` object as bytes."""
    body: dict[str, Any] = {
        "id": id_, "object": "chat.completion", "created": created, "model": model,
        "choices": choices,
    }
    if usage_ is not None:
        body["usage"] = usage_
    return _json.dumps(body)


def message_choice(index: int, content: str | None, tool_calls: list[dict[str, Any]],
                   finish: str) -> dict[str, Any]:
    """One non-streamed choice."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "finish_reason": finish, "logprobs": None}


def check_params(body: Mapping[str, Any], policy: Mapping[str, str], provider: str) -> None:
    """Refuse keys the provider cannot honour; unknown keys are refused too, never ignored."""
    for key, value in body.items():
        rule = policy.get(key)
        if rule in (MAPPED, DROPPED):
            continue
        if rule == REFUSED and _is_unset(key, value):
            continue
        raise CompatError(f"'{key}' is not supported by {provider} on the compat endpoint", param=key)


def _is_unset(key: str, value: Any) -> bool:
    # A refused parameter sent at its OpenAI default changes nothing, so it passes.
    if key == "n":
        return value in (None, 1)
    return value is None or value is False or value == 0 or value == {} or value == []


def max_tokens(body: Mapping[str, Any]) -> int | None:
    """`max_completion_tokens` wins over the legacy `max_tokens`."""
    value = body.get("max_completion_tokens")
    return body.get("max_tokens") if value is None else value


def stop_list(body: Mapping[str, Any]) -> list[str] | None:
    """`stop` as a list (OpenAI allows a bare string); a 400 for anything but strings."""
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise CompatError("'stop' must be a string or an array of strings", param="stop")
    return stop


def type_error(param: str, expected: str) -> CompatError:
    """The 400 for a request value of the wrong JSON type, naming where it is."""
    return CompatError(f"'{param}' must be {expected}", param=param)


def array(value: Any, param: str) -> list[Any]:
    """A JSON array the request holds (null or absent: empty); any other type is a 400."""
    if isinstance(value, list):
        return value
    if value is None:
        return []
    raise type_error(param, "an array")


def obj(value: Any, param: str) -> dict[str, Any]:
    """A JSON object the request holds (null or absent: empty); any other type is a 400."""
    if isinstance(value, dict):
        return value
    if value is None:
        return {}
    raise type_error(param, "an object")


def image_url(part: Mapping[str, Any], i: int, j: int) -> str:
    """The URL of message `i`'s content part `j`, an `image_url` part ("" if absent)."""
    image = part.get("image_url")
    if isinstance(image, dict):
        url = image.get("url", "")
        if isinstance(url, str):
            return url
        raise type_error(f"messages[{i}].content[{j}].image_url.url", "a string")
    raise type_error(f"messages[{i}].content[{j}].image_url", "an object")


# What a model name put in the upstream path as is may not hold: what would end the path
# or start a fragment (`?`, `#`), be decoded upstream (`%`), or need percent-encoding
# (whitespace, controls, anything outside printable ASCII): all but `!"$&-><@-~`.
UNSAFE_IN_PATH = re.compile(r'[^!"$&->@-~]')
_SEEN_MAX = 4096


def path_model(model: str, seen: set[str], unsafe: re.Pattern[str] = UNSAFE_IN_PATH) -> str:
    """A model name that goes into the upstream path; a 400 if it holds a character
    `unsafe` matches (escaping it would name another model than the one asked for).
    `seen`: the names that passed (bounded: they come from clients), not searched again."""
    if model in seen:
        return model
    if unsafe.search(model) is not None:
        raise CompatError("the model name holds a character that cannot be put in the provider's path "
                          "(?, #, %, whitespace, control or non-ASCII characters, or a separator)", param="model")
    if len(seen) < _SEEN_MAX:
        seen.add(model)
    return model


def parse_data_url(url: str, param: str) -> tuple[str, str] | None:
    """`data:<mime>;base64,<b64>` -> (mime, b64); None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        raise CompatError("image data URLs must be base64-encoded", param=param)
    return head[: -len(";base64")] or "application/octet-stream", data


def is_http_url(url: str) -> bool:
    """True for http(s) links."""
    return url.startswith(("https://", "http://"))


def parse_arguments(arguments: Any, i: int, j: int) -> Any:
    """The `arguments` JSON string of message `i`'s tool call `j` -> value; a clear 400 if
    it is not JSON."""
    if not isinstance(arguments, str):
        return arguments
    if not arguments.strip():
        return {}
    try:
        return _json.loads(arguments)
    except _json.JSONDecodeError:
        raise CompatError("tool_calls[].function.arguments must be a JSON string",
                          param=f"messages[{i}].tool_calls[{j}].function.arguments") from None


def tool_calls(calls: Any, i: int) -> list[dict[str, Any]]:
    """Message `i`'s `tool_calls` (not null), checked to be an array of objects whose
    `function` is an object."""
    if not isinstance(calls, list):
        raise type_error(f"messages[{i}].tool_calls", "an array")
    for j, call in enumerate(calls):
        if not isinstance(call, dict):
            raise type_error(f"messages[{i}].tool_calls[{j}]", "an object")
        if not isinstance(call.get("function"), (dict, type(None))):
            raise type_error(f"messages[{i}].tool_calls[{j}].function", "an object")
    return calls


def text_error(i: int, j: int) -> CompatError:
    """The 400 for the text of message `i`'s content part `j` not being a string."""
    return type_error(f"messages[{i}].content[{j}].text", "a string")


def content_error(i: int, j: int | None = None) -> CompatError:
    """The 400 for message `i`'s content (`j`: its part `j`) being of the wrong type."""
    if j is None:
        return type_error(f"messages[{i}].content", "a string or an array of content parts")
    return type_error(f"messages[{i}].content[{j}]", "a content part object")


def text_of(content: Any, i: int) -> str:
    """Message `i`'s content where it must be text (system, tool): a string or a list of
    text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise content_error(i)
    parts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise content_error(i, j)
        if part.get("type") != "text":
            raise CompatError(f"only text parts are allowed here, got {part.get('type')!r}",
                              param=f"messages[{i}].content[{j}]")
        text = part.get("text", "")
        if not isinstance(text, str):
            raise text_error(i, j)
        parts.append(text)
    return "".join(parts)


_CONTENT_TAIL = b'},"finish_reason":null,"logprobs":null}]}\n\n'
_FINISH_HEAD = b'{"index":0,"delta":{},"finish_reason":'
_FINISH_TAIL = b',"logprobs":null}]}\n\n'
_ROLE_CHOICE = b'{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null,"logprobs":null}]}\n\n'


def _finish_choice(reason: str) -> bytes:
    return _FINISH_HEAD + _json.dumps(reason) + _FINISH_TAIL


# the finish choice for each reason a translator gives, made once
_FINISH_CHOICE = {r: _finish_choice(r) for r in ("stop", "length", "tool_calls", "content_filter",
                                                 "function_call")}


class ChunkStream:
    """Base of the stream translators: SSE splitting, chunk framing, the usage/[DONE] tail."""

    provider = ""

    def __init__(self, model: str, include_usage: bool, *, clock: Clock = time.time,
                 new_id: IdFactory = new_completion_id) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = new_id()
        self.created = int(clock())
        self.usage: dict[str, Any] | None = None
        self.finished = False  # a finish_reason has been sent
        self.failed = False  # an error event has been sent
        self._sse = SSESplitter()
        self._content_head: bytes | None = None
        self._chunk_prefix: bytes | None = None
        # Given each parsed upstream event that may carry token usage (the log capture's
        # SSEUsageScanner.see), so the stream is parsed once for both; None: not wanted.
        self.on_usage: Callable[[Any], None] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} [finished {self.finished} | failed {self.failed}]>"

    def feed(self, chunk: bytes) -> bytes:
        """Upstream SSE bytes in, OpenAI SSE bytes out (possibly b"").

        In the common case the text-delta events, nearly all of a stream, are found by
        `TEXT_EVENT` (one regex pass over what arrived) and become content chunks around
        the provider's own JSON string literal, without parsing; the other events go
        through `_fast` (recognised by their bytes) or are parsed and passed to `_event`.
        """
        pattern = self.TEXT_EVENT
        if pattern is not None and self._sse.idle():
            # A live stream arrives an event or so per chunk, and nearly every event is a
            # text delta: a chunk that is exactly one becomes its chunk in one match.
            m = pattern.fullmatch(chunk)
            if m is not None:
                return self.literal_chunk(m.group(1))
        done = self._sse.take_complete(chunk)
        if done is None:
            out = []
            for ev in self._sse.feed(chunk):
                out.append(self._event(ev))
                if self.failed:
                    break  # an error event: nothing after it is valid
            return b"".join(out)
        if not done:
            return b""
        parts = pattern.split(done) if pattern is not None else None
        if parts is None or len(parts) == 1:
            return self._blocks(done)
        segments, literals = parts[0::2], parts[1::2]  # segment i comes before literal i
        others = [i for i, seg in enumerate(segments) if seg]
        if not others:  # nothing but text deltas: one join
            return self.literal_chunks(literals)
        for i in others:
            if not segments[i].endswith(b"\n\n"):  # a match began mid-event: no shortcut
                return self._blocks(done)
        out = []
        j = 0  # the first literal not yet out
        for i in others:
            if i > j:
                out.append(self.literal_chunks(literals[j:i]))
            out.append(self._blocks(segments[i]))
            if self.failed:
                return b"".join(out)  # an error event: nothing after it is valid
            j = i
        if j < len(literals):
            out.append(self.literal_chunks(literals[j:]))
        return b"".join(out)

    # A whole text-delta event (with its blank line) whose group 1 is the text as a JSON
    # string literal; None where a provider has no such fast path. It should start with a
    # literal (the regex engine then skips ahead fast); a match that does not begin where
    # an event begins sends the whole piece the general way.
    TEXT_EVENT: re.Pattern[bytes] | None = None

    def _blocks(self, done: bytes) -> bytes:
        """Complete LF-framed events, one by one: `_fast` first, else parsed for `_event`."""
        fast = self._fast
        out = []
        for block in done.split(b"\n\n")[:-1]:
            data = fast(block)
            if data is None:
                ev = parse_block(block)
                if ev is None:
                    continue
                data = self._event(ev)
            if data:
                out.append(data)
            if self.failed:
                break  # an error event: nothing after it is valid
        return out[0] if len(out) == 1 else b"".join(out)

    def _fast(self, block: bytes) -> bytes | None:
        """A translation straight from an event's bytes, or None for the general way."""
        return None

    def _make_content_head(self) -> bytes:
        self._content_head = self._prefix() + b'{"index":0,"delta":{"content":'
        return self._content_head

    def _prefix(self) -> bytes:
        """`data: {"id":…,"object":…,"created":…,"model":…,"choices":[`, made once per stream:
        every chunk of the stream starts with it."""
        if self._chunk_prefix is None:
            self._chunk_prefix = b"data: " + _json.dumps(self._base())[:-1] + b',"choices":['
        return self._chunk_prefix

    def finish(self) -> bytes:
        """At upstream EOF: what is left, the usage chunk if asked, then [DONE]."""
        out = [self._event(ev) for ev in self._sse.finish()]
        out.append(self._tail())
        if not self.finished and not self.failed:
            out.append(self.error_event(f"{self.provider} stream ended before the reply was complete"))
        elif self.include_usage and not self.failed:
            out.append(self.usage_chunk(self.usage or usage(0, 0)))
        out.append(DONE)
        return b"".join(out)

    def whole(self, stream: bytes) -> bytes | None:
        """`feed(stream) + finish()` for a stream that arrived whole (a short reply, read at
        once), when it has the provider's usual shape: the same bytes in one pass. None
        otherwise, having changed nothing: then `feed` and `finish` as for any stream. The
        default recognises no shape."""
        return None

    def usage_chunk(self, usage: dict[str, Any]) -> bytes:
        """The final chunk of `stream_options.include_usage`: no choices, the usage."""
        return self._prefix() + b'],"usage":' + _json.dumps(usage) + b"}\n\n"

    def error_event(self, message: str, type_: str = "api_error", code: str | int | None = None) -> bytes:
        """An OpenAI-style SSE error event for a stream cut midway."""
        self.failed = True
        return b"data: " + error_body(message, type_, None, code) + b"\n\n"

    def content_chunk(self, text: str) -> bytes:
        """`chunk({"content": text})` for choice 0, spliced from bytes prepared once per stream.

        Text deltas are nearly every event of a stream; this skips building and dumping the
        chunk dict (about 3x less time per event), with output identical to `chunk`.
        """
        return self.literal_chunk(_json.dumps(text))

    def literal_chunk(self, literal: bytes) -> bytes:
        """`content_chunk` for text that is already a JSON string literal (quotes included),
        as cut from the provider's own JSON: spliced in without decoding or re-encoding."""
        return (self._content_head or self._make_content_head()) + literal + _CONTENT_TAIL

    def literal_chunks(self, literals: list[bytes]) -> bytes:
        """`literal_chunk` for each of a run of literals, in one join (at least one)."""
        head = self._content_head or self._make_content_head()
        return head + (_CONTENT_TAIL + head).join(literals) + _CONTENT_TAIL

    def role_chunk(self) -> bytes:
        """`chunk({"role": "assistant", "content": ""})`, from bytes."""
        return self._prefix() + _ROLE_CHOICE

    def finish_chunk(self, reason: str) -> bytes:
        """`chunk({}, finish=reason)` for choice 0, from bytes."""
        choice = _FINISH_CHOICE.get(reason)
        if choice is None:
            choice = _finish_choice(reason)
        return self._prefix() + choice

    def chunk(self, delta: dict[str, Any], index: int = 0, finish: str | None = None) -> bytes:
        """One `chat.completion.chunk` SSE event."""
        choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        return self._prefix() + _json.dumps(choice) + b"]}\n\n"

    def _base(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def _event(self, ev: SSEEvent) -> bytes:
        raise NotImplementedError

    def _tail(self) -> bytes:
        """Chunks a subclass still owes at EOF (default: none)."""
        return b""
