"""One long-lived keep-alive pool per provider (per origin, for the few providers whose host
depends on the request), made at start-up and closed at shutdown.

The upstream sees what the client sent: no redirects followed, no cookies kept, no bodies
decoded, no headers added but `Host` and `Content-Length`.
"""

from __future__ import annotations

import logging
import ssl

from aigw.config import Config
from aigw.h1 import OriginPool, tls_context

logger = logging.getLogger("aigw.upstream")


class Pools:
    """Every upstream pool of one worker (`repr` shows live connection counts)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._pools: dict[tuple[str, str, str, int], OriginPool] = {}
        self._tls: ssl.SSLContext | None = None

    async def start(self) -> None:
        """Nothing to open eagerly; pools are made by `get` from the running loop."""
        self._tls = tls_context()

    def get(self, provider: str, scheme: str, host: str, port: int) -> OriginPool:
        """The pool of `provider` for one origin (made once, then reused)."""
        key = (provider, scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            s = self._config.server
            pool = OriginPool(scheme, host, port, limit=s.pool_limit,
                              connect_timeout=s.connect_timeout,
                              read_timeout=s.stream_idle_timeout,
                              keepalive_timeout=s.keepalive_timeout, ssl_context=self._tls)
            self._pools[key] = pool
        return pool

    def counts(self) -> dict[str, tuple[int, int]]:
        """provider -> (active, idle) connections, for providers that have any."""
        out: dict[str, tuple[int, int]] = {}
        for (slug, *_), pool in self._pools.items():
            a, i = out.get(slug, (0, 0))
            if pool.active or pool.idle:
                out[slug] = (a + pool.active, i + pool.idle)
        return out

    def __repr__(self) -> str:
        c = self.counts()
        active = sum(a for a, _ in c.values())
        idle = sum(i for _, i in c.values())
        return f"<Pools [{len(self._pools)} origins | active {active} | idle {idle}]>"

    async def close(self) -> None:
        """Close every connection; idempotent."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
