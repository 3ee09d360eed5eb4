"""Upstream URL building. The host only ever comes from the registry or the config.

A request names a path *under* its provider's base URL; anything that could step outside
it (schemes, `//`, userinfo, dot segments, backslashes, control characters, and their
percent-encoded, double-encoded and Unicode look-alike forms) is refused before any I/O.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote_to_bytes, urlsplit

from yarl import URL

from aigw.config import ProviderConfig
from aigw.errors import InvalidAccount, InvalidPath

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Characters that are safe as-is in a path remainder; anything else takes the slow check.
_PLAIN = re.compile(r"^[A-Za-z0-9_.~@:+,;=!$'()*/-]*$")
_QUERY_BAD = re.compile(r"[\x00-\x20\x7f#\\]")


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
        if seg in (".", "..") or seg.strip() in (".", ".."):
            return True
    first = norm.split("/", 1)[0]
    if _SCHEME.match(first) or ("@" in first[1:]):
        return True
    return False


def check_path(rest: str) -> str:
    """Validate a raw (percent-encoded) path remainder; returns it unchanged."""
    if len(rest) > 4096:
        raise InvalidPath("Invalid endpoint: path too long")
    if _PLAIN.match(rest) and not _bad_segments(rest):
        return rest
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
    """A provider's base URL, pre-split so the hot path only concatenates strings."""

    __slots__ = ("provider", "_parts", "_needs_account", "_params", "_prefix_bases", "_dup",
                 "scheme", "host", "port", "_base_path")

    def __init__(self, provider: ProviderConfig) -> None:
        self.provider = provider
        self._params = [(name, re.compile(f"^(?:{rx})$")) for name, rx in provider.path_params]
        self._parts = provider.base_url
        self._needs_account = "{account}" in provider.base_url
        parent = provider.base_url.rsplit("/", 1)[0]
        self._prefix_bases = tuple((prefix, f"{parent}/{sibling}")
                                   for prefix, sibling in provider.prefix_bases)
        self._dup = provider.dup_segment + "/" if provider.dup_segment else ""
        probe = urlsplit(re.sub(r"\{[a-z]+\}", "x", provider.base_url))
        self.scheme = probe.scheme
        self.host = probe.hostname
        self.port = probe.port
        self._base_path = probe.path

    def __repr__(self) -> str:
        return f"<UpstreamBase {self.provider.slug} {self.provider.base_url}>"

    def url(self, account: str, rest: str, query: str) -> URL:
        """The upstream URL for a validated path remainder and raw query string."""
        base = self._parts
        for prefix, other in self._prefix_bases:
            if rest.startswith(prefix):
                base, rest = other, rest[len(prefix):]
                break
        else:
            if self._dup and rest.startswith(self._dup):
                rest = rest[len(self._dup):]
        if self._needs_account:
            base = base.replace("{account}", account)
        for name, rx in self._params:
            seg, _, tail = rest.partition("/")
            if not rx.match(seg):
                raise InvalidPath(f"Invalid endpoint: '{name}' segment is not valid for "
                                  f"{self.provider.slug}")
            base = base.replace("{" + name + "}", seg)
            rest = tail
        raw = f"{base}/{rest}" if rest else base
        if query:
            raw = f"{raw}?{query}"
        url = URL(raw, encoded=True)
        # Defence in depth: whatever the lexical checks missed cannot change the authority.
        if url.scheme != self.scheme or (not self._params and url.raw_host != self.host):
            raise InvalidPath()
        return url
