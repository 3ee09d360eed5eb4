"""Helpers for tests that need the real Redis at 127.0.0.1:6379 (db 15)."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 15
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"


def redis_reachable() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def require_redis() -> None:
    """Skip with a reason when Redis is not there; under CI=true its absence is a failure."""
    if redis_reachable():
        return
    reason = f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}"
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " (required under CI=true)")
    pytest.skip(reason)


async def flush_prefix(prefix: str) -> None:
    """Delete only this test's keys."""
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


class TcpProxy:
    """A TCP relay to Redis that a test can cut (refuse), black-hole (hang) and restore."""

    def __init__(self, target: tuple[str, int] = (REDIS_HOST, REDIS_PORT)) -> None:
        self.target = target
        self.port = 0
        self.mode = "up"  # up | blackhole
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{REDIS_DB}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.mode == "blackhole":
            while await reader.read(65536):
                pass
            return
        ur, uw = await asyncio.open_connection(*self.target)
        self._writers.add(uw)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        for t in (asyncio.ensure_future(pipe(reader, uw)), asyncio.ensure_future(pipe(ur, writer))):
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def cut(self) -> None:
        """Stop listening and drop every open connection: clients see refused/reset."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.close()
        self._writers.clear()
        await asyncio.sleep(0.01)

    async def restore(self, mode: str = "up") -> None:
        self.mode = mode
        await self.start()

    async def close(self) -> None:
        await self.cut()
        for t in list(self._tasks):
            t.cancel()
