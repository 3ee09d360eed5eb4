"""Provider wire shapes the mock upstream answers with, built as bytes.

Everything here is pure: the server caches what these functions return, so the hot
path of the mock only looks bytes up. Shapes follow the providers' public docs:
OpenAI chat completions (+ `stream_options.include_usage` final chunk), Anthropic
Messages streaming events, and Workers AI `/ai/run` results.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson

MODEL = "mock-model"
CREATED = 1700000000
PROMPT_TOKENS = 12
DEFAULT_CHUNKS = 20

OPENAI = "openai"
EMBEDDINGS = "embeddings"
ANTHROPIC = "anthropic"
WORKERS = "workers-ai"

JSON_CT = b"application/json"
SSE_CT = b"text/event-stream"


def token(i: int) -> str:
    """The i-th content token; short so small replies stay small."""
    return f"tok{i} "


def text_of(n_chunks: int) -> str:
    """The full completion text a stream of n_chunks tokens adds up to."""
    return "".join(token(i) for i in range(n_chunks))


# --- non-streaming JSON bodies -------------------------------------------------------


def _openai_chat(text: str, n: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": n,
            "total_tokens": PROMPT_TOKENS + n,
        },
    }


def _embeddings(pad: int) -> dict[str, Any]:
    # pad is expressed as extra vector entries (~6 bytes each) to keep the shape valid
    vec = [0.125] * (8 + pad // 6)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": vec}],
        "model": MODEL,
        "usage": {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS},
    }


def _anthropic(text: str, n: int) -> dict[str, Any]:
    return {
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": n},
    }


def _workers(text: str, n: int) -> dict[str, Any]:
    return {
        "result": {
            "response": text,
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": n,
                "total_tokens": PROMPT_TOKENS + n,
            },
        },
        "success": True,
        "errors": [],
        "messages": [],
    }


def json_body(kind: str, pad_to: int = 0) -> bytes:
    """A complete non-streaming reply; padded to about pad_to bytes when larger."""
    n = DEFAULT_CHUNKS
    text = text_of(n)
    if kind == EMBEDDINGS:
        base = orjson.dumps(_embeddings(0))
        return orjson.dumps(_embeddings(max(0, pad_to - len(base))))
    build = {OPENAI: _openai_chat, ANTHROPIC: _anthropic, WORKERS: _workers}[kind]
    body = orjson.dumps(build(text, n))
    if pad_to > len(body):
        body = orjson.dumps(build(text + "x" * (pad_to - len(body)), n))
    return body


# --- error bodies ----------------------------------------------------------------------

_ANTHROPIC_ERR = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_OPENAI_ERR = {400: "invalid_request_error", 401: "invalid_request_error", 429: "rate_limit_exceeded"}


def error_body(kind: str, status: int) -> bytes:
    """An error reply in the provider's own shape for the given HTTP status."""
    msg = f"mock upstream error {status}"
    if kind == ANTHROPIC:
        etype = _ANTHROPIC_ERR.get(status, "api_error")
        return orjson.dumps({"type": "error", "error": {"type": etype, "message": msg}})
    if kind == WORKERS:
        return orjson.dumps(
            {"result": None, "success": False, "errors": [{"code": 3000 + status % 1000, "message": msg}],
             "messages": []}
        )
    etype = _OPENAI_ERR.get(status, "server_error")
    return orjson.dumps({"error": {"message": msg, "type": etype, "param": None, "code": None}})


def error_event(kind: str) -> bytes:
    """An in-stream error event, the first (and only) event of an `x-mock-error-event` reply."""
    if kind == ANTHROPIC:
        data = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"
    if kind == WORKERS:
        data2: dict[str, Any] = {"success": False, "errors": [{"code": 3040, "message": "mock stream error"}]}
        return b"data: " + orjson.dumps(data2) + b"\n\n"
    data3 = {"error": {"message": "mock stream error", "type": "server_error", "param": None, "code": None}}
    return b"data: " + orjson.dumps(data3) + b"\n\n"


# --- SSE streams ----------------------------------------------------------------------
# Each stream is (head, content, tail): lists of complete SSE events. `x-mock-abort-after`
# counts `content` events, so a truncated stream never has its tail (usage, [DONE]).


def _data(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _event(name: str, obj: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def _openai_chunk(delta: dict[str, Any], finish: str | None) -> bytes:
    return _data(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
    )


def sse_stream(kind: str, n: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """The events of a streamed reply with n content chunks, split as (head, content, tail)."""
    if kind == ANTHROPIC:
        head = [
            _event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_mock", "type": "message", "role": "assistant", "model": MODEL,
                        "content": [], "stop_reason": None, "stop_sequence": None,
                        "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1},
                    },
                },
            ),
            _event("content_block_start",
                   {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            _event("ping", {"type": "ping"}),
        ]
        content = [
            _event("content_block_delta",
                   {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token(i)}})
            for i in range(n)
        ]
        tail = [
            _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _event("message_delta",
                   {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": n}}),
            _event("message_stop", {"type": "message_stop"}),
        ]
        return head, content, tail
    usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": n, "total_tokens": PROMPT_TOKENS + n}
    if kind == WORKERS:
        content = [_data({"response": token(i), "p": "abc"}) for i in range(n)]
        return [], content, [_data({"response": "", "usage": usage}), b"data: [DONE]\n\n"]
    head = [_openai_chunk({"role": "assistant", "content": ""}, None)]
    content = [_openai_chunk({"content": token(i)}, None) for i in range(n)]
    usage_chunk = _data(
        {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
         "choices": [], "usage": usage}
    )
    tail = [_openai_chunk({}, "stop"), usage_chunk, b"data: [DONE]\n\n"]
    return head, content, tail


# --- HTTP framing ---------------------------------------------------------------------


def status_line(status: int) -> bytes:
    """`HTTP/1.1 503 Service Unavailable` with CRLF; unknown codes get a generic phrase."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


def head_bytes(status: int, content_type: bytes, length: int | None, extra: list[tuple[str, str]]) -> bytes:
    """Status line and headers; length None means chunked transfer encoding."""
    parts = [status_line(status), b"Content-Type: ", content_type, b"\r\n"]
    if length is None:
        parts.append(b"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n")
    else:
        parts.append(b"Content-Length: %d\r\n" % length)
    for k, v in extra:
        parts.append(f"{k}: {v}\r\n".encode("latin-1"))
    parts.append(b"\r\n")
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk of chunked transfer encoding."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
