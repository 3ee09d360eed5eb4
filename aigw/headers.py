"""Header hygiene: what may cross the gateway in each direction, decided from frozen sets."""

from __future__ import annotations

import re
from collections.abc import Iterable

from aigw.errors import InvalidHeader

# RFC 9110 §7.6.1 hop-by-hop headers, plus framing headers the gateway recomputes.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
# Never forwarded upstream: hop-by-hop, the client's Host, framing, the legacy cache-control
# names, and the gateway's own (`x-aigw-hop` is rebuilt by the loop guard, aigw.guard).
_DROP_UP = HOP_BY_HOP | {"host", "content-length", "expect", "cf-cache-ttl", "cf-skip-cache",
                         "x-aigw-hop"}
# Never copied back from the upstream: hop-by-hop and framing (aiohttp sets its own).
DROP_DOWN = HOP_BY_HOP | {"content-length"}
DROP_DOWN_B = frozenset(h.encode() for h in DROP_DOWN)

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


_DROP_UP_B = frozenset(h.encode() for h in _DROP_UP)


def upstream_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Client headers (raw bytes, original case) that go upstream on a pass-through route."""
    out = []
    connection_tokens: set[bytes] | None = None
    for name, value in raw:
        low = name.lower()
        if low in _DROP_UP_B or low.startswith(b"cf-aig-"):
            if low == b"connection":
                connection_tokens = {t.strip().lower() for t in value.split(b",")}
            continue
        out.append((name, value))
    if connection_tokens:
        out = [(n, v) for n, v in out if n.lower() not in connection_tokens]
    return out


def has_header(pairs: Iterable[tuple[bytes, bytes]], lower_name: bytes) -> bool:
    """Whether a (bytes) header list has `lower_name`."""
    return any(n.lower() == lower_name for n, _ in pairs)


def check_step_headers(path: str, headers: object) -> list[tuple[str, str]]:  # noqa: C901
    """Validate a universal step's `headers` object; returns (name, value) pairs."""
    if headers is None:
        return []
    if not isinstance(headers, dict):
        raise InvalidHeader(f"{path}: must be an object of header names to string values")
    out = []
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise InvalidHeader(f"{path}: invalid header name")
        if not isinstance(value, str):
            raise InvalidHeader(f"{path}.{name}: header values must be strings")
        if "\r" in value or "\n" in value or "\0" in value:
            raise InvalidHeader(f"{path}.{name}: header value contains CR, LF or NUL")
        out.append((name, value))
    return out
