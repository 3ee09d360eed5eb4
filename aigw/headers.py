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
# Never forwarded upstream: hop-by-hop, the client's Host, framing, and the gateway's own.
_DROP_UP = HOP_BY_HOP | {"host", "content-length", "expect"}
# Never copied back from the upstream: hop-by-hop and framing (aiohttp sets its own).
DROP_DOWN = HOP_BY_HOP | {"content-length"}

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def upstream_headers(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Client headers that go upstream on a pass-through route (original case kept)."""
    out = []
    connection_tokens: set[str] = set()
    for name, value in pairs:
        low = name.lower()
        if low == "connection":
            connection_tokens.update(t.strip().lower() for t in value.split(","))
        if low in _DROP_UP or low.startswith("cf-aig-"):
            continue
        out.append((name, value))
    if connection_tokens:
        out = [(n, v) for n, v in out if n.lower() not in connection_tokens]
    return out


def check_step_headers(path: str, headers: object) -> list[tuple[str, str]]:
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
