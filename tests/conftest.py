"""Fixtures: a scripted mock upstream (a real HTTP server) and the real gateway on a real
socket in front of it. The upstream is the only thing faked."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from aigw import _json
from aigw import config as config_mod
from aigw.server import Server

CI = os.environ.get("CI") == "true"


@dataclass
class Reply:
    """One scripted upstream reply."""

    status: int = 200
    body: bytes = b'{"ok":true}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    chunks: list[bytes] | None = None  # streamed with chunked encoding when set
    delay: float = 0.0  # before headers
    chunk_delay: float = 0.0
    abort_after: int | None = None  # drop the connection after this many chunks
    hang_after: int | None = None  # stop sending (but keep the connection) after N chunks


@dataclass
class Seen:
    method: str
    path: str  # raw path with query
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    body: bytes
    at: float
    peer: int = 0  # the gateway's source port: one per upstream connection


class MockUpstream:
    """Records every request; replies from per-path scripts, else echoes the request."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.scripts: dict[str, list[Reply]] = {}
        self.default: Reply | None = None
        self.disconnects = 0
        self.server: Any = None

    def script(self, path_prefix: str, *replies: Reply) -> None:
        """Replies, in order, for requests whose path starts with `path_prefix` (last repeats)."""
        self.scripts[path_prefix] = list(replies)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    def _reply_for(self, path: str) -> Reply | None:
        for prefix in sorted(self.scripts, key=len, reverse=True):
            if path.startswith(prefix):
                queue = self.scripts[prefix]
                return queue.pop(0) if len(queue) > 1 else queue[0]
        return self.default

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.raw_path,
                              {k.lower(): v for k, v in request.headers.items()},
                              list(request.headers.items()), body, time.monotonic(),
                              (request.transport.get_extra_info("peername") or ("", 0))[1]
                              if request.transport is not None else 0))
        reply = self._reply_for(request.raw_path)
        if reply is None:
            echo = {"method": request.method, "path": request.raw_path, "body": body.decode(
                "utf-8", "replace")}
            return web.Response(body=_json.dumps(echo), content_type="application/json")
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.chunks is None:
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        resp = web.StreamResponse(status=reply.status, headers=reply.headers)
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
            for i, chunk in enumerate(reply.chunks):
                if reply.abort_after is not None and i >= reply.abort_after:
                    assert request.transport is not None
                    request.transport.abort()
                    return resp
                if reply.hang_after is not None and i >= reply.hang_after:
                    await asyncio.sleep(3600)
                await resp.write(chunk)
                if reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        return resp


def odd_chunks(data: bytes, sizes=(1, 7, 3, 64, 2, 500)) -> list[bytes]:
    """`data` cut at uneven boundaries, to show a relay is byte-exact whatever the chunking."""
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[i:i + n])
        i += n
        k += 1
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A port bound for the whole test session and never listened on: connecting is refused at
# once, and no gateway started on port 0 can be given it (a port from free_port() was freed
# again, so the OS could hand it to the gateway itself, which then refused its own config).
_DEAD = socket.socket()
_DEAD.bind(("127.0.0.1", 0))
DEAD_PORT = int(_DEAD.getsockname()[1])


@pytest.fixture
def procs():
    """Real `aigw` processes a test starts (tests/procs.py); killed after the test."""
    started: list = []
    yield started
    for p in started:
        p.kill()


@pytest.fixture
async def upstream():
    mock = MockUpstream()
    # no access log: the secrets test reads every log record, and these are the mock's
    server = web.Server(mock.handle, handler_cancellation=True, access_log=None)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()

    class _S:
        port = runner.addresses[0][1]

    mock.server = _S()
    yield mock
    await runner.cleanup()


def base_config(upstream: MockUpstream, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A config dict pointing the main providers at the mock upstream."""
    raw: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0, "shutdown_timeout": 2},
        "providers": {
            "openai": {"base_url": upstream.url("/v1")},
            "anthropic": {"base_url": upstream.url("")},
            "workers-ai": {"base_url": upstream.url("/client/v4/accounts/{account}/ai/run")},
            "groq": {"base_url": upstream.url("/openai/v1")},
            "google-ai-studio": {"base_url": upstream.url("")},
            "custom-dead": {"base_url": f"http://127.0.0.1:{DEAD_PORT}/v1"},
        },
        "logs": {"backend": "off"},
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


class Gw:
    """The running gateway and a client session for talking to it."""

    def __init__(self, server: Server, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.base = f"http://127.0.0.1:{server.port}"

    def url(self, path: str) -> URL:
        """The gateway URL for a raw path, sent exactly as written (no normalisation)."""
        return URL(self.base + path, encoded=True)

    def post(self, path: str, **kw: Any) -> Any:
        return self.session.post(self.url(path), **kw)

    def request(self, method: str, path: str, **kw: Any) -> Any:
        return self.session.request(method, self.url(path), **kw)


@pytest.fixture
async def make_gateway(upstream):
    started: list[tuple[Server, aiohttp.ClientSession]] = []

    async def make(extra: dict[str, Any] | None = None, raw: dict[str, Any] | None = None) -> Gw:
        cfg = config_mod.from_dict(raw if raw is not None else base_config(upstream, extra),
                                   env={"TEST_TOKEN": "tok-env-123456789"})
        srv = Server(cfg)
        await srv.start("127.0.0.1", 0)
        session = aiohttp.ClientSession(auto_decompress=False,
                                        timeout=aiohttp.ClientTimeout(total=30))
        started.append((srv, session))
        return Gw(srv, session)

    yield make
    for srv, session in started:
        await session.close()
        await srv.stop()


@pytest.fixture
async def gw(make_gateway):
    return await make_gateway()
