"""One long-lived connection pool per provider, made at start-up and closed at shutdown.

Sessions never follow redirects, never keep cookies, never decode bodies and never add
headers the client did not send: the upstream sees what the client sent, and the client
gets the upstream's bytes back.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from aigw.config import Config

logger = logging.getLogger("aigw.upstream")


def _session(config: Config) -> aiohttp.ClientSession:
    s = config.server
    connector = aiohttp.TCPConnector(
        limit=s.pool_limit,  # 0: unbounded; aiohttp's default 100 would queue silently
        limit_per_host=0,
        ttl_dns_cache=300,
        keepalive_timeout=s.keepalive_timeout,
        enable_cleanup_closed=False,
    )
    timeout = aiohttp.ClientTimeout(
        total=None,
        sock_connect=s.connect_timeout or None,
        sock_read=s.stream_idle_timeout or None,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        trust_env=False,
        raise_for_status=False,
        read_bufsize=2**16,
    )


class Pools:
    """The per-provider client sessions (`repr` shows live connection counts)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    async def start(self) -> None:
        """Create one session per configured provider (must run inside the loop)."""
        for slug in self._config.providers:
            self._sessions[slug] = _session(self._config)

    def session(self, slug: str) -> aiohttp.ClientSession:
        return self._sessions[slug]

    def counts(self) -> dict[str, tuple[int, int]]:
        """slug -> (acquired, idle) connections, for pools that have any."""
        out = {}
        for slug, sess in self._sessions.items():
            conn = sess.connector
            if conn is None:
                continue
            acquired = len(getattr(conn, "_acquired", ()))
            idle = sum(len(v) for v in getattr(conn, "_conns", {}).values())
            if acquired or idle:
                out[slug] = (acquired, idle)
        return out

    def __repr__(self) -> str:
        c = self.counts()
        active = sum(a for a, _ in c.values())
        idle = sum(i for _, i in c.values())
        return f"<Pools [{len(self._sessions)} providers | active {active} | idle {idle}]>"

    async def close(self) -> None:
        """Close every session; idempotent."""
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
