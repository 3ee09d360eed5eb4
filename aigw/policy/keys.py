"""Stored provider keys (BYOK): inject the gateway's key when the client brings none.

Precedence: a credential the client sent wins; otherwise the stored key under the alias
named by `cf-aig-byok-alias` (or `default`) goes into the header the registry names for the
provider, with its scheme. An alias that names no key is a 400 (code 2040), never a silent
fallback to another key.

The return value is a fingerprint of the credential actually used, for the cache key: a
truncated SHA-256, so the key itself is neither kept nor derivable from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping

from aigw.config import GatewaySpec, ProviderConfig
from aigw.errors import ByokAliasUnknown
from aigw.providers import CREDENTIAL_HEADERS

ALIAS_HEADER = "cf-aig-byok-alias"
DEFAULT_ALIAS = "default"
ANONYMOUS = "-"  # fingerprint of a request that carries no credential at all

# Header lists as the core carries them: (bytes, bytes) pairs; str pairs and mappings are
# accepted too (universal step dicts, tests).
Headers = list[tuple[bytes, bytes]] | list[tuple[str, str]] | MutableMapping[str, str]

_CREDENTIAL_HEADERS_B = frozenset(h.encode() for h in CREDENTIAL_HEADERS)


def _b(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


def fingerprint(parts: list[tuple[bytes, bytes]]) -> str:
    """A short stable hash of (lower-case name, value) credential pairs (128 bits, hex)."""
    h = hashlib.sha256(b"aigw-credential-v1")
    for name, value in sorted(parts):
        h.update(b"\0%s\0%s" % (name, value))
    return h.hexdigest()[:32]


def client_credentials(provider_cfg: ProviderConfig, headers: Headers) -> list[tuple[bytes, bytes]]:
    """The credential headers the client sent, as (lower-case name, value) bytes."""
    auth = provider_cfg.auth_header.encode("latin-1")
    items = headers if isinstance(headers, list) else headers.items()
    found = []
    for name, value in items:
        low = _b(name).lower()
        if low in _CREDENTIAL_HEADERS_B or low == auth:
            found.append((low, _b(value)))
    return found


def unknown_alias_message(gw: GatewaySpec, provider: str, alias: str) -> str:
    """Cloudflare's wording; names aliases only, never key material."""
    names = ", ".join(f"'{a}'" for a in gw.aliases_for(provider)) or "none"
    return f"Provider '{provider}' has no BYOK credential named '{alias}'. Configured aliases: {names}"


def inject_key(gw: GatewaySpec, provider_cfg: ProviderConfig, alias: str | None,
               headers: Headers, *, raw: bool | None = None) -> str:
    """Add the stored key unless the client sent one; return the credential fingerprint.

    `raw`: the list holds (bytes, bytes) pairs (None: guess from its first pair).
    """
    found = client_credentials(provider_cfg, headers)
    if found:
        return fingerprint(found)
    if not gw.keys:
        if alias:
            raise ByokAliasUnknown(unknown_alias_message(gw, provider_cfg.slug, alias))
        return ANONYMOUS
    key = gw.key_for(provider_cfg.slug, alias or DEFAULT_ALIAS)
    if key is None:
        if alias:
            raise ByokAliasUnknown(unknown_alias_message(gw, provider_cfg.slug, alias))
        return ANONYMOUS
    name, value = provider_cfg.auth_header, provider_cfg.auth_scheme + key
    if isinstance(headers, list):
        if raw or (raw is None and headers and isinstance(headers[0][0], bytes)):
            headers.append((name.encode("latin-1"), value.encode()))  # type: ignore[arg-type]
        else:
            headers.append((name, value))  # type: ignore[arg-type]
    else:
        headers[name] = value
    return fingerprint([(name.encode("latin-1"), value.encode())])
