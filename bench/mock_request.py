"""Request parsing and the reply decision of the mock upstream: pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from bench import mock_payloads as P

MAX_HEAD = 64 * 1024
MAX_BODY = 32 * 1024 * 1024


@dataclass(slots=True)
class Request:
    """One parsed request; header names are lower-cased."""

    method: str
    path: str
    keep_alive: bool
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Plan:
    """What to send for one request that needs timing (delays, pacing or an abort)."""

    status: int
    kind: str
    stream: bool
    extra: list[tuple[str, str]]
    delay: float = 0.0
    chunks: int = P.DEFAULT_CHUNKS
    chunk_delay: float = 0.0
    abort_after: int = -1
    error_event: bool = False
    pad: int = 0


def route_of(method: str, path: str) -> str | None:
    """The provider kind a path belongs to, or None for an unknown path."""
    if path.endswith("/chat/completions"):
        return P.OPENAI
    if path.endswith("/embeddings"):
        return P.EMBEDDINGS
    if path.endswith("/messages"):
        return P.ANTHROPIC
    if "/@cf/" in path or "/ai/run/" in path or "/@hf/" in path:
        return P.WORKERS
    return None


def _int(headers: dict[str, str], name: str, default: int) -> int:
    try:
        return int(headers[name])
    except (KeyError, ValueError):
        return default


def plan_for(req: Request, kind: str) -> Plan:
    """Decide the reply from the request body's `stream` flag and the x-mock-* headers."""
    stream = False
    # only parse when the key is there: most benchmark bodies are non-streaming
    if b'"stream"' in req.body:
        try:
            doc = orjson.loads(req.body)
            stream = isinstance(doc, dict) and doc.get("stream") is True
        except orjson.JSONDecodeError:
            stream = False
    if kind == P.EMBEDDINGS:
        stream = False
    h = req.headers
    extra: list[tuple[str, str]] = []
    if "x-mock-retry-after" in h:
        extra.append(("Retry-After", h["x-mock-retry-after"]))
    return Plan(
        status=_int(h, "x-mock-status", 200),
        kind=kind,
        stream=stream,
        extra=extra,
        delay=_int(h, "x-mock-delay-ms", 0) / 1000.0,
        chunks=max(0, min(_int(h, "x-mock-chunks", P.DEFAULT_CHUNKS), 100_000)),
        chunk_delay=_int(h, "x-mock-chunk-delay-ms", 0) / 1000.0,
        abort_after=_int(h, "x-mock-abort-after", -1),
        error_event=h.get("x-mock-error-event", "0") not in ("", "0"),
        pad=max(0, min(_int(h, "x-mock-body-bytes", 0), MAX_BODY)),
    )


def _parse_chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at pos; None while incomplete. Raises ValueError."""
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip(), 16)
        pos = eol + 2
        if size == 0:
            # trailers end with an empty line
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return bytes(out), eol + 2
                pos = eol + 2
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos:pos + size]
        if len(out) > MAX_BODY:
            raise ValueError("body too large")
        pos += size + 2


def parse_request(buf: bytearray) -> tuple[Request | None, dict[str, str] | None]:
    """Take one complete request off the front of buf.

    Returns (request, None) when one was consumed, (None, headers) when the head is complete
    but the body is not (so the caller can answer `Expect: 100-continue`), and (None, None)
    when the head is incomplete. Raises ValueError on a malformed or oversized request.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise ValueError("head too large")
        return None, None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    start = end + 4
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parsed = _parse_chunked(buf, start)
        if parsed is None:
            return None, headers
        body, stop = parsed
    else:
        n = int(headers.get("content-length") or 0)
        if n < 0 or n > MAX_BODY:
            raise ValueError("bad content-length")
        if len(buf) < start + n:
            return None, headers
        body, stop = bytes(buf[start:start + n]), start + n
    del buf[:stop]
    conn = headers.get("connection", "").lower()
    keep = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
    return Request(method, target.split("?", 1)[0], keep, headers, body), None
