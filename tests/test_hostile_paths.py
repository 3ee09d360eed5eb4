"""A corpus of hostile endpoints and pass-through paths against a recording upstream.

Each value is sent both as a universal step's `endpoint` and as a raw pass-through path
(written byte for byte on a socket, so nothing on the client side normalises it). The
gateway may refuse it or forward it; either way not one request may reach another host (a
canary server listens for that) or a path outside the provider's base URL.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
import unicodedata
from urllib.parse import unquote

import pytest
from aiohttp import web

from aigw import _json
from aigw.config import from_dict
from aigw.errors import InvalidPath
from aigw.paths import UpstreamBase
from aigw.upstream import Pools

from conftest import base_config

OPENAI_BASE = "/v1"


@pytest.fixture
async def canary():
    """A second server that no request may ever reach."""
    hits: list[str] = []

    async def handle(request: web.BaseRequest) -> web.Response:
        hits.append(request.raw_path)
        return web.Response(text="canary")

    runner = web.ServerRunner(web.Server(handle))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield port, hits
    await runner.cleanup()


DOTS = ["..", ".", "%2e%2e", "%2E%2E", "%2e.", ".%2E", "%252e%252e", "%25252e%25252e",
        "\uff0e\uff0e", "%ef%bc%8e%ef%bc%8e", "\u2025", "%e2%80%a5", "%c0%ae%c0%ae",
        "%e0%80%ae%e0%80%ae", "%c0%2e%c0%2e", ".. ", "%2e%2e%20", "..%00", "..\t",
        "\u3002\u3002", "%u002e%u002e"]
SEPS = ["/", "\\", "%2f", "%2F", "%5c", "%5C", "%252f", "%255c", "%25252f", "\uff0f",
        "%ef%bc%8f", "\uff3c", "%c0%af", "%e0%80%af"]


def host_escapes(port: int) -> list[str]:
    """Values that try to name another host (the canary's address)."""
    hp = f"127.0.0.1:{port}"
    return [
        f"http://{hp}/x", f"https://{hp}", f"HTTP://{hp}/x", f"//{hp}/x", f"///{hp}/x",
        f"\\\\{hp}\\x", f"/\\{hp}/x", f"\\/{hp}/x", f"user@{hp}/x", f"@{hp}/x",
        f"user:pass@{hp}/x", f"%40{hp}/x", f"a%40{hp}/x", f"http:%2f%2f{hp}/x",
        f"http:%252f%252f{hp}", f"%2f%2f{hp}/x", f"%252f%252f{hp}/x", f"http:\\\\{hp}",
        f"[::1]:{port}/x", f"http://[::1]:{port}/", f"http://[::ffff:127.0.0.1]:{port}/",
        f"//[::1]:{port}", f"http://0x7f000001:{port}/", f"http://2130706433:{port}/",
        f"http://localhost:{port}/", f"\uff0f\uff0f{hp}/x", f"%ef%bc%8f%ef%bc%8f{hp}",
        f" http://{hp}/", f"\thttp://{hp}/", f"%20http://{hp}/", f"http:/{hp}/x",
        f"h\ttp://{hp}/", f"ht%09tp://{hp}/", "file:///etc/passwd", "gopher://x:70/_x",
        "javascript:alert(1)", "data:text/plain,x", f"chat@{hp}/x",
        f"{hp}@evil/x", f"chat/completions#@{hp}", f"chat/completions?@{hp}",
        f"chat%23@{hp}/x", f"v1//{hp}/x", f"chat/..//{hp}", f"./{hp}",
    ]


OTHER = [
    "x\r\nHost: evil", "x%0d%0aHost:%20evil", "x%250d%250aHost:%20evil", "x\nX-Injected: 1",
    "x%0aX-Injected:1", "x\x00y", "x%00y", "x%2500y", "x\x7fy", "x%7fy", "a" * 5000,
    "a/" * 2100, "chat/" + "%2e" * 3000, "%", "%zz", "%c0", "%ff%fe", "\udc80",
    "chat/completions\r\n\r\nGET / HTTP/1.1", "chat completions", "chat\u200b/..",
    "\u202e../x", "chat/%u2215..", "chat;/../x", "chat/.;/x", "chat/..;/x", "..;/x",
    "..;/..;/x", "%2e%2e;/x", "..;jsessionid=1/x", "chat/completions#frag", "chat#/../../x",
    "chat/%23/../x", "%u002e%u002e/x", "chat/%U002E%U002E/x",
]


def corpus(port: int) -> list[str]:
    out: list[str] = []
    for d in DOTS:
        out += [d, f"{d}/x", f"chat/{d}/{d}/x", f"chat/completions/{d}", f"v1/{d}/{d}/etc"]
    for s in SEPS:
        for d in ("..", "%2e%2e", "\uff0e\uff0e"):
            out += [f"{d}{s}x", f"chat{s}{d}{s}{d}{s}x"]
        out += [f"{s}{s}127.0.0.1:{port}/x", f"{s}etc{s}passwd"]
    out += host_escapes(port)
    out += OTHER
    return list(dict.fromkeys(out))


def _decoded(path: str) -> str:
    path = re.sub(r"%[uU]([0-9A-Fa-f]{4})", lambda m: chr(int(m.group(1), 16)), path)
    for _ in range(4):
        nxt = unquote(path, errors="replace")
        if nxt == path:
            break
        path = nxt
    return unicodedata.normalize("NFKC", path)


def under_base(seen_path: str, base: str) -> bool:
    """A forwarded path is under `base` after every decoding and dot-segment removal."""
    path = seen_path.partition("?")[0]
    if not path.startswith(base + "/") or "//" in path or "\\" in path:
        return False
    text = _decoded(path)
    if "\\" in text or "//" in text or any(ord(c) < 0x20 for c in text):
        return False
    if "#" in path or "%u" in path.lower():
        return False
    text = "/".join(seg.split(";", 1)[0] for seg in text.split("/"))
    norm = posixpath.normpath(text)
    return norm == base or norm.startswith(base + "/")


def test_corpus_is_large_enough():
    assert len(corpus(1)) >= 200


async def _raw_request(port: int, path: str) -> bytes:
    """POST the raw path on a fresh socket; the reply's status line (or b'' if closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        target = ("/v1/acct/gw/openai/" + path).encode("utf-8", "surrogateescape")
        writer.write(b"POST " + target + b" HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n"
                     b"Connection: close\r\nAuthorization: Bearer sk-x\r\n\r\n{}")
        async with asyncio.timeout(5):
            return await reader.read(65536)
    finally:
        writer.close()


async def test_hostile_endpoints_never_leave_the_base_url(make_gateway, upstream, canary):
    port, hits = canary
    gw = await make_gateway()
    values = corpus(port)
    statuses: dict[int, int] = {}
    for value in values:
        step = {"provider": "openai", "endpoint": value, "query": {"model": "m"},
                "headers": {"Authorization": "Bearer sk-x"}}
        try:
            data = _json.dumps([step])
        except TypeError:  # a lone surrogate: not JSON-encodable by the client
            continue
        async with gw.post("/v1/acct/gw", data=data) as r:
            statuses[r.status] = statuses.get(r.status, 0) + 1
            body = await r.read()
            if r.status >= 400:
                env = _json.loads(body)
                assert env["name"] == "AiGatewayError" and env["success"] is False
        reply = await _raw_request(gw.server.port, value)
        assert reply == b"" or reply.startswith(b"HTTP/"), (value, reply[:80])
    assert hits == []
    bad = [s.path for s in upstream.seen if not under_base(s.path, OPENAI_BASE)]
    assert bad == []
    assert statuses.get(400, 0) >= len(values) * 3 // 4  # most of the corpus is refused


async def test_forwarded_paths_are_byte_identical(make_gateway, upstream):
    """What is forwarded is the client's raw path, not a decoded or re-encoded form."""
    gw = await make_gateway()
    for path in ("chat/completions", "files/file-abc%2Bdef", "models/gpt-4o%3Abeta",
                 "@cf/meta/llama-3.1-8b-instruct"):
        reply = await _raw_request(gw.server.port, path)
        assert reply.startswith(b"HTTP/1.1 200"), reply[:100]
    assert [s.path for s in upstream.seen] == [
        "/v1/chat/completions", "/v1/files/file-abc%2Bdef", "/v1/models/gpt-4o%3Abeta",
        "/v1/@cf/meta/llama-3.1-8b-instruct"]


HOST_PARAMS = ["evil.example", "127.0.0.1", "a.b", "a@b", "a:1", "A", "-a", "a" * 64, "",
               "%61", "a%2eb", "a\u3002b", "a/..", "..", "[::1]", "a\tb", "xn--80ak6aa92e",
               "bedrock-runtime.evil", "bedrock-runtime%2eevil", "us-east-1.evil"]


@pytest.mark.parametrize("value", HOST_PARAMS)
async def test_host_placeholders_only_take_their_pattern(value):
    """Azure's {resource} and Bedrock's {service}.{region} never carry another host."""
    cfg = from_dict({"logs": {"backend": "off"}})
    pools = Pools(cfg)
    await pools.start()
    try:
        for slug, rest, suffix in (("azure-openai", f"{value}/dep/chat/completions",
                                    ".openai.azure.com"),
                                   ("aws-bedrock", f"bedrock-runtime/{value}/model/x/invoke",
                                    ".amazonaws.com")):
            base = UpstreamBase(cfg.providers[slug], pools)
            try:
                pool, _ = base.resolve("acct", rest, "")
            except InvalidPath:
                continue
            label = pool.host[: -len(suffix)]
            assert pool.host.endswith(suffix) and pool.scheme == "https" and pool.port == 443
            assert all(part and part.replace("-", "").isalnum() and part.isascii()
                       for part in label.split(".")), pool.host
            assert label.count(".") <= (1 if slug == "aws-bedrock" else 0)
    finally:
        await pools.close()


def test_the_corpus_oracle_rejects_escapes():
    assert not under_base("/v1/../x", OPENAI_BASE)
    assert not under_base("/v1/%2e%2e/x", OPENAI_BASE)
    assert not under_base("/v1/%252e%252e/x", OPENAI_BASE)
    assert not under_base("/v1//x", OPENAI_BASE)
    assert not under_base("/x/v1/y", OPENAI_BASE)
    assert not under_base("/v1/..;/x", OPENAI_BASE)
    assert not under_base("/v1/%u002e%u002e/x", OPENAI_BASE)
    assert not under_base("/v1/chat#/../../x", OPENAI_BASE)
    assert under_base("/v1/chat/completions?x=1", OPENAI_BASE)


def test_base_config_points_openai_at_v1(upstream):
    upstream.server = type("S", (), {"port": 1})()
    assert base_config(upstream)["providers"]["openai"]["base_url"].endswith(OPENAI_BASE)
