"""One log row (reference table 6.1), the per-request log headers, and redaction.

A `LogRow` is built on the hot path with plain attribute sets (no dict merging); secrets
are scrubbed later, a batch at a time, by `redact_rows`, which the writer hands to the store
to run just before the rows are written (the SQLite store on its own thread).
"""

from __future__ import annotations

import operator
import re
import time
from bisect import bisect_right
from itertools import accumulate
from typing import Any, Sequence
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from aigw import _json
from aigw.errors import InvalidHeader
from aigw.logstore.ids import uuid7

__all__ = ["LogRow", "COLUMNS", "clean_text", "DENSE", "SPARSE", "has_nul", "redact_rows", "response_members", "parse_metadata", "collect_flags", "redact_url", "query_secrets",
           "redact_headers", "redact_body", "REDACTED"]

REDACTED = "[REDACTED]"
_MASK = REDACTED.encode()

# Stored columns, in schema order (body_codec last: aigw.logstore.codec relies on it).
# `secrets` on a row is never stored.
COLUMNS = (
    "id", "created_at", "account", "gateway", "provider", "model", "model_type", "path",
    "request_type", "status_code", "success", "cached", "step", "duration", "ttfb",
    "tokens_in", "tokens_out", "cache_read", "cache_write", "cost", "custom_cost", "metadata",
    "event_id", "user_agent", "request_content_type", "response_content_type",
    "request_size", "response_size", "request_head_complete", "response_head_complete",
    "request_body", "response_body", "feedback", "score", "body_codec",
)

# Columns that are NULL on most rows when they are written (feedback and score only ever
# come from a PATCH). The SQLite store leaves them out of an INSERT whose rows all have them
# NULL: every bound column costs the insert ~0.25 µs a row, NULL or not (bench/README.md).
SPARSE = ("model_type", "request_type", "metadata", "event_id", "feedback", "score")
DENSE = tuple(c for c in COLUMNS if c not in SPARSE)

_values = operator.attrgetter(*COLUMNS)


class LogRow:
    """One upstream attempt or cache hit. `created_at` is Unix ms; durations are ms."""

    __slots__ = COLUMNS + ("secrets", "response_members")

    def __init__(self, log_id: str | None = None, created_at: int | None = None) -> None:
        if created_at is None:
            ns = time.time_ns()
            self.created_at = ns // 1_000_000
            self.id = uuid7(ns=ns) if log_id is None else log_id
        else:
            self.created_at = created_at
            self.id = uuid7(created_at) if log_id is None else log_id
        self.account = ""
        self.gateway = ""
        self.provider = ""
        self.model = ""
        self.model_type: str | None = None
        self.path = ""
        self.request_type: str | None = None
        self.status_code = 0
        self.success = False
        self.cached = False
        self.step = 0
        self.duration = 0
        self.ttfb: int | None = None
        self.tokens_in: int | None = None
        self.tokens_out: int | None = None
        self.cache_read: int | None = None
        self.cache_write: int | None = None
        self.cost: float | None = None
        self.custom_cost = False
        self.metadata: str | None = None  # JSON object text, as the Logs API returns it
        self.event_id: str | None = None
        self.user_agent: str | None = None
        self.request_content_type: str | None = None
        self.response_content_type: str | None = None
        self.request_size = 0
        self.response_size = 0
        self.request_head_complete = True
        self.response_head_complete = True
        self.request_body: bytes | None = None  # head of the body, at most head_bytes
        self.response_body: bytes | None = None
        self.feedback: int | None = None
        self.score: float | None = None
        self.body_codec = 0  # set by a store that compresses body heads (aigw.logstore.codec)
        self.secrets: tuple[str, ...] = ()  # values to scrub from path and bodies
        # whether the response head gets the credential-member pass (see response_members)
        self.response_members = True

    def __repr__(self) -> str:
        return (f"<LogRow {self.id} {self.provider}/{self.model} {self.status_code} "
                f"step={self.step} cached={self.cached}>")

    def set_bodies(self, request: bytes | None, response: bytes | None, head_bytes: int) -> None:
        """Keep the first `head_bytes` of each body, with sizes and completeness."""
        if request is not None:
            self.request_size = len(request)
            self.request_head_complete = len(request) <= head_bytes
            self.request_body = request[:head_bytes]
        if response is not None:
            self.response_size = len(response)
            self.response_head_complete = len(response) <= head_bytes
            self.response_body = response[:head_bytes]

    def redact(self) -> None:
        """Scrub secrets from the path and body heads (see `redact_rows`)."""
        redact_rows((self,))

    def values(self) -> tuple[Any, ...]:
        """Column values in COLUMNS order."""
        return _values(self)


# ---------------------------------------------------------------- request headers

_META_MAX = 5


def has_nul(key: str, value: Any) -> bool:
    """Whether a metadata entry holds NUL: PostgreSQL's jsonb refuses \\u0000, and one such
    row would fail every metadata filter and group_by over its table."""
    return "\x00" in key or (isinstance(value, str) and "\x00" in value)


def clean_text(value: str | None) -> str | None:
    """A text column's value as every store takes it: a lone surrogate (a header byte that
    is not UTF-8, as aiohttp decodes it) becomes "?", a NUL is dropped (PostgreSQL's text
    refuses it). One bad value must not fail the batch of rows it is written with."""
    if value is None or (value.isascii() and "\x00" not in value):
        return value
    return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def parse_metadata(header: str) -> str | None:
    """`cf-aig-metadata` → the JSON text stored on the row (None when empty).

    A JSON object of string, number, boolean or null values; the first 5 entries are kept
    as Cloudflare does, and keys starting with `cf.` are reserved and dropped.
    """
    try:
        obj = _json.loads(header)
    except ValueError:
        raise InvalidHeader("cf-aig-metadata: not valid JSON") from None
    if not isinstance(obj, dict):
        raise InvalidHeader("cf-aig-metadata: must be a JSON object")
    kept: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, (dict, list)):
            raise InvalidHeader(f"cf-aig-metadata: value of {key!r} must be a string, number "
                                "or boolean")
        if has_nul(key, value):
            raise InvalidHeader("cf-aig-metadata: keys and values cannot contain NUL (\\u0000)")
        if key.startswith("cf."):
            continue
        if len(kept) < _META_MAX:
            kept[key] = value
    return _json.dumps(kept).decode() if kept else None


def _flag(name: str, value: str | None) -> bool | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v == "true":
        return True
    if v == "false":
        return False
    raise InvalidHeader(f"{name}: must be true or false")


def collect_flags(collect_logs: bool, collect_payload: bool, log_header: str | None,
                  payload_header: str | None) -> tuple[bool, bool]:
    """(write a row, store the bodies) from the gateway settings and the request headers.

    A header, when present, decides for that request; the payload header is ignored when
    the row is not written.
    """
    log = _flag("cf-aig-collect-log", log_header)
    payload = _flag("cf-aig-collect-log-payload", payload_header)
    do_log = collect_logs if log is None else log
    return do_log, do_log and (collect_payload if payload is None else payload)


# ---------------------------------------------------------------- redaction

# Header names whose values are credentials (lowercase).
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cf-aig-authorization", "x-api-key", "api-key",
    "x-goog-api-key", "cookie", "set-cookie", "x-amz-security-token", "ocp-apim-subscription-key",
})
# Query parameter names whose values are credentials (lowercase).
SECRET_PARAMS = frozenset({
    "key", "api_key", "api-key", "apikey", "token", "access_token", "auth", "sig",
    "signature", "x-amz-signature", "x-amz-security-token", "x-amz-credential", "code",
    "client_secret", "password",
})
# A JSON string member named like a credential, e.g. a universal step's "headers".
_JSON_SECRET = re.compile(
    rb'("(?:authorization|proxy-authorization|cf-aig-authorization|x-api-key|api-key|api_key'
    rb'|apikey|x-goog-api-key|access_token|client_secret|password|secret)"\s*:\s*")'
    rb'(?:[^"\\]|\\.)*(")', re.IGNORECASE)
# Bearer tokens and common key shapes anywhere in a body head.
_TOKEN_SHAPES = re.compile(rb"(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}|\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}")


def query_secrets(url: str) -> tuple[str, ...]:
    """Values of credential query parameters (`?key=...`), raw and decoded, 4+ chars."""
    if "?" not in url:
        return ()
    out: list[str] = []
    for part in url.partition("?")[2].replace(";", "&").split("&"):
        name, _, raw = part.partition("=")
        if "%" in name or "+" in name:  # `?%6Bey=` is `?key=` to the provider
            name = unquote_plus(name)
        if name.lower() in SECRET_PARAMS and len(raw) >= 4:
            out.append(raw)
            value = unquote_plus(raw)
            if value != raw:
                out.append(value)
    return tuple(out)


def redact_url(url: str, secrets: tuple[str, ...] = ()) -> str:
    """The URL or path with credential query parameters (`?key=`...) masked."""
    for s in secrets:
        if s and s in url:
            url = url.replace(s, REDACTED)
    if "?" not in url:
        return url
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k.lower() in SECRET_PARAMS for k, _ in pairs):
        return url
    query = urlencode([(k, REDACTED if k.lower() in SECRET_PARAMS else v) for k, v in pairs],
                      safe="[]")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redact_headers(headers: Any) -> dict[str, str]:
    """A plain dict of headers with every credential value masked."""
    return {k: (REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


def _token_sub(m: re.Match[bytes]) -> bytes:
    return (m.group(1) or b"") + _MASK


# Substring gates before each regex: most bodies contain none of the words, and a `bytes in`
# scan is ~20x cheaper than the regexes (redaction was 6% of a logged request's CPU).


def redact_body(body: bytes, secrets: tuple[str, ...] = (), members: bool = True) -> bytes:
    """A body head with known secret values, credential JSON members (unless `members` is
    false) and token shapes masked."""
    return _redact(body, tuple(s.encode("utf-8", "surrogateescape") for s in secrets if s), members)



def _redact(body: bytes, secrets: tuple[bytes, ...], members: bool) -> bytes:
    for b in secrets:
        if _contains(body, b):
            body = body.replace(b, _MASK)
    if members:
        low = body.lower()
        if (b"auth" in low or b"key" in low or b"access_token" in low or b"secret" in low
                or b"password" in low):
            body = _JSON_SECRET.sub(rb"\1" + _MASK + rb"\2", body)
    return _mask_tokens(body)


# Wires whose 2xx event streams carry everything the model writes (text, tool arguments)
# inside JSON *strings*: OpenAI's chunks and Anthropic's partial_json deltas. A credential-
# named member cannot occur unescaped in them, so their heads skip that pass (~10 µs on a
# 4 KB head). Gemini streams function-call `args` as objects, and custom wires are unknown:
# they get every pass.
_STRING_ONLY_STREAMS = frozenset({"openai", "anthropic"})
# The same holds for the JSON replies of OpenAI's inference endpoints (message content and
# tool-call `arguments` are strings; embeddings are numbers): ~0.8 µs a row. Only these
# paths: an OpenAI-wire provider's other endpoints may return anything (an OAuth-style
# `access_token`). Anthropic's JSON replies hold tool input as an object, so they keep it.
_STRING_ONLY_JSON_PATHS = ("/chat/completions", "/completions", "/embeddings")


def response_members(wire: str, status: int, content_type: str | None, path: str) -> bool:
    """Whether a response head needs the credential-member pass."""
    if not 200 <= status < 300:
        return True
    ctype = content_type or ""
    if ctype.startswith("text/event-stream"):
        return wire not in _STRING_ONLY_STREAMS
    return not (wire == "openai" and ctype.startswith("application/json")
                and path.partition("?")[0].endswith(_STRING_ONLY_JSON_PATHS))


def _contains(body: bytes, needle: bytes) -> bool:
    """`needle in body`, faster for long needles: CPython searches a needle of a few dozen
    bytes (a provider key) with its two-way algorithm, ~3x slower here than finding its
    first 8 bytes and checking the rest where they occur."""
    if len(needle) <= 8:
        return needle in body
    probe = needle[:8]
    i = body.find(probe)
    while i >= 0:
        if body.startswith(needle, i):
            return True
        i = body.find(probe, i + 1)
    return False


_TOKEN_AT = re.compile(rb"(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}|[spr]k-[A-Za-z0-9_-]{16,}")


def _mask_tokens(body: bytes) -> bytes:
    """`_TOKEN_SHAPES.sub`, but the regex only runs where a marker ("Bearer", "sk-", "pk-",
    "rk-") was found by `find`:
    the plain `sub` scanned a 4 KB SSE head in ~70 µs (any "k-", as in "mock-model",
    opened the gate), this takes ~2 µs."""
    starts = []
    if b"B" in body:  # one byte: a memchr scan, ~10x cheaper than searching for "Bearer"
        i = body.find(b"Bearer")
        while i >= 0:
            starts.append(i)
            i = body.find(b"Bearer", i + 6)
    if b"k-" in body:  # one scan rules out sk-, pk- and rk- (a scan of 4 KB is ~3 µs)
        for mark in (b"sk-", b"pk-", b"rk-"):
            i = body.find(mark)
            while i >= 0:
                starts.append(i)
                i = body.find(mark, i + 3)
    if not starts:
        return body
    out = []
    last = 0
    for pos in sorted(starts):
        if pos < last:
            continue
        if body[pos] != 0x42 and pos and (chr(body[pos - 1]).isalnum() or body[pos - 1] == 0x5F):
            continue  # "task-", "desk-": a key shape must start a word
        m = _TOKEN_AT.match(body, pos)
        if m is not None:
            out.append(body[last:pos])
            out.append((m.group(1) or b"") + _MASK)
            last = m.end()
    if not out:
        return body
    out.append(body[last:])
    return b"".join(out)


# ---------------------------------------------------------------- a batch of rows

# The writer redacts a whole batch at once. Every search above costs ~0.5 ns a byte (a 4 KB
# stream head: ~2.5 µs a pass, and a body took up to five passes) plus a fixed cost per call.
# Here the bodies of a batch are joined into one buffer, each marker is looked for once over
# all of it, and only the bodies a marker was found in go through `_redact`; a body no
# marker occurs in is one `_redact` leaves as it is, so the result is the same row by row
# (tests/test_redaction.py checks that property). Literal markers are found by memchr on
# their rarest byte (~0.02 ns a byte) and checked where that byte occurs.

_SEP = b"\0"
_MEMBER_WORDS = (b"auth", b"key", b"access_token", b"secret", b"password")  # _redact's gate
_K_GATE = re.compile(rb"k-(?=[A-Za-z0-9_-]{16})")  # where a [spr]k- key shape can start
_SPR = frozenset(b"spr")
# Bytes from common to rare in JSON and prose (every lowercase letter is in some JSON key or
# word: "object", "json"); a byte not listed counts as rarest.
_COMMON_FIRST = b' "etaonisrhldcumpfgy,:0123456789.bwvk_-{}[]xjqzTSACIMPNEORLDBHFWGUYVKJXQZ'
_RANK = {c: i for i, c in enumerate(_COMMON_FIRST)}
_MAX_SECRETS = 16  # distinct secrets a batch is searched for at once; above, row by row
_MISSES = 64  # probe-byte hits that were not the needle before falling back to find()


def _probe(needle: bytes) -> int:
    """Offset of the needle's rarest byte."""
    return max(range(len(needle)), key=lambda i: _RANK.get(needle[i], 256))


class _Joined:
    """Bodies joined by NUL; which body a position of the buffer is in."""

    __slots__ = ("data", "starts", "index")

    def __init__(self, bodies: list[bytes], index: Sequence[int]) -> None:
        self.data = _SEP.join(bodies)
        self.starts = list(accumulate([len(b) + 1 for b in bodies[:-1]], initial=0))
        self.index = index  # position in this buffer -> position in the batch's body list

    def flag(self, pos: int, flags: bytearray) -> int:
        """Mark the body holding `pos`; returns where the next body starts."""
        j = bisect_right(self.starts, pos) - 1
        flags[self.index[j]] = 1
        return self.starts[j + 1] if j + 1 < len(self.starts) else len(self.data)

    def literal(self, needle: bytes, flags: bytearray) -> None:
        """Mark every body `needle` occurs in."""
        data = self.data
        off = _probe(needle)
        probe = needle[off:off + 1]
        misses = 0
        i = data.find(probe, off)
        while i >= 0:
            start = i - off
            if data.startswith(needle, start):
                i = data.find(probe, self.flag(start, flags) + off)
                continue
            misses += 1
            if misses > _MISSES:  # a common byte after all: let find() scan the rest
                start = data.find(needle, start + 1)
                while start >= 0:
                    start = data.find(needle, self.flag(start, flags))
                return
            i = data.find(probe, i + 1)

    def key_shapes(self, flags: bytearray) -> None:
        """Mark every body with "Bearer" or a [spr]k- key shape (what `_mask_tokens` looks at)."""
        self.literal(b"Bearer", flags)
        data = self.data
        m = _K_GATE.search(data)
        while m is not None:
            p = m.start()
            if p and data[p - 1] in _SPR:
                m = _K_GATE.search(data, self.flag(p, flags))
            else:
                m = _K_GATE.search(data, p + 2)


def _variants(secrets: tuple[str, ...]) -> tuple[bytes, ...]:
    """Each secret as bytes, and as a JSON string writes it when it holds a `/` (`\\/`):
    a provider's error body may quote it either way."""
    out = []
    for s in secrets:
        if s:
            b = s.encode("utf-8", "surrogateescape")
            out.append(b)
            if b"/" in b:
                out.append(b.replace(b"/", b"\\/"))
    return tuple(out)


def redact_rows(rows: Sequence[LogRow]) -> None:
    """Scrub secrets from the paths and body heads of a batch of rows, in place (run by the
    writer, off the hot path): known secret values (the credentials sent upstream and any
    `?key=`-style query value, which a provider's error body may quote back), credential-
    named JSON members (see `response_members` for the exceptions) and token shapes."""
    n = len(rows)
    if not n:
        return
    knowns: list[tuple[bytes, ...]] = []  # per row: its secrets, encoded
    encoded: dict[tuple[str, ...], tuple[bytes, ...]] = {}  # most rows share their secrets
    for row in rows:
        secrets = row.secrets
        path = row.path
        if "?" in path:  # credential parameters are masked whatever their length
            secrets += query_secrets(path)
            row.path = redact_url(path, secrets)
        elif secrets:
            row.path = redact_url(path, secrets)
        if secrets:
            known = encoded.get(secrets)
            if known is None:
                # surrogateescape: a header value with a byte that is not UTF-8 comes as a
                # lone surrogate; encoded back it is the bytes the client sent
                known = encoded[secrets] = _variants(secrets)
            row.secrets = ()
            knowns.append(known)
        else:
            knowns.append(())
    # Body j is row j's request head, body n + j its response head (b"" where there is none:
    # an empty body holds no marker, and a flag on one is skipped below).
    bodies = [r.request_body or b"" for r in rows] + [r.response_body or b"" for r in rows]
    flags = bytearray(2 * n)
    joined = _Joined(bodies, range(2 * n))
    joined.key_shapes(flags)
    distinct = {s for known in encoded.values() for s in known}
    if len(distinct) <= _MAX_SECRETS:
        for secret in distinct:
            joined.literal(secret, flags)
    else:
        for i, known in enumerate(knowns):
            if known:
                flags[i] = flags[n + i] = 1
    # the credential-member pass: every request head, the response heads that need it
    members = [*range(n), *(n + i for i, r in enumerate(rows) if r.response_members)]
    low = _Joined([bodies[j] for j in members], members)
    low.data = low.data.lower()
    for word in _MEMBER_WORDS:
        low.literal(word, flags)
    j = flags.find(1)
    while j >= 0:
        if j < n:
            row = rows[j]
            if row.request_body:
                row.request_body = _redact(row.request_body, knowns[j], True)
        else:
            row = rows[j - n]
            if row.response_body:
                row.response_body = _redact(row.response_body, knowns[j - n], row.response_members)
        j = flags.find(1, j + 1)
