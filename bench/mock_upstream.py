"""A mock LLM provider fast enough never to be the bottleneck of a gateway benchmark.

A raw `asyncio.Protocol` HTTP/1.1 server (keep-alive, Content-Length and chunked request
bodies, pipelined requests answered in order). Common replies are cached as complete
response bytes, so a small JSON request costs one header scan, one dict lookup and one
`transport.write`. Behaviour is scripted by request headers:

    x-mock-status: 503          error reply in the provider's shape
    x-mock-delay-ms: 50         wait before sending the response head
    x-mock-chunks: N            content chunks of a stream (default 20)
    x-mock-chunk-delay-ms: 10   pause between stream chunks
    x-mock-abort-after: N       drop the connection after N content chunks (JSON: mid-body)
    x-mock-retry-after: S       add `Retry-After: S`
    x-mock-error-event: 1       200 SSE whose first and only event is a provider error event
    x-mock-body-bytes: N        pad a JSON reply to about N bytes

Run: `python bench/mock_upstream.py --port 9999`; it prints `READY host:port` once bound.
`GET /__stats` returns counters as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Coroutine, cast

import orjson

if __package__ in (None, ""):
    # run as a script: make `bench` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import mock_payloads as P  # noqa: E402
from bench.mock_request import MAX_BODY, MAX_HEAD, Plan, Request, parse_request, plan_for, route_of  # noqa: E402

# Bounded so a benchmark that varies x-mock-* values cannot grow the cache without limit.
MAX_CACHE = 512


@dataclass(slots=True)
class Stats:
    """Counters served at GET /__stats."""

    requests: int = 0
    connections: int = 0
    streams: int = 0
    aborted: int = 0
    by_route: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """The counters as JSON bytes."""
        return orjson.dumps(
            {"requests": self.requests, "connections": self.connections, "streams": self.streams,
             "aborted": self.aborted, "by_route": self.by_route, "by_status": self.by_status}
        )


class MockState:
    """Shared by all connections of one server: counters and the reply cache."""

    __slots__ = ("stats", "_cache")

    def __init__(self) -> None:
        self.stats = Stats()
        self._cache: dict[tuple[object, ...], bytes] = {}

    def __repr__(self) -> str:
        return f"<MockState requests={self.stats.requests} cached={len(self._cache)}>"

    def reply(self, plan: Plan, keep_alive: bool) -> bytes:
        """Complete response bytes for a plan without timing (cached)."""
        key = (plan.status, plan.kind, plan.stream, plan.chunks, plan.error_event, plan.pad,
               tuple(plan.extra), keep_alive)
        data = self._cache.get(key)
        if data is None:
            data = self._build(plan, keep_alive)
            if len(self._cache) < MAX_CACHE:
                self._cache[key] = data
        return data

    def _build(self, plan: Plan, keep_alive: bool) -> bytes:
        extra = list(plan.extra)
        if not keep_alive:
            extra.append(("Connection", "close"))
        if plan.status >= 300:
            body = P.error_body(plan.kind, plan.status)
            return P.head_bytes(plan.status, P.JSON_CT, len(body), extra) + body
        if not plan.stream:
            body = P.json_body(plan.kind, plan.pad)
            return P.head_bytes(plan.status, P.JSON_CT, len(body), extra) + body
        head = P.head_bytes(plan.status, P.SSE_CT, None, extra)
        if plan.error_event:
            return head + P.chunk(P.error_event(plan.kind)) + P.LAST_CHUNK
        h, c, t = P.sse_stream(plan.kind, plan.chunks)
        return head + b"".join(P.chunk(e) for e in h + c + t) + P.LAST_CHUNK


class MockProtocol(asyncio.Protocol):
    """One client connection; requests are answered strictly in arrival order."""

    def __init__(self, state: MockState) -> None:
        self._state = state
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._continued = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the connection."""
        # uvloop's TCPTransport is not an asyncio.Transport subclass, hence a cast, not a check
        self._transport = cast(asyncio.Transport, transport)
        self._state.stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop a paced reply that has no one left to read it."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        """Buffer bytes; parse them unless a timed reply is still in progress (pipelining)."""
        self._buf += data
        if self._task is None:
            self._drain()
        elif len(self._buf) > MAX_HEAD and self._transport is not None:
            self._transport.pause_reading()

    def _drain(self) -> None:
        t = self._transport
        while not self._closing and t is not None:
            try:
                req = self._parse_one()
            except ValueError:
                self._closing = True
                t.write(P.head_bytes(400, P.JSON_CT, 2, [("Connection", "close")]) + b"{}")
                t.close()
                return
            if req is None:
                return
            if not self._answer(req, t):
                return  # a timed reply owns the connection until it finishes

    def _parse_one(self) -> Request | None:
        req, pending = parse_request(self._buf)
        if pending is not None:
            self._maybe_continue(pending)
        elif req is not None:
            self._continued = False
        return req

    def _maybe_continue(self, headers: dict[str, str]) -> None:
        # curl sends `Expect: 100-continue` for bodies over 1 KiB and waits ~1 s without this
        if not self._continued and headers.get("expect", "").lower() == "100-continue":
            self._continued = True
            if self._transport is not None:
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _answer(self, req: Request, t: asyncio.Transport) -> bool:
        """Reply now when no timing is involved; return False if a task took over."""
        stats = self._state.stats
        if req.path == "/__stats":
            body = stats.to_json()
            t.write(P.head_bytes(200, P.JSON_CT, len(body), []) + body)
            return self._after(req, t)
        stats.requests += 1
        kind = route_of(req.method, req.path)
        if kind is None or req.method != "POST":
            status = 404 if kind is None else 405
            body = P.error_body(P.OPENAI, status)
            t.write(P.head_bytes(status, P.JSON_CT, len(body), []) + body)
            stats.by_status[str(status)] = stats.by_status.get(str(status), 0) + 1
            return self._after(req, t)
        stats.by_route[kind] = stats.by_route.get(kind, 0) + 1
        plan = plan_for(req, kind)
        key = str(plan.status)
        stats.by_status[key] = stats.by_status.get(key, 0) + 1
        if plan.stream and plan.status < 300:
            stats.streams += 1
        if plan.delay > 0 or plan.chunk_delay > 0 or plan.abort_after >= 0:
            self._task = asyncio.get_running_loop().create_task(self._timed(req, plan, t))
            self._task.add_done_callback(self._timed_done)
            return False
        t.write(self._state.reply(plan, req.keep_alive))
        return self._after(req, t)

    def _after(self, req: Request, t: asyncio.Transport) -> bool:
        if not req.keep_alive:
            self._closing = True
            t.close()
            return False
        return True

    async def _timed(self, req: Request, plan: Plan, t: asyncio.Transport) -> None:
        if plan.delay > 0:
            await asyncio.sleep(plan.delay)
        if plan.status >= 300 or plan.error_event or not plan.stream:
            data = self._state.reply(plan, req.keep_alive)
            if plan.abort_after >= 0 and not plan.error_event and plan.status < 300:
                # JSON abort: half the bytes, then a reset, so the body is truncated
                t.write(data[: len(data) // 2])
                self._abort(t)
                return
            t.write(data)
        else:
            extra = plan.extra if req.keep_alive else [*plan.extra, ("Connection", "close")]
            t.write(P.head_bytes(plan.status, P.SSE_CT, None, extra))
            head, content, tail = P.sse_stream(plan.kind, plan.chunks)
            for e in head:
                t.write(P.chunk(e))
            for i, e in enumerate(content):
                if i == plan.abort_after:
                    self._abort(t)
                    return
                if plan.chunk_delay > 0 and i > 0:
                    await asyncio.sleep(plan.chunk_delay)
                t.write(P.chunk(e))
            if plan.abort_after >= len(content):
                self._abort(t)
                return
            t.write(b"".join(P.chunk(e) for e in tail) + P.LAST_CHUNK)
        self._after(req, t)

    def _abort(self, t: asyncio.Transport) -> None:
        self._state.stats.aborted += 1
        self._closing = True
        t.abort()

    def _timed_done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if task.cancelled() or self._closing or self._transport is None:
            return
        self._transport.resume_reading()
        self._drain()


async def start(host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """Start a mock upstream on the running loop; port 0 picks a free port."""
    state = MockState()
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: MockProtocol(state), host, port, reuse_address=True,
                                    backlog=2048)


def bound_port(server: asyncio.Server) -> int:
    """The TCP port a started server listens on."""
    return int(server.sockets[0].getsockname()[1])


class MockThread:
    """A mock upstream on its own event loop in a daemon thread, for synchronous callers."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mock-upstream", daemon=True)
        self._server: asyncio.Server | None = None

    def __repr__(self) -> str:
        return f"<MockThread {self.host}:{self.port} alive={self._thread.is_alive()}>"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(start(self.host, self.port))
        self.port = bound_port(self._server)
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> MockThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("mock upstream did not start within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        def _stop() -> None:
            if self._server is not None:
                self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(_stop)
        self._thread.join(5)


async def _serve(host: str, port: int) -> None:
    server = await start(host, port)
    print(f"READY {host}:{bound_port(server)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description="Mock OpenAI / Anthropic / Workers AI upstream")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9999)
    args = ap.parse_args(argv)
    run(_serve(args.host, args.port))
    return 0


def run(coro: Coroutine[object, object, None]) -> None:
    """asyncio.run on uvloop when it is installed (about 2x the req/s of the default loop)."""
    factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(coro)


if __name__ == "__main__":
    raise SystemExit(main())
