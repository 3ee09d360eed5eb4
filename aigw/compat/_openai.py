"""OpenAI-side shapes shared by every translator: ids, chunks, errors, parameter policy."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from aigw import _json
from aigw.compat.sse import SSEEvent, SSESplitter
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
    """A fresh `chatcmpl-...` id, one per response."""
    return "chatcmpl-" + uuid.uuid4().hex


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
    """`stop` as a list (OpenAI allows a bare string)."""
    stop = body.get("stop")
    if stop is None:
        return None
    return [stop] if isinstance(stop, str) else list(stop)


def parse_data_url(url: str) -> tuple[str, str] | None:
    """`data:<mime>;base64,<b64>` -> (mime, b64); None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        raise CompatError("image data URLs must be base64-encoded", param="messages")
    return head[: -len(";base64")] or "application/octet-stream", data


def is_http_url(url: str) -> bool:
    """True for http(s) links."""
    return url.startswith(("https://", "http://"))


def parse_arguments(arguments: Any) -> Any:
    """A tool call's `arguments` JSON string -> value; a clear 400 if it is not JSON."""
    if not isinstance(arguments, str):
        return arguments
    if not arguments.strip():
        return {}
    try:
        return _json.loads(arguments)
    except _json.JSONDecodeError:
        raise CompatError("tool_calls[].function.arguments must be a JSON string", param="messages") from None


def text_of(content: Any, param: str = "messages") -> str:
    """Content that must be text (system, tool): a string or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.get("type") != "text":
            raise CompatError(f"only text parts are allowed here, got {part.get('type')!r}", param=param)
        parts.append(part.get("text", ""))
    return "".join(parts)


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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} [finished {self.finished} | failed {self.failed}]>"

    def feed(self, chunk: bytes) -> bytes:
        """Upstream SSE bytes in, OpenAI SSE bytes out (possibly b"")."""
        return b"".join(self._event(ev) for ev in self._sse.feed(chunk))

    def finish(self) -> bytes:
        """At upstream EOF: what is left, the usage chunk if asked, then [DONE]."""
        out = [self._event(ev) for ev in self._sse.finish()]
        out.append(self._tail())
        if not self.finished and not self.failed:
            out.append(self.error_event(f"{self.provider} stream ended before the reply was complete"))
        elif self.include_usage and not self.failed:
            out.append(self.sse({**self._base(), "choices": [], "usage": self.usage or usage(0, 0)}))
        out.append(DONE)
        return b"".join(out)

    def error_event(self, message: str, type_: str = "api_error", code: str | int | None = None) -> bytes:
        """An OpenAI-style SSE error event for a stream cut midway."""
        self.failed = True
        return b"data: " + error_body(message, type_, None, code) + b"\n\n"

    def content_chunk(self, text: str) -> bytes:
        """`chunk({"content": text})` for choice 0, spliced from bytes prepared once per stream.

        Text deltas are nearly every event of a stream; this skips building and dumping the
        chunk dict (about 3x less time per event), with output identical to `chunk`.
        """
        if self._content_head is None:
            base = _json.dumps(self._base())[:-1]
            self._content_head = b"data: " + base + b',"choices":[{"index":0,"delta":{"content":'
        return self._content_head + _json.dumps(text) + b'},"finish_reason":null,"logprobs":null}]}\n\n'

    def chunk(self, delta: dict[str, Any], index: int = 0, finish: str | None = None) -> bytes:
        """One `chat.completion.chunk` SSE event."""
        choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        return self.sse({**self._base(), "choices": [choice]})

    @staticmethod
    def sse(obj: Any) -> bytes:
        """Frame one JSON object as an SSE data event."""
        return b"data: " + _json.dumps(obj) + b"\n\n"

    def _base(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def _event(self, ev: SSEEvent) -> bytes:
        raise NotImplementedError

    def _tail(self) -> bytes:
        """Chunks a subclass still owes at EOF (default: none)."""
        return b""
