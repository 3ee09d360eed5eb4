"""Token usage from provider replies: whole JSON bodies, and SSE streams scanned on the side.

`tokens_in` is normalised to include cached input (Anthropic and Bedrock report cache reads
and writes apart from `input_tokens`; OpenAI and Google count them inside the prompt), so
cost can subtract `cache_read` and `cache_write` without counting them twice.

The stream scanner never parses a chunk that cannot hold usage: one `bytes.find` per chunk
for `"usage`, then only the line holding a hit is sliced and parsed.
"""

from __future__ import annotations

import re
from typing import Any

from aigw import _json

__all__ = ["Usage", "usage_from_json", "usage_from_obj", "usage_from_tail", "SSEUsageScanner", "model_from_request",
           "model_from_path"]


class Usage:
    """Token counts of one reply; `model` as the provider reported it, if it did."""

    __slots__ = ("model", "tokens_in", "tokens_out", "cache_read", "cache_write")

    def __init__(self, model: str | None = None, tokens_in: int = 0, tokens_out: int = 0,
                 cache_read: int = 0, cache_write: int = 0) -> None:
        self.model = model
        self.tokens_in = tokens_in
        self.tokens_out = tokens_out
        self.cache_read = cache_read
        self.cache_write = cache_write

    def __repr__(self) -> str:
        return (f"<Usage {self.model!r} in={self.tokens_in} out={self.tokens_out} "
                f"cache_read={self.cache_read} cache_write={self.cache_write}>")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Usage):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in Usage.__slots__)


_MAX_COUNT = 2**53 - 1  # a count past this (or negative, or not finite) is no count: 0


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if not 0 <= value <= _MAX_COUNT:  # NaN fails both comparisons too
        return 0
    return int(value)


def _model(obj: dict[str, Any]) -> str | None:
    for key in ("model", "modelVersion", "model_id"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _from_usage_dict(u: dict[str, Any], model: str | None) -> Usage | None:
    """One `usage` object of any of the known shapes."""
    if "prompt_tokens" in u or "completion_tokens" in u:
        # OpenAI chat / Workers AI / Groq / Mistral / DeepSeek: prompt includes cached.
        details = u.get("prompt_tokens_details")
        cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
        cached = cached or _int(u.get("prompt_cache_hit_tokens"))  # DeepSeek
        return Usage(model, _int(u.get("prompt_tokens")), _int(u.get("completion_tokens")),
                     cached)
    if "inputTokens" in u or "outputTokens" in u:
        # Bedrock Converse: inputTokens excludes cache reads and writes.
        cr, cw = _int(u.get("cacheReadInputTokens")), _int(u.get("cacheWriteInputTokens"))
        return Usage(model, _int(u.get("inputTokens")) + cr + cw, _int(u.get("outputTokens")),
                     cr, cw)
    if "input_tokens" in u or "output_tokens" in u:
        details = u.get("input_tokens_details")
        if isinstance(details, dict):
            # OpenAI Responses API: input includes cached.
            return Usage(model, _int(u.get("input_tokens")), _int(u.get("output_tokens")),
                         _int(details.get("cached_tokens")))
        # Anthropic: input_tokens excludes cache reads and writes.
        cr = _int(u.get("cache_read_input_tokens"))
        cw = _int(u.get("cache_creation_input_tokens"))
        return Usage(model, _int(u.get("input_tokens")) + cr + cw,
                     _int(u.get("output_tokens")), cr, cw)
    for key in ("billed_units", "tokens"):  # Cohere v2
        inner = u.get(key)
        if isinstance(inner, dict) and ("input_tokens" in inner or "output_tokens" in inner):
            return Usage(model, _int(inner.get("input_tokens")), _int(inner.get("output_tokens")))
    return None


def _from_google(m: dict[str, Any], model: str | None) -> Usage:
    out = _int(m.get("candidatesTokenCount")) + _int(m.get("thoughtsTokenCount"))
    return Usage(model, _int(m.get("promptTokenCount")), out,
                 _int(m.get("cachedContentTokenCount")))


def _from_obj(obj: Any) -> Usage | None:
    """Usage from a parsed reply of any supported shape, or None."""
    if isinstance(obj, list):  # Google streamed as one JSON array (no alt=sse)
        found = None
        for item in obj:
            found = _from_obj(item) or found
        return found
    if not isinstance(obj, dict):
        return None
    model = _model(obj)
    u = obj.get("usage")
    if isinstance(u, dict):
        return _from_usage_dict(u, model)
    m = obj.get("usageMetadata")
    if isinstance(m, dict):
        return _from_google(m, model)
    for key in ("result", "response", "delta", "x_groq"):  # Workers AI, Cohere stream, Groq
        inner = obj.get(key)
        if isinstance(inner, dict):
            u = inner.get("usage")
            if isinstance(u, dict):
                found = _from_usage_dict(u, model or _model(inner))
                if found is not None:
                    return found
    meta = obj.get("meta")  # Cohere v1
    if isinstance(meta, dict) and isinstance(meta.get("billed_units"), dict):
        return _from_usage_dict({"billed_units": meta["billed_units"]}, model)
    return None


_TAIL_MARKS = (b'"usage"', b'"usageMetadata"')
_MODEL_MEMBER = re.compile(rb'"(?:model|modelVersion)"\s*:\s*"([^"\\]{1,200})"')


_TAIL_TRIES = 4  # usage objects tried per mark, from the last: a tail is upstream-controlled
_TAIL_OBJECT = re.compile(rb"\s*:\s*\{")  # what follows a mark that names an object


def usage_from_tail(tail: bytes) -> Usage | None:
    """Usage from the last bytes of a JSON reply too large to keep whole: its last
    `"usage": {...}` (or `"usageMetadata"`) object, which every supported shape puts after
    the content, and the last `"model"` member. None when the tail has neither. Bounded: a
    few candidates per mark, and an object nested too deep to read is no usage."""
    for mark in _TAIL_MARKS:
        pos = tail.rfind(mark)
        tries = _TAIL_TRIES
        while pos >= 0 and tries:
            m = _TAIL_OBJECT.match(tail, pos + len(mark))  # no copy of the tail per mark
            if m is not None:
                tries -= 1
                text = tail[m.end() - 1:].decode("utf-8", "replace")
                try:
                    obj = _json.loads_first(text)
                except (ValueError, RecursionError):
                    obj = None
                if isinstance(obj, dict):
                    found = _from_google(obj, None) if mark == b'"usageMetadata"' \
                        else _from_usage_dict(obj, None)
                    if found is not None:
                        models = _MODEL_MEMBER.findall(tail)
                        found.model = models[-1].decode("utf-8", "replace") if models else None
                        return found
            pos = tail.rfind(mark, 0, pos)
    return None


def usage_from_obj(obj: Any) -> Usage | None:
    """Usage of a reply already parsed (what `usage_from_json` reads after parsing)."""
    return _from_obj(obj)


def usage_from_json(wire: str, body: bytes) -> Usage | None:
    """Usage of a non-streamed JSON reply; None when the body has none or is not JSON.

    `wire` is the provider's wire format; the shapes are told apart by their keys, so it
    only matters for `other` (nothing is parsed unless the body mentions usage).
    """
    if b"sage" not in body:  # "usage" / "usageMetadata": skip parsing bodies without either
        if not (wire == "cohere" and b"billed_units" in body):
            return None
    try:
        obj = _json.loads(body)
    except ValueError:
        return None
    return _from_obj(obj)


_MARK = b'"usage'
_MAX_LINE = 1 << 20  # a usage line longer than 1 MiB is given up on


class SSEUsageScanner:
    """Finds usage in relayed SSE bytes without copying or parsing the stream.

    `feed` runs per chunk on the relay loop: one `find` for `"usage`; only a line holding
    `"usage":{`, `"usage": {` or `"usageMetadata"` is sliced and parsed. The partial last
    line is carried over so an event split across chunks is still seen.
    """

    __slots__ = ("_tail", "model", "tokens_in", "tokens_out", "cache_read", "cache_write",
                 "_seen", "events", "_base_in")

    def __init__(self) -> None:
        self._tail = b""
        self.model: str | None = None
        self.tokens_in = 0
        self.tokens_out = 0
        self.cache_read = 0
        self.cache_write = 0
        self._seen = False
        self._base_in = 0
        self.events = 0  # lines parsed, for tests and tuning

    def __repr__(self) -> str:
        return f"<SSEUsageScanner parsed={self.events} usage={self.result()!r}>"

    def feed(self, chunk: bytes) -> None:
        """Look at one relayed chunk; never raises, never keeps the chunk."""
        end = chunk.rfind(b"\n")
        if end < 0:  # no line ends here: carry the whole chunk, bounded
            if len(self._tail) + len(chunk) > _MAX_LINE:
                self._tail = b""
            else:
                self._tail += chunk
            return
        start = 0
        if self._tail:
            first = chunk.find(b"\n")
            self._line(self._tail + chunk[:first])
            self._tail = b""
            start = first + 1
        pos = chunk.find(_MARK, start, end)
        while pos >= 0:
            probe = chunk[pos + 6:pos + 10]
            if probe[:2] == b'":' and probe != b'":nu' or probe == b"Meta":
                line_end = chunk.find(b"\n", pos)
                self._line(chunk[chunk.rfind(b"\n", start, pos) + 1:line_end])
                start = line_end + 1
                pos = chunk.find(_MARK, start, end)
            else:  # "usage":null and the like: keep looking on the same line
                pos = chunk.find(_MARK, pos + 6, end)
        if end + 1 < len(chunk):
            self._tail = chunk[end + 1:]  # the partial last line only

    def _line(self, line: bytes) -> None:
        pos = line.find(_MARK)
        while pos >= 0:
            probe = line[pos + 6:pos + 10]
            if probe[:2] == b'":' and probe != b'":nu' or probe == b"Meta":
                break
            pos = line.find(_MARK, pos + 6)
        else:
            return
        i = line.find(b"{")
        if i < 0:
            return
        try:
            obj = _json.loads(line[i:])
        except ValueError:
            return
        self.see(obj)

    def see(self, obj: Any) -> None:
        """One parsed event that may carry usage. A stream translator, which parses the
        events anyway, hands them here instead of the scanner reading the bytes again
        (aigw.compat._openai.ChunkStream.on_usage)."""
        self.events += 1
        if not isinstance(obj, dict):
            return
        kind = obj.get("type")
        if kind == "message_start":  # Anthropic: model and input side
            msg = obj.get("message")
            if isinstance(msg, dict):
                self.model = _model(msg) or self.model
                u = msg.get("usage")
                if isinstance(u, dict):
                    self._anthropic(u)
            return
        if kind == "message_delta":  # Anthropic: cumulative output, sometimes input too
            u = obj.get("usage")
            if isinstance(u, dict):
                self._anthropic(u)
            return
        found = _from_obj(obj)
        if found is not None:
            self._seen = True
            self.model = found.model or self.model
            self.tokens_in = found.tokens_in
            self.tokens_out = found.tokens_out
            self.cache_read = found.cache_read
            self.cache_write = found.cache_write

    def _anthropic(self, u: dict[str, Any]) -> None:
        # Anthropic counts cache reads and writes apart from input_tokens.
        self._seen = True
        if "cache_read_input_tokens" in u:
            self.cache_read = _int(u["cache_read_input_tokens"])
        if "cache_creation_input_tokens" in u:
            self.cache_write = _int(u["cache_creation_input_tokens"])
        if "input_tokens" in u:
            self._base_in = _int(u["input_tokens"])
        self.tokens_in = self._base_in + self.cache_read + self.cache_write
        if "output_tokens" in u:
            self.tokens_out = _int(u["output_tokens"])

    def flush(self) -> None:
        """At the end of the stream: a last line without its line end is looked at too."""
        if self._tail:
            tail, self._tail = self._tail, b""
            self._line(tail)

    def result(self) -> Usage | None:
        """The usage seen so far, or None if the stream carried none."""
        if not self._seen:
            return None
        return Usage(self.model, self.tokens_in, self.tokens_out, self.cache_read,
                     self.cache_write)


def model_from_request(body: bytes) -> str | None:
    """The `model` of a JSON request body, when the reply does not name it."""
    if b'"model"' not in body:
        return None
    try:
        obj = _json.loads(body)
    except ValueError:
        return None
    if isinstance(obj, dict):
        value = obj.get("model")
        if isinstance(value, str):
            return value
    return None


def model_from_path(wire: str, path: str) -> str | None:
    """The model named in a URL path: Workers AI `@cf/...`, Google `models/NAME:verb`."""
    if wire == "workers-ai" or "/@" in path or path.startswith("@"):
        i = path.find("@")
        if i >= 0:
            return path[i:].split("?", 1)[0]
    if wire == "google":
        i = path.find("models/")
        if i >= 0:
            name = path[i + 7:].split("?", 1)[0]
            return name.split(":", 1)[0] or None
    return None
