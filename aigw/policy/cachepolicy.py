"""Per-request cache decisions from `cf-aig-cache-*` headers, and the cache-key recipe.

Caching is considered when the request sends `cf-aig-cache-ttl`, or `cf-aig-cache-key`, or
the gateway sets `cache_ttl`. TTL precedence: the header, then the gateway setting, then
5 minutes for a request that only sends a custom key.

Cache key (version 1): SHA-256 over length-prefixed fields, so no two field lists can
produce the same byte stream:

    default: "aigw-cache-v1" | gateway id | "req" | provider | METHOD | path | query
             | credential fingerprint | full request body (raw bytes)
    custom:  "aigw-cache-v1" | gateway id | "key" | provider | credential fingerprint
             | cf-aig-cache-key value

The credential fingerprint (policy/keys.py) keeps tenants apart: a request is only served
an answer produced with the same provider credential. Headers such as `cf-aig-metadata`
are not part of the key. The body is hashed byte for byte (no JSON canonicalisation).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from aigw.config import GatewaySpec
from aigw.errors import InvalidCacheHeader

TTL_MIN = 60
TTL_MAX = 2_678_400  # one month of 31 days, the same bound as the gateway's cache_ttl
CUSTOM_KEY_DEFAULT_TTL = 300
STATUS_HEADER = "cf-aig-cache-status"

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no", "")


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """What one request (or one universal step) asks of the cache."""

    ttl: int  # seconds
    skip: bool  # no lookup and no store; the answer is still marked MISS
    custom_key: str | None


def _first(get: Callable[[str], str | None], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = get(name)
        if value is not None:
            return name, value
    return None


def parse_cache_headers(get: Callable[[str], str | None], gw: GatewaySpec) -> CachePolicy | None:
    """The request's cache policy, or None when caching is not considered at all."""
    custom = get("cf-aig-cache-key") or None
    ttl_hdr = _first(get, "cf-aig-cache-ttl", "cf-cache-ttl")
    if ttl_hdr is not None:
        name, raw = ttl_hdr
        try:
            ttl = int(raw.strip())
        except ValueError:
            ttl = -1
        if not TTL_MIN <= ttl <= TTL_MAX:
            raise InvalidCacheHeader(
                f"{name} must be a whole number of seconds between {TTL_MIN} and {TTL_MAX}")
    elif gw.cache_ttl:
        ttl = gw.cache_ttl
    elif custom is not None:
        ttl = CUSTOM_KEY_DEFAULT_TTL
    else:
        return None  # caching not considered: a skip header has nothing to skip
    skip_hdr = _first(get, "cf-aig-skip-cache", "cf-skip-cache")
    skip = _parse_bool(*skip_hdr) if skip_hdr is not None else False
    return CachePolicy(ttl, skip, custom)


def _parse_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise InvalidCacheHeader(f"{name} must be true or false")


def _field(h: hashlib._Hash, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)


def cache_key(gateway_id: str, provider: str, method: str, path: str, query: str,
              body: bytes, cred_fp: str, custom_key: str | None) -> str:
    """The hex SHA-256 cache key of a request (recipe in the module docstring)."""
    h = hashlib.sha256(b"aigw-cache-v1")
    _field(h, gateway_id.encode())
    if custom_key is not None:
        _field(h, b"key")
        _field(h, provider.encode())
        _field(h, cred_fp.encode())
        _field(h, custom_key.encode("utf-8", "surrogateescape"))
    else:
        _field(h, b"req")
        _field(h, provider.encode())
        _field(h, method.upper().encode())
        _field(h, path.encode("utf-8", "surrogateescape"))
        _field(h, query.encode("utf-8", "surrogateescape"))
        _field(h, cred_fp.encode())
        _field(h, body)
    return h.hexdigest()
