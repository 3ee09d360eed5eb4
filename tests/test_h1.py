"""The upstream HTTP/1.1 client against a raw socket server scripted per test."""

from __future__ import annotations

import asyncio

import pytest

from aigw.h1 import OriginPool, UpstreamCut, UpstreamError


class Raw:
    """A TCP server that answers each request with the next scripted byte string."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader, writer):
        self.connections += 1
        try:
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                reply = self.replies.pop(0)
                if reply is None:  # close without answering
                    break
                if callable(reply):
                    await reply(writer)
                    continue
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw_server():
    servers = []

    async def make(*replies):
        raw = Raw(replies)
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        servers.append(server)
        raw.port = server.sockets[0].getsockname()[1]
        return raw

    yield make
    for s in servers:
        s.close()
        await s.wait_closed()


def ok(body=b"hello", extra=b""):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_keep_alive_reuses_one_connection(raw_server):
    raw = await raw_server(ok(b"a"), ok(b"b"), ok(b"c"))
    pool = OriginPool("http", "127.0.0.1", raw.port)
    for expected in (b"a", b"b", b"c"):
        resp = await pool.request("POST", "/x", b"X-A: 1\r\n", b"{}")
        assert await resp.read() == expected
        resp.release()
    assert raw.connections == 1
    assert repr(pool).endswith("[active 0 | idle 1]>")
    first = raw.requests[0]
    assert first.startswith(b"POST /x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % raw.port)
    assert b"X-A: 1\r\n" in first and b"Content-Length: 2\r\n" in first and first.endswith(b"{}")
    pool.close()


async def test_a_released_response_cannot_touch_the_next_exchange(raw_server):
    """A second release, or a late close, of a response whose connection went back to the
    pool must leave the connection (and the exchange now using it) alone."""
    gate = asyncio.Event()

    async def slow(writer):
        await gate.wait()
        writer.write(ok(b"second"))
        await writer.drain()

    raw = await raw_server(ok(b"first"), slow, ok(b"third"))
    pool = OriginPool("http", "127.0.0.1", raw.port)
    first = await pool.request("GET", "/", b"", None)
    assert await first.read() == b"first"
    first.release()
    pending = asyncio.ensure_future(pool.request("GET", "/", b"", None))
    await asyncio.sleep(0.05)  # request 2 is on the same connection, waiting for its head
    first.release()
    first.close()
    gate.set()
    second = await asyncio.wait_for(pending, 5)
    first.close()  # the connection now carries `second`, mid-exchange
    assert await second.read() == b"second"
    second.release()
    third = await pool.request("GET", "/", b"", None)
    assert await third.read() == b"third"
    third.release()
    assert raw.connections == 1
    pool.close()


async def test_stale_kept_alive_connection_is_retried_once(raw_server):
    raw = await raw_server(ok(b"first"), None, ok(b"second"))
    pool = OriginPool("http", "127.0.0.1", raw.port)
    resp = await pool.request("GET", "/", b"", None)
    assert await resp.read() == b"first"
    resp.release()
    # the server closes the idle connection without answering the next request
    resp = await pool.request("GET", "/", b"", None)
    assert await resp.read() == b"second"
    resp.release()
    assert raw.connections == 2
    pool.close()


async def test_chunked_and_until_close_bodies(raw_server):
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    until_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
    raw = await raw_server(chunked, until_close)
    pool = OriginPool("http", "127.0.0.1", raw.port)
    resp = await pool.request("GET", "/", b"", None)
    assert resp.content_length is None and await resp.read() == b"abcde"
    resp.release()
    resp = await pool.request("GET", "/", b"", None)
    assert await resp.read() == b"all of it"
    resp.release()
    assert pool.idle == 0  # Connection: close is never pooled
    pool.close()


async def test_truncated_bodies_raise_cut(raw_server):
    async def truncated(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await writer.drain()
        writer.transport.abort()

    async def broken_chunks(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n")
        await writer.drain()
        writer.transport.abort()

    for reply in (truncated, broken_chunks):
        raw = await raw_server(reply)
        pool = OriginPool("http", "127.0.0.1", raw.port)
        resp = await pool.request("GET", "/", b"", None)
        with pytest.raises(UpstreamCut):
            await resp.read()
        resp.close()
        assert pool.active == 0 and pool.idle == 0
        pool.close()


async def test_garbage_and_early_close_are_errors(raw_server):
    raw = await raw_server(b"NOT HTTP AT ALL\r\n\r\n")
    pool = OriginPool("http", "127.0.0.1", raw.port)
    with pytest.raises(UpstreamError):
        await pool.request("GET", "/", b"", None)
    raw = await raw_server(None)
    pool = OriginPool("http", "127.0.0.1", raw.port)
    with pytest.raises(UpstreamError):
        await pool.request("GET", "/", b"", None)
    assert pool.active == 0


async def test_interim_1xx_then_final_response(raw_server):
    raw = await raw_server(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(b"final"))
    pool = OriginPool("http", "127.0.0.1", raw.port)
    resp = await pool.request("GET", "/", b"", None)
    assert resp.status == 200 and await resp.read() == b"final"
    assert all(k.lower() != b"link" for k, _ in resp.raw_headers)
    pool.close()


async def test_head_response_has_no_body(raw_server):
    raw = await raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
    pool = OriginPool("http", "127.0.0.1", raw.port)
    resp = await pool.request("HEAD", "/", b"", None)
    assert resp.status == 200 and resp.content_length == 1234
    assert await resp.read() == b""
    resp.release()
    assert pool.idle == 0 and pool.active == 0  # not reused after HEAD
    pool.close()


async def test_connect_refused_is_an_upstream_error():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    pool = OriginPool("http", "127.0.0.1", port)
    with pytest.raises(UpstreamError):
        await pool.request("GET", "/", b"", None)


async def test_pool_limit_queues_and_releases(raw_server):
    async def slow(writer):
        await asyncio.sleep(0.2)
        writer.write(ok(b"s"))
        await writer.drain()

    raw = await raw_server(slow, slow, slow, slow)
    pool = OriginPool("http", "127.0.0.1", raw.port, limit=1)

    async def one():
        resp = await pool.request("GET", "/", b"", None)
        body = await resp.read()
        resp.release()
        return body

    results = await asyncio.wait_for(asyncio.gather(one(), one(), one()), 5)
    assert results == [b"s"] * 3
    assert raw.connections == 1  # with limit=1 the three requests shared one connection
    assert pool.active == 0
    pool.close()


async def test_stream_idle_timeout_cuts_a_silent_stream(raw_server):
    async def stall(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await asyncio.sleep(3)

    raw = await raw_server(stall)
    pool = OriginPool("http", "127.0.0.1", raw.port, read_timeout=0.2)
    resp = await pool.request("GET", "/", b"", None)
    assert await resp.read_chunk() == b"abc"
    with pytest.raises(UpstreamCut):
        await resp.read_chunk()
    resp.close()
    pool.close()


@pytest.fixture
def tls_files(tmp_path):
    import shutil
    import subprocess
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    return cert, key


async def test_tls_upstream_with_verification(tls_files):
    """Real providers are HTTPS: the pool speaks TLS, verifies the certificate and host."""
    import ssl

    from aiohttp import web

    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def handle(request):
        return web.Response(body=b'{"tls":true}', content_type="application/json")

    runner = web.ServerRunner(web.Server(handle))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        pool = OriginPool("https", "localhost", port, ssl_context=client_ctx)
        for _ in range(2):
            resp = await pool.request("GET", "/", b"", None)
            assert resp.status == 200 and await resp.read() == b'{"tls":true}'
            resp.release()
        assert pool.idle == 1  # kept alive over TLS
        pool.close()
        # an untrusted certificate is refused before any request is written
        strict = OriginPool("https", "localhost", port, ssl_context=ssl.create_default_context())
        with pytest.raises(UpstreamError):
            await strict.request("GET", "/", b"", None)
    finally:
        await runner.cleanup()
