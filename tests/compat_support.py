"""Shared helpers for the compat translator tests: fixtures, golden files, SDK validation."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk

from aigw import _json

FIXTURES = Path(__file__).parent / "fixtures" / "compat"
CREATED = 1_750_000_000


def clock() -> float:
    """A frozen clock so golden files are stable."""
    return CREATED + 0.75


def ids() -> Any:
    """A deterministic completion-id factory."""
    counter = itertools.count(1)
    return lambda: f"chatcmpl-test{next(counter):08d}"


def read(name: str) -> bytes:
    """Raw bytes of a fixture."""
    return (FIXTURES / name).read_bytes()


def golden(name: str, actual: bytes) -> None:
    """Compare with a golden file; AIGW_REGEN=1 rewrites it (review the diff before committing)."""
    path = FIXTURES / name
    if os.environ.get("AIGW_REGEN") == "1":
        path.write_bytes(actual)
    assert actual == path.read_bytes(), f"{name} differs from its golden file"


def pretty(body: bytes) -> bytes:
    """Stable, reviewable JSON for golden files."""
    return _json.dumps_pretty(_json.loads(body)) + b"\n"


def feed_in(translator: Any, data: bytes, size: int | None) -> bytes:
    """Feed `data` in pieces of `size` bytes (None: whole), then finish."""
    step = size or len(data) or 1
    out = [translator.feed(data[i : i + step]) for i in range(0, len(data), step)]
    return b"".join(out) + translator.finish()


def split_events(data: bytes) -> list[bytes]:
    """An SSE fixture cut into whole events (each with its blank line)."""
    sep = b"\r\n\r\n" if b"\r\n" in data else b"\n\n"
    return [part + sep for part in data.split(sep) if part.strip()]


def sse_payloads(out: bytes) -> list[Any]:
    """Every `data:` payload of OpenAI SSE output, parsed; `[DONE]` stays a string."""
    assert out.endswith(b"\n\n")
    payloads = []
    for event in out.split(b"\n\n")[:-1]:
        assert event.startswith(b"data: "), event
        raw = event[len(b"data: ") :]
        payloads.append("[DONE]" if raw == b"[DONE]" else _json.loads(raw))
    return payloads


def validate_stream(out: bytes) -> list[ChatCompletionChunk]:
    """Every chunk must parse as the SDK's ChatCompletionChunk; [DONE] must end the stream."""
    payloads = sse_payloads(out)
    assert payloads[-1] == "[DONE]"
    chunks = []
    for p in payloads[:-1]:
        if "error" not in p:
            chunks.append(ChatCompletionChunk.model_validate(p))
    assert len({c.id for c in chunks}) <= 1, "one id per response"
    assert len({c.created for c in chunks}) <= 1, "one created per response"
    return chunks


def validate_completion(body: bytes) -> ChatCompletion:
    """The body must parse as the SDK's ChatCompletion."""
    return ChatCompletion.model_validate(_json.loads(body))


def assembled_tool_calls(chunks: list[ChatCompletionChunk]) -> dict[int, dict[str, str]]:
    """Merge streamed tool-call deltas the way OpenAI clients do."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = tc.id or call["id"]
                if tc.function is not None:
                    call["name"] += tc.function.name or ""
                    call["arguments"] += tc.function.arguments or ""
    return calls
