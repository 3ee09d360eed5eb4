"""Gateway authentication: `cf-aig-authorization: Bearer <token>`, compared in constant time.

The header is the gateway's credential, never the provider's: callers drop it before a
request goes upstream and never log it.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from aigw.config import Config, GatewaySpec
from aigw.errors import Unauthorized

logger = logging.getLogger("aigw.policy")

AUTH_HEADER = "cf-aig-authorization"
_BEARER = "bearer "


class AuthCheck:
    """The tokens of one gateway, encoded once; calling it checks a header value."""

    __slots__ = ("required", "_tokens")

    def __init__(self, gw: GatewaySpec) -> None:
        self.required = gw.authentication
        self._tokens = tuple(t.encode() for t in gw.tokens)

    def __call__(self, header: str | None) -> None:
        """Raise Unauthorized unless `header` carries one of the gateway's tokens."""
        if not self.required:
            return
        if header is None or len(header) <= 7 or header[:7].lower() != _BEARER:
            raise Unauthorized()
        try:
            given = header[7:].strip().encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise Unauthorized() from None
        ok = False
        # Compare against every token, so the time taken does not tell which one matched.
        for token in self._tokens:
            ok |= hmac.compare_digest(given, token)
        if not ok:
            raise Unauthorized()

    def __repr__(self) -> str:
        return f"<AuthCheck required={self.required} tokens={len(self._tokens)}>"


def check_auth(gw: GatewaySpec, header: str | None) -> None:
    """Cold-path form of AuthCheck (encodes the tokens on each call); hot paths hold an AuthCheck."""
    AuthCheck(gw)(header)


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposed_gateways(config: Config) -> list[str]:
    """Ids of the gateways that accept requests without a token."""
    if not config.gateways:
        return [] if config.default_gateway.authentication else ["* (any gateway id)"]
    return [gid for gid, gw in config.gateways.items() if not gw.authentication]


def warn_exposed(config: Config, host: str) -> bool:
    """Log a loud warning when a non-loopback listener serves an unauthenticated gateway."""
    if is_loopback(host):
        return False
    open_ids = exposed_gateways(config)
    if not open_ids:
        return False
    logger.warning(
        "SECURITY: listening on %s (not loopback) with authentication off on gateway(s) %s: "
        "anyone who can reach this port can spend your provider credit. Set "
        "authentication = true and tokens on every gateway, or listen on 127.0.0.1.",
        host, ", ".join(open_ids),
    )
    return True
