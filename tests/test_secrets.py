"""Distinctive fake keys sent through every route and failure path never show up in the
process log, the log store, /metrics or any error body the gateway writes itself.

The canaries are shaped so that no token-shape regex would catch them by luck
(`zz-LEAKCANARY-...`): only value-based redaction at the source keeps them out.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import aiohttp
import pytest

from aigw.logstore.codec import REQUEST, RESPONSE, unpack
from aigw import _json
from aigw import config as config_mod
from aigw.errors import ConfigError

from conftest import Reply, base_config

ADMIN = "zz-LEAKCANARY-admin-00a1b2c3d4"
C = {name: f"zz-LEAKCANARY-{name}-{i:02d}f00dcafe" for i, name in enumerate(
    ("authz", "xapikey", "query", "step", "stepauth", "cfaig", "goog", "compat", "badadmin",
     "rawline", "dead", "body"))}


def _found(text: str) -> list[str]:
    return [name for name, value in C.items() if value in text] + \
        (["admin"] if ADMIN in text else [])


class Probe:
    """Sends requests; keeps every body the gateway wrote itself (its envelope)."""

    def __init__(self, gw) -> None:
        self.gw = gw
        self.own_bodies: list[str] = []
        self.statuses: list[int] = []

    async def send(self, method: str, path: str, **kw) -> int:
        async with self.gw.request(method, path, **kw) as r:
            try:
                body = await r.read()
            except aiohttp.ClientPayloadError:  # a cut stream ends without its terminator
                body = b""
            self.statuses.append(r.status)
            if r.status >= 400 and b"AiGatewayError" in body or path.startswith("/client/"):
                self.own_bodies.append(body.decode("utf-8", "replace"))
            return r.status


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(5):
            return await reader.read(65536)
    finally:
        writer.close()


@pytest.fixture
async def leaky_setup(make_gateway, upstream, tmp_path):
    raw = base_config(upstream, {
        "server": {"max_body_bytes": 4096},
        "logs": {"backend": "sqlite", "path": str(tmp_path / "logs.db")},
        "admin": {"tokens": [ADMIN]},
    })
    gw = await make_gateway(raw=raw)
    return gw, upstream, tmp_path / "logs.db"


async def test_no_secret_reaches_logs_store_or_error_bodies(leaky_setup, caplog):
    caplog.set_level(logging.DEBUG)
    gw, upstream, db = leaky_setup
    p = Probe(gw)
    authz = {"Authorization": f"Bearer {C['authz']}", "Content-Type": "application/json"}
    chat = b'{"model":"gpt-4o-mini","messages":[]}'
    q = f"key={C['query']}"
    def echo_401(*keys: str) -> bytes:  # providers quote the key they refused
        return _json.dumps({"error": {"message": f"Incorrect API key provided: {keys}"}})

    upstream.script("/v1/chat/ok", Reply(body=b'{"model":"gpt-4o-mini","usage":{}}'))
    upstream.script("/v1/chat/e401", Reply(status=401, body=echo_401(C["authz"], C["query"])))
    upstream.script("/v1/chat/u401", Reply(status=401, body=echo_401(C["step"], C["query"])))
    upstream.script("/v1/chat/e500", Reply(status=500, body=b'{"error":"boom"}'))
    upstream.script("/v1/chat/e429", Reply(status=429, body=b'{"error":"slow down"}',
                                           headers={"Retry-After": "0",
                                                    "Content-Type": "application/json"}))
    upstream.script("/v1/chat/slow", Reply(delay=1.0))
    # a stream long enough to be stored deflated, quoting the client's key in its text
    echo = b'data: {"choices":[{"delta":{"content":"your key is %s"}}]}\n\n' % C["authz"].encode()
    upstream.script("/v1/chat/bigstream", Reply(chunks=[echo] * 30,
                                                headers={"Content-Type": "text/event-stream"}))
    upstream.script("/v1/chat/cut", Reply(chunks=[b"data: {\"a\":1}\n\n"] * 5, abort_after=2,
                                          headers={"Content-Type": "text/event-stream"}))
    upstream.script("/v1/messages", Reply(status=401, body=echo_401(C["xapikey"], C["query"])),
                    Reply(status=401, body=echo_401(C["compat"])))

    base = "/v1/acct/gw"
    # pass-through: success, upstream 4xx echoing the keys, 5xx, 429, timeout, network, cut
    for tail in ("ok", "e401", "e500", "e429", "bigstream"):
        await p.send("POST", f"{base}/openai/chat/{tail}?{q}", data=chat, headers=authz)
    await p.send("POST", f"{base}/openai/chat/slow?{q}", data=chat,
                 headers={**authz, "cf-aig-request-timeout": "50"})
    await p.send("POST", f"{base}/custom-dead/chat/completions?{q}", data=chat,
                 headers={**authz, "cf-aig-max-attempts": "2"})
    await p.send("POST", f"{base}/openai/chat/cut?{q}", data=chat, headers=authz)
    await p.send("POST", f"{base}/anthropic/v1/messages?{q}", data=chat,
                 headers={"x-api-key": C["xapikey"], "Content-Type": "application/json"})
    await p.send("POST", f"{base}/google-ai-studio/v1beta/models/g:generateContent?{q}",
                 data=b"{}", headers={"x-goog-api-key": C["goog"]})
    # bad input carrying keys: hostile path, bad cf-aig value, oversized body, bad metadata
    await p.send("POST", f"{base}/openai/..%2f..%2fx?{q}", data=chat, headers=authz)
    await p.send("POST", f"{base}/openai/chat/ok?{q}", data=chat,
                 headers={**authz, "cf-aig-request-timeout": C["cfaig"]})
    await p.send("POST", f"{base}/openai/chat/ok?{q}", data=b"x" * 5000, headers=authz)
    await p.send("POST", f"{base}/openai/chat/ok?{q}#{C['query']}", data=chat, headers=authz)
    await p.send("POST", f"{base}/openai/chat/ok", data=chat,
                 headers={**authz, "cf-aig-metadata": '{"k": "' + C["authz"]})
    await p.send("POST", f"{base}/nope/x?{q}", data=chat, headers=authz)
    # universal: keys in step headers, the authorization field, the endpoint's query,
    # cf-aig-authorization; success, fallback, all-failed, invalid steps
    step_ok = {"provider": "openai", "endpoint": f"chat/ok?{q}",
               "headers": {"Authorization": f"Bearer {C['step']}",
                           "cf-aig-authorization": f"Bearer {C['cfaig']}"},
               "query": {"model": "gpt-4o-mini", "api_key": C["body"]}}
    step_dead = {"provider": "custom-dead", "endpoint": f"x?{q}",
                 "authorization": f"Bearer {C['stepauth']}", "query": {}}
    step_401 = {**step_ok, "endpoint": f"chat/u401?{q}"}
    uni = {"cf-aig-authorization": f"Bearer {C['cfaig']}", "Content-Type": "application/json"}
    for steps in ([step_ok], [step_dead, step_ok], [step_401, step_dead], [step_dead],
                  [step_dead, step_401],
                  [{**step_ok, "headers": {"Bad Name": C["step"]}}],
                  [{**step_ok, "headers": {"X-A": C["step"] + "\r\nX-B: 1"}}],
                  [{**step_ok, "headers": {"Authorization": 7}, "authorization": C["stepauth"]}],
                  [{**step_ok, "endpoint": f"../x?{q}"}],
                  [{**step_ok, "config": {"requestTimeout": C["step"]}}],
                  [{**step_ok, "provider": C["step"]}]):
        await p.send("POST", base, data=_json.dumps(steps), headers=uni)
    await p.send("POST", base, data=b"{" + C["body"].encode(), headers=uni)
    # compat: the client's Bearer moves to the provider's header; upstream error echoes it
    await p.send("POST", f"{base}/compat/chat/completions",
                 data=_json.dumps({"model": "anthropic/claude-x", "messages": [
                     {"role": "user", "content": "hi"}]}),
                 headers={"Authorization": f"Bearer {C['compat']}"})
    # the logs API with a wrong admin token, and a malformed request line with a key in it
    await p.send("GET", "/client/v4/accounts/acct/ai-gateway/gateways/gw/logs",
                 headers={"Authorization": f"Bearer {C['badadmin']}"})
    reply = await _raw(gw.server.port, f"GET /v1/acct/gw/openai/x?key={C['rawline']}\x01 "
                                       f"HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.") and b" 400 " in reply[:20]
    assert set(p.statuses) >= {200, 400, 401, 413, 429, 500, 502, 504}, p.statuses

    await gw.server.gateway.log_writer.flush()
    async with gw.request("GET", "/metrics") as r:
        metrics = await r.text()

    # the log store, every column of every row
    con = sqlite3.connect(db)
    try:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = []
        for t in tables:
            cur = con.execute(f"SELECT * FROM {t}")  # noqa: S608 (test, own table names)
            names = [d[0] for d in cur.description]
            for row in cur:
                rec = dict(zip(names, row))
                for name, which in (("request_body", REQUEST), ("response_body", RESPONSE)):
                    if name in rec:  # large heads are stored deflated: read them as logged
                        rec[name] = unpack(rec[name], rec.get("body_codec"), which)
                dump.extend(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                            for v in rec.values())
    finally:
        con.close()
    store_text = "\n".join(dump)
    assert len(dump) > 0
    assert _found(store_text) == [], [d for d in dump if _found(d)]
    assert _found(caplog.text) == [], _leaking_records(caplog)
    assert _found(metrics) == []
    for body in p.own_bodies:
        assert _found(body) == [], body
    # the log store did record the failures (the test is not vacuous)
    assert "[REDACTED]" in store_text
    assert "your key is [REDACTED]" in store_text  # the deflated stream head, read back


def test_config_errors_and_dumps_do_not_quote_secrets():
    secret = C["authz"]
    bad = [
        {"admin": {"tokens": [secret + "\n"]}},
        {"admin": {"tokens": [secret, 7]}},
        {"providers": {"custom-x": {"base_url": f"http://u:{secret}@127.0.0.1:1/v1"}}},
        {"providers": {"custom-x": {"base_url": f"http://127.0.0.1:1/v1?key={secret}"}}},
        {"gateways": {"g": {"authentication": True, "tokens": [secret],
                            "keys": {"nope": {"default": secret}}}}},
        {"logs": {"backend": "postgres", "dsn": f"postgresql://u:{secret}@h/db\n"}},
    ]
    for raw in bad:
        with pytest.raises(ConfigError) as info:
            config_mod.from_dict(raw, env={})
        assert secret not in str(info.value), raw
    cfg = config_mod.from_dict({
        "admin": {"tokens": [secret]},
        "gateways": {"g": {"authentication": True, "tokens": [secret],
                           "keys": {"openai": {"default": secret}}}},
        "logs": {"backend": "postgres", "dsn": f"postgresql://u:{secret}@h/db"}}, env={})
    assert secret not in str(_json.dumps(config_mod.masked(cfg)))
    assert secret not in repr(cfg)


def _leaking_records(caplog) -> list[tuple[str, str]]:
    """(logger, message head) of every record that quotes a canary, for the failure text."""
    return [(r.name, r.getMessage()[:300]) for r in caplog.records
            if _found(r.getMessage() + (r.exc_text or ""))]


async def test_an_internal_error_is_a_500_envelope_logged_without_its_message(
        make_gateway, upstream, monkeypatch, caplog):
    from aigw.app import Gateway

    async def broken(self, *args):
        raise KeyError(f"Bearer {C['authz']}")

    monkeypatch.setattr(Gateway, "_passthrough", broken)
    gw = await make_gateway()
    caplog.set_level(logging.DEBUG)
    async with gw.post("/v1/acct/gw/openai/chat/completions", data=b"{}") as r:
        env = _json.loads(await r.read())
    assert r.status == 500 and env["name"] == "AiGatewayError" and env["internalCode"] == 2999
    assert "KeyError" in caplog.text and "broken" in caplog.text
    assert _found(caplog.text) == [] and _found(_json.dumps(env).decode()) == []
