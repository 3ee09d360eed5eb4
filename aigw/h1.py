"""A lean HTTP/1.1 client for the upstream side: keep-alive pools per origin, llhttp
parsing (httptools), the request written in one `write`, the body handed over as the
transport delivers it.

Why not aiohttp's ClientSession: per request it builds a ClientRequest, a ClientResponse,
header multidicts, a timer context and a payload writer; in the profile of a 64-connection
JSON relay it was ~45% of the gateway's CPU. This module does the same job in a fraction
(bench/README.md has the numbers).

Each `Connection` carries at most one exchange at a time. A pool decides synchronously
which connection a request gets (an idle one, newest first, or a new one); the only awaits
are the connect and the reads.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any

import httptools

_IDLE_HEAD = "upstream sent no response head for stream_idle_timeout"
_IDLE_BODY = "upstream sent nothing for stream_idle_timeout"
_HIGH_WATER = 1 << 18  # pause reading the upstream past this many unread bytes
_LOW_WATER = 1 << 16


class UpstreamError(Exception):
    """No usable response: connect failure, reset, or an unparseable reply."""


class UpstreamCut(UpstreamError):
    """The body ended before the message did (reset or truncated)."""


class UpstreamIdle(UpstreamCut):
    """The upstream sent nothing for `read_timeout` (`server.stream_idle_timeout`)."""


def _expire(fut: asyncio.Future[Any], message: str) -> None:
    if not fut.done():
        fut.set_exception(UpstreamIdle(message))


class Connection(asyncio.Protocol):
    """One upstream TCP (or TLS) connection and its response parser."""

    __slots__ = ("pool", "transport", "parser", "_headers", "_status", "_reason", "_resp",
                 "_head_waiter", "keep_alive", "closed", "_got_bytes", "_head_method",
                 "_paused", "_slot")

    def __init__(self, pool: OriginPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._status = 0
        self._reason = b""
        self._resp: Response | None = None
        self._head_waiter: asyncio.Future[Response] | None = None
        self.keep_alive = True
        self.closed = False
        self._got_bytes = False
        self._head_method = False
        self._paused = False
        self._slot = False  # holds one of the pool's `limit` slots

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("unexpected protocol upgrade"))
        except httptools.HttpParserError:
            self._fail(UpstreamError("invalid HTTP response from upstream"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        resp = self._resp
        if resp is not None and not resp.done and self._head_waiter is None:
            if resp.until_close:
                resp._finish()
            else:
                resp._error(UpstreamCut("upstream closed the connection mid-body"))
        else:
            self._fail(UpstreamError("upstream closed the connection"))

    def pause_writing(self) -> None:  # request bodies are written whole; nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # interim response (103 Early Hints): wait for the real one
            self._headers = []
            self._reason = b""
            return
        self.keep_alive = self.parser.should_keep_alive()
        resp = Response(self, status, self._reason, self._headers)
        self._resp = resp
        self._headers = []
        self._reason = b""
        waiter, self._head_waiter = self._head_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(resp)
        if self._head_method:
            resp._finish()

    def on_body(self, body: bytes) -> None:
        resp = self._resp
        if resp is not None:
            resp._feed(body)

    def on_message_complete(self) -> None:
        resp = self._resp
        if resp is not None and not resp.done:
            resp._finish()

    # internals
    def _fail(self, exc: Exception) -> None:
        waiter, self._head_waiter = self._head_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        resp = self._resp
        if resp is not None and not resp.done:
            resp._error(exc if isinstance(exc, UpstreamCut) else UpstreamCut(str(exc)))
        self.abort()

    def abort(self) -> None:
        """Drop the connection now (unread response, cancelled client, protocol error)."""
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
        self.pool._forget(self)
        self._free_slot()

    def _free_slot(self) -> None:
        if self._slot:
            self._slot = False
            self.pool._slot_free()

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def send(self, data: list[bytes], head_only: bool) -> asyncio.Future[Response]:
        """Write a request; the future resolves with the response head."""
        assert self.transport is not None
        self._resp = None
        self._got_bytes = False
        self._head_method = head_only
        fut: asyncio.Future[Response] = self.pool.loop.create_future()
        self._head_waiter = fut
        if len(data) == 1:
            self.transport.write(data[0])
        else:
            self.transport.writelines(data)
        return fut

    def release(self) -> None:
        """The exchange is over: back to the pool if the connection can be reused."""
        if self.closed:
            return
        resp = self._resp
        if (resp is None or not resp.done or not self.keep_alive or self._head_method
                or self._paused):
            self.abort()
            return
        self._resp = None
        self._free_slot()
        self.pool._idle(self)


class Response:
    """An upstream response: its head at once, its body as it arrives."""

    __slots__ = ("conn", "status", "reason", "raw_headers", "done", "until_close", "_chunks",
                 "_buffered", "_waiter", "_exc", "content_length", "content_type",
                 "content_encoding", "retry_after")

    def __init__(self, conn: Connection, status: int, reason: bytes,
                 headers: list[tuple[bytes, bytes]]) -> None:
        self.conn = conn
        self.status = status
        self.reason = reason.decode("latin-1")
        self.raw_headers = headers
        self.done = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._exc: Exception | None = None
        length = ctype = cenc = retry = None
        chunked = False
        for name, value in headers:
            n = name.lower()
            if n == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
            elif n == b"content-type":
                ctype = value
            elif n == b"content-encoding":
                cenc = value
            elif n == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif n == b"retry-after":
                retry = value
        self.content_length = None if chunked else length
        self.content_type = ctype.decode("latin-1") if ctype else ""
        self.content_encoding = cenc
        self.retry_after = retry.decode("latin-1") if retry else None
        self.until_close = length is None and not chunked
        if status in (204, 304) or length == 0:
            self.until_close = False

    @property
    def exhausted(self) -> bool:
        """The whole body has been read (nothing buffered, nothing more coming)."""
        return self.done and not self._chunks and self._exc is None

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER:
            self.conn.pause()
        self._wake()

    def _finish(self) -> None:
        self.done = True
        self._wake()

    def _error(self, exc: Exception) -> None:
        self._exc = exc
        self.done = True
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    async def read_chunk(self) -> bytes:
        """All the body that has arrived and not been read yet; b"" at the end.

        Nothing is held back to collect more: the call returns as soon as any byte is
        there. When several chunks arrived together (a burst of SSE events in one segment)
        they go out as one piece, so the relay makes one write instead of one per chunk
        (SSE at 32 connections: 509 -> ~300 µs CPU per 20-chunk stream).
        Raises UpstreamCut if the body ends before the message does.
        """
        while True:
            chunks = self._chunks
            if chunks:
                if len(chunks) == 1:
                    data = chunks.popleft()
                else:
                    data = b"".join(chunks)
                    chunks.clear()
                self._buffered = 0
                self.conn.resume()
                return data
            if self._exc is not None:
                raise self._exc
            if self.done:
                return b""
            pool = self.conn.pool
            waiter = self._waiter = pool.loop.create_future()
            if pool.read_timeout:
                # call_later rather than wait_for: one timer handle, no wrapper task
                timer = pool.loop.call_later(pool.read_timeout, _expire, waiter, _IDLE_BODY)
                try:
                    await waiter
                finally:
                    timer.cancel()
            else:
                await waiter

    async def read(self, limit: int | None = None) -> bytes:
        """The rest of the body (up to `limit` bytes, the rest is dropped)."""
        parts = []
        size = 0
        while True:
            chunk = await self.read_chunk()
            if not chunk:
                break
            if limit is not None and size + len(chunk) > limit:
                parts.append(chunk[: limit - size])
                self.conn.abort()
                break
            parts.append(chunk)
            size += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Done with the response: reuse the connection when the body was read to its end.

        Only the exchange that owns the connection acts: once released, the connection may
        already carry another request, which a second release or a late close must not
        touch (a compat stream that arrived whole was released twice and cut a neighbour's
        exchange, and every such stream cost a new upstream connection).
        """
        conn = self.conn
        if conn._resp is self:
            conn.release()

    def close(self) -> None:
        """Abandon the response and its connection (a no-op once it was released)."""
        conn = self.conn
        if conn._resp is self:
            conn.abort()


class OriginPool:
    """Keep-alive connections to one scheme://host:port."""

    def __init__(self, scheme: str, host: str, port: int, *, limit: int = 0,
                 connect_timeout: float = 10.0, read_timeout: float = 0.0,
                 keepalive_timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None
                 ) -> None:
        self.loop = asyncio.get_running_loop()
        self.scheme = scheme
        self.host = host
        self.port = port
        self.ssl = ssl_context if scheme == "https" else None
        self.limit = limit
        self.connect_timeout = connect_timeout or None
        self.read_timeout = read_timeout
        self.keepalive_timeout = keepalive_timeout
        self._idle_conns: list[tuple[Connection, float]] = []
        self._all: set[Connection] = set()
        self._busy = 0  # exchanges holding a slot (only counted when limit > 0)
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        hostport = host if port == (443 if scheme == "https" else 80) else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            hostport = f"[{host}]:{port}"
        self.host_header = b"Host: " + hostport.encode("idna") + b"\r\n"

    def __repr__(self) -> str:
        return (f"<OriginPool {self.scheme}://{self.host}:{self.port} "
                f"[active {self.active} | idle {len(self._idle_conns)}]>")

    @property
    def active(self) -> int:
        return len(self._all) - len(self._idle_conns)

    @property
    def idle(self) -> int:
        return len(self._idle_conns)

    def _idle(self, conn: Connection) -> None:
        now = self.loop.time()
        self._idle_conns.append((conn, now))
        # the oldest idle connection goes once it is past keepalive_timeout
        first = self._idle_conns[0]
        if now - first[1] > self.keepalive_timeout:
            first[0].abort()

    async def _slot_take(self) -> None:
        while self._busy >= self.limit:
            fut = self.loop.create_future()
            self._slot_waiters.append(fut)
            try:
                await fut
            except BaseException:
                if fut in self._slot_waiters:
                    self._slot_waiters.remove(fut)
                raise
        self._busy += 1

    def _slot_free(self) -> None:
        self._busy -= 1
        while self._slot_waiters:
            fut = self._slot_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                break

    def _forget(self, conn: Connection) -> None:
        self._all.discard(conn)
        for i, (c, _) in enumerate(self._idle_conns):
            if c is conn:
                del self._idle_conns[i]
                break

    def _take_idle(self) -> Connection | None:
        now = self.loop.time()
        while self._idle_conns:
            conn, since = self._idle_conns.pop()
            if conn.closed or now - since > self.keepalive_timeout:
                conn.abort()
                continue
            return conn
        return None

    async def _connect(self) -> Connection:
        conn = Connection(self)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self.loop.create_connection(
                    lambda: conn, self.host, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise UpstreamError(f"connect failed ({type(exc).__name__})") from None
        self._all.add(conn)
        return conn

    async def request(self, method: str, target: str, headers: list[bytes] | bytes,
                      body: bytes | None) -> Response:
        """Send one request, return its response head (the body follows via read_chunk)."""
        head = [method.encode("ascii"), b" ", target.encode("latin-1"), b" HTTP/1.1\r\n",
                self.host_header]
        if isinstance(headers, bytes):
            head.append(headers)
        else:
            head.extend(headers)
        if body:
            head.append(b"Content-Length: %d\r\n\r\n" % len(body))
            payload = [b"".join(head), body] if len(body) > 16384 else [b"".join(head) + body]
        else:
            if method in ("POST", "PUT", "PATCH"):
                head.append(b"Content-Length: 0\r\n")
            head.append(b"\r\n")
            payload = [b"".join(head)]
        head_only = method == "HEAD"
        for _ in range(2):
            if self.limit:
                await self._slot_take()
            conn = self._take_idle()
            reused = conn is not None
            try:
                if conn is None:
                    conn = await self._connect()
            except BaseException:
                if self.limit:
                    self._slot_free()
                raise
            conn._slot = bool(self.limit)
            try:
                fut = conn.send(payload, head_only)
                if not self.read_timeout:
                    return await fut
                timer = self.loop.call_later(self.read_timeout, _expire, fut, _IDLE_HEAD)
                try:
                    return await fut
                finally:
                    timer.cancel()
            except UpstreamIdle:
                conn.abort()
                raise
            except UpstreamError:
                # A kept-alive connection the upstream had already closed: retry once on
                # a fresh one, but only if not a byte of response came back.
                conn.abort()
                if reused and not conn._got_bytes:
                    continue
                raise
            except BaseException:
                conn.abort()
                raise
        raise UpstreamError("upstream closed the connection")

    def close(self) -> None:
        for conn in list(self._all):
            conn.abort()
        self._all.clear()
        self._idle_conns.clear()


def tls_context() -> ssl.SSLContext:
    """One verifying TLS context, shared by every pool."""
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def encode_headers(pairs: Any) -> bytes:
    """(name, value) pairs → `Name: value\\r\\n...` bytes (str pairs encoded as UTF-8)."""
    out = []
    for k, v in pairs:
        if isinstance(k, str):
            k = k.encode("latin-1")
        if isinstance(v, str):
            v = v.encode("utf-8")
        out.append(k + b": " + v + b"\r\n")
    return b"".join(out)
