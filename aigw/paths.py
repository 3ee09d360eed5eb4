"""Upstream URL building. The host only ever comes from the registry or the config.

A request names a path *under* its provider's base URL; anything that could step outside
it (schemes, `//`, userinfo, dot segments, backslashes, control characters, and their
percent-encoded, double-encoded and Unicode look-alike forms) is refused before any I/O.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote_to_bytes

from typing import TYPE_CHECKING

from aigw.config import ProviderConfig
from aigw.errors import InvalidAccount, InvalidPath

if TYPE_CHECKING:
    from aigw.h1 import OriginPool
    from aigw.upstream import Pools

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Characters that are safe as-is in a path remainder; anything else takes the slow check.
_PLAIN = re.compile(r"^[A-Za-z0-9_.~@:+,;=!$'()*/-]*$")
_QUERY_BAD = re.compile(r"[\x00-\x20\x7f#\\]")
# `%` not followed by two hex digits: IIS-style `%u002e` or junk; never forwarded.
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def check_id(value: str) -> str:
    """Account and gateway ids: 1-64 of [A-Za-z0-9_-]."""
    if not _ID.match(value):
        raise InvalidAccount()
    return value


def _bad_segments(text: str) -> bool:
    if text.startswith("/") or "//" in text or "\\" in text:
        return True
    for ch in text:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            return True
    norm = unicodedata.normalize("NFKC", text)
    if norm != text and ("\\" in norm or "//" in norm or norm.startswith("/")):
        return True
    for seg in norm.split("/"):
        # `..;x` is a dot segment to servlet containers (path parameters are dropped first)
        if seg in (".", "..") or seg.split(";", 1)[0].strip() in (".", ".."):
            return True
    first = norm.split("/", 1)[0]
    if _SCHEME.match(first) or ("@" in first[1:]):
        return True
    return False


def check_path(rest: str) -> str:
    """Validate a raw (percent-encoded) path remainder; returns it unchanged."""
    if len(rest) > 4096:
        raise InvalidPath("Invalid endpoint: path too long")
    if _PLAIN.match(rest) and ";" not in rest:
        # ASCII-only and no '%', ';', '\\' or controls: only structure is left to check (this
        # fast path skips the per-character loop, ~1 µs per 20 characters, for most paths)
        wrapped = f"/{rest}/"
        first = rest.split("/", 1)[0]
        if ("//" in wrapped[1:-1] or rest.startswith("/") or "/./" in wrapped
                or "/../" in wrapped or _SCHEME.match(first) or "@" in first[1:]):
            raise InvalidPath()
        return rest
    if "#" in rest or _BAD_PERCENT.search(rest):
        raise InvalidPath("Invalid endpoint: fragment or malformed percent-encoding")
    text = rest
    for _ in range(4):  # double and triple encodings
        if _bad_segments(text):
            raise InvalidPath()
        try:
            decoded = unquote_to_bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidPath("Invalid endpoint: path is not valid UTF-8") from None
        if decoded == text:
            break
        text = decoded
    else:
        raise InvalidPath()
    if _bad_segments(text):
        raise InvalidPath()
    # Raw non-ASCII or spaces must be percent-encoded by the client.
    if any(ord(c) > 0x7E or c in ' "<>`{}|^' for c in rest):
        raise InvalidPath("Invalid endpoint: characters must be percent-encoded")
    return rest


def check_query(query: str) -> str:
    """A raw query string forwarded as-is: no whitespace, controls, fragments."""
    if _QUERY_BAD.search(query) or len(query) > 8192:
        raise InvalidPath("Invalid query string")
    return query


class UpstreamBase:
    """A provider's base URL, pre-split so the hot path only concatenates strings.

    The origin (scheme, host, port) is fixed by the config; only the providers whose host
    has placeholders (`{resource}` for Azure, `{service}.{region}` for Bedrock) take them
    from leading path segments, each checked against its full-match regex.
    """

    __slots__ = ("provider", "pools", "_params", "_prefix_bases", "_dup", "scheme", "host",
                 "port", "_path", "_needs_account", "_pool")

    def __init__(self, provider: ProviderConfig, pools: Pools) -> None:
        self.provider = provider
        self.pools = pools
        self._params = [(name, re.compile(f"^(?:{rx})$")) for name, rx in provider.path_params]
        parent = provider.base_url.rsplit("/", 1)[0]
        self._prefix_bases = tuple((prefix, _split(f"{parent}/{sibling}")[3])
                                   for prefix, sibling in provider.prefix_bases)
        self._dup = provider.dup_segment + "/" if provider.dup_segment else ""
        self.scheme, self.host, self.port, self._path = _split(provider.base_url)
        self._needs_account = "{account}" in self._path
        self._pool = None if "{" in self.host else pools.get(provider.slug, self.scheme,
                                                             self.host, self.port)

    def __repr__(self) -> str:
        return f"<UpstreamBase {self.provider.slug} {self.provider.base_url}>"

    def resolve(self, account: str, rest: str, query: str) -> tuple[OriginPool, str]:
        """(pool, request target) for a validated path remainder and raw query string."""
        path = self._path
        for prefix, other in self._prefix_bases:
            if rest.startswith(prefix):
                path, rest = other, rest[len(prefix):]
                break
        else:
            if self._dup and rest.startswith(self._dup):
                rest = rest[len(self._dup):]
        if self._needs_account:
            path = path.replace("{account}", account)
        pool = self._pool
        if pool is None:
            host = self.host
            for name, rx in self._params:
                seg, _, rest = rest.partition("/")
                if not rx.match(seg):
                    raise InvalidPath(f"Invalid endpoint: '{name}' segment is not valid for "
                                      f"{self.provider.slug}")
                host = host.replace("{" + name + "}", seg)
            pool = self.pools.get(self.provider.slug, self.scheme, host, self.port)
        target = f"{path}/{rest}" if rest else (path or "/")
        if query:
            target = f"{target}?{query}"
        return pool, target


def _split(url: str) -> tuple[str, str, int, str]:
    """scheme, host (placeholders kept), port, path of a config base URL."""
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if authority.startswith("["):
        host, _, port = authority[1:].partition("]")
        port = port.lstrip(":")
    elif ":" in authority:
        host, _, port = authority.rpartition(":")
    else:
        host, port = authority, ""
    default = 443 if scheme == "https" else 80
    return scheme, host, int(port) if port else default, (slash + path).rstrip("/")
