"""Request-loop guard: a gateway must never end up calling itself.

Two layers. At start-up, a provider whose base URL is the gateway's own listen address and
port is a config error (`self_pointing`). At run time, every upstream request carries
`x-aigw-hop: <id>,<id>...`, the chain of gateway instances it went through; a request that
arrives with this instance's id in its chain, or with a chain of `MAX_HOPS` or more, is
refused with 508 before anything goes upstream. That covers what the start-up check cannot
see: a hostname that only later resolves back to us, or two gateways pointing at each other.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from urllib.parse import urlsplit

from aigw.config import Config
from aigw.errors import LoopDetected

logger = logging.getLogger("aigw.guard")

HOP_HEADER = "x-aigw-hop"
MAX_HOPS = 4  # gateways a request may already have passed through
_ID_MAX = 64
_RESOLVE_TIMEOUT = 2.0  # s per host name, at start-up only


class HopGuard:
    """Checks the incoming hop chain and builds the outgoing header line."""

    __slots__ = ("instance", "line")

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.line = f"{HOP_HEADER}: {instance}\r\n".encode("ascii")  # the common case

    def __repr__(self) -> str:
        return f"<HopGuard {self.instance} max_hops={MAX_HOPS}>"

    def outgoing(self, incoming: str | None) -> bytes:
        """The `x-aigw-hop` line for upstream requests; raises LoopDetected on a loop."""
        if incoming is None:
            return self.line
        chain = [h.strip() for h in incoming.split(",")]
        if self.instance in chain:
            raise LoopDetected()
        if len(chain) >= MAX_HOPS:
            raise LoopDetected(f"Loop detected: more than {MAX_HOPS} gateway hops")
        # Only ids of the shape we mint are carried on: a header is never a vehicle for
        # arbitrary bytes upstream.
        kept = [h for h in chain if h and len(h) <= _ID_MAX and h.isalnum() and h.isascii()]
        kept.append(self.instance)
        return f"{HOP_HEADER}: {','.join(kept)}\r\n".encode("ascii")


def _is_local(ip: str, listen: set[str], wildcard: bool) -> bool:
    if ip in listen:
        return True
    if not wildcard:
        return False
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    return addr.is_loopback or addr.is_unspecified


async def _addresses(loop: asyncio.AbstractEventLoop, host: str, port: int) -> set[str]:
    try:
        async with asyncio.timeout(_RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        return set()
    return {str(info[4][0]) for info in infos}


async def self_pointing(config: Config, host: str, port: int) -> list[str]:
    """Slugs of providers whose base URL is this gateway's own `host:port`.

    Only hosts on the listen port are resolved, so the built-in providers on :443 cost no
    DNS lookup unless the gateway itself listens on 443.
    """
    loop = asyncio.get_running_loop()
    wildcard = host in ("", "0.0.0.0", "::")
    listen = set() if wildcard else await _addresses(loop, host, port)
    if wildcard:
        listen |= await _addresses(loop, socket.gethostname(), port)
    out = []
    for slug, p in config.providers.items():
        if "{" in p.base_url.partition("://")[2].partition("/")[0]:
            continue  # a host from the request (Azure, Bedrock): checked per request instead
        u = urlsplit(p.base_url)
        phost = u.hostname or ""
        pport = u.port or (443 if u.scheme == "https" else 80)
        if pport != port:
            continue
        if phost.lower() == host.lower() or any(
                _is_local(ip, listen, wildcard) for ip in await _addresses(loop, phost, pport)):
            out.append(slug)
    return out
