"""Gateway policy end to end on a real socket: auth, stored keys, cache, rate limits."""

from __future__ import annotations

import asyncio

import pytest

from aigw import _json
from tests.conftest import Reply, odd_chunks

TOKEN = "gw-token-0123456789"
KEY = "sk-stored-openai-0123456789"
ALT = "sk-stored-openai-alt-987654"
ANT = "ant-stored-key-0123456789"
AUTH = {"cf-aig-authorization": f"Bearer {TOKEN}"}
SSE = {"Content-Type": "text/event-stream"}
SSE_BODY = (b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
            b'data: {"choices":[{"index":0,"delta":{"content":"lo \xc3\xa9"}}]}\n\n'
            b": keep-alive comment\n\n"
            b"data: [DONE]\n\n")


def gateways(**gw_extra):
    g = {"authentication": True, "tokens": [TOKEN],
         "keys": {"openai": {"default": KEY, "alt": ALT}, "anthropic": {"default": ANT}}}
    g.update(gw_extra)
    return {"gateways": {"sec": g, "open": {}, "cached": {"cache_ttl": 600},
                         "limited": {"rate_limiting_limit": 3, "rate_limiting_interval": 600},
                         "limcache": {"rate_limiting_limit": 2, "rate_limiting_interval": 600,
                                      "cache_ttl": 600}}}


@pytest.fixture
async def pgw(make_gateway):
    return await make_gateway(gateways())


async def call(gw, path, body=b'{"model":"m"}', headers=None, method="POST"):
    async with gw.request(method, path, data=body, headers=headers or {}) as r:
        return r.status, r.headers, await r.read()


# ------------------------------------------------------------------ authentication

@pytest.mark.parametrize("headers", [{}, {"cf-aig-authorization": "Bearer wrong"},
                                     {"cf-aig-authorization": "Bearer undefined"},
                                     {"cf-aig-authorization": TOKEN}])
@pytest.mark.parametrize("path", ["/v1/a/sec/openai/chat/completions", "/v1/a/sec",
                                  "/v1/a/sec/nosuchprovider/x"])
async def test_authenticated_gateway_refuses_without_token(upstream, pgw, headers, path):
    status, _, body = await call(pgw, path, headers=headers)
    assert status == 401
    assert _json.loads(body)["internalCode"] == 2009
    assert upstream.seen == []


async def test_valid_token_passes_and_never_goes_upstream(upstream, pgw):
    status, _, _ = await call(pgw, "/v1/a/sec/openai/chat/completions", headers=AUTH)
    assert status == 200
    assert "cf-aig-authorization" not in upstream.seen[-1].headers
    assert TOKEN not in repr(upstream.seen[-1].raw_headers)


@pytest.mark.parametrize("headers", [{}, {"cf-aig-authorization": "Bearer undefined"}])
async def test_open_gateway_ignores_header(upstream, pgw, headers):
    status, _, _ = await call(pgw, "/v1/a/open/openai/chat/completions", headers=headers)
    assert status == 200
    assert "cf-aig-authorization" not in upstream.seen[-1].headers


# ------------------------------------------------------------------ stored keys

async def test_stored_key_injected_in_registry_header(upstream, pgw):
    await call(pgw, "/v1/a/sec/openai/chat/completions", headers=AUTH)
    assert upstream.seen[-1].headers["authorization"] == f"Bearer {KEY}"
    await call(pgw, "/v1/a/sec/anthropic/v1/messages", headers=AUTH)
    assert upstream.seen[-1].headers["x-api-key"] == ANT
    assert "authorization" not in upstream.seen[-1].headers


async def test_alias_and_client_precedence(upstream, pgw):
    await call(pgw, "/v1/a/sec/openai/chat/completions", headers={**AUTH, "cf-aig-byok-alias": "alt"})
    assert upstream.seen[-1].headers["authorization"] == f"Bearer {ALT}"
    assert "cf-aig-byok-alias" not in upstream.seen[-1].headers
    await call(pgw, "/v1/a/sec/openai/chat/completions",
               headers={**AUTH, "Authorization": "Bearer client-own"})
    assert upstream.seen[-1].headers["authorization"] == "Bearer client-own"


async def test_unknown_alias_is_400_2040_and_nothing_upstream(upstream, pgw):
    status, _, body = await call(pgw, "/v1/a/sec/openai/chat/completions",
                                 headers={**AUTH, "cf-aig-byok-alias": "nope"})
    doc = _json.loads(body)
    assert status == 400 and doc["internalCode"] == 2040
    assert "Configured aliases: 'default', 'alt'" in doc["message"]
    assert KEY not in body.decode() and upstream.seen == []


async def test_universal_steps_get_their_own_providers_key(upstream, pgw):
    upstream.script("/v1/messages", Reply(status=503, body=b'{"error":"down"}'))
    steps = [{"provider": "anthropic", "endpoint": "v1/messages", "query": {"m": 1}},
             {"provider": "openai", "endpoint": "chat/completions", "query": {"m": 1}}]
    status, headers, _ = await call(pgw, "/v1/a/sec", body=_json.dumps(steps), headers=AUTH)
    assert status == 200 and headers["cf-aig-step"] == "1"
    assert upstream.seen[0].headers["x-api-key"] == ANT
    assert upstream.seen[1].headers["authorization"] == f"Bearer {KEY}"


# ------------------------------------------------------------------ cache

P = "/v1/a/open/openai/chat/completions"


async def test_no_cache_status_when_caching_not_considered(upstream, pgw):
    _, headers, _ = await call(pgw, P)
    assert "cf-aig-cache-status" not in headers


async def test_miss_then_hit_without_upstream_call(upstream, pgw):
    upstream.script("/v1/chat", Reply(body=b'{"answer":1}', headers={
        "Content-Type": "application/json", "x-upstream": "yes"}))
    h = {"cf-aig-cache-ttl": "120", "Authorization": "Bearer tenant-a"}
    s1, h1, b1 = await call(pgw, P, headers=h)
    s2, h2, b2 = await call(pgw, P, headers={**h, "cf-aig-metadata": '{"user":"x"}'})
    assert (s1, h1["cf-aig-cache-status"]) == (200, "MISS")
    assert (s2, h2["cf-aig-cache-status"]) == (200, "HIT")
    assert b1 == b2 == b'{"answer":1}' and h2["x-upstream"] == "yes"
    assert h2["content-type"] == "application/json"
    assert len(upstream.seen) == 1


async def test_gateway_ttl_caches_everything(upstream, pgw):
    path = "/v1/a/cached/openai/chat/completions"
    await call(pgw, path)
    _, h, _ = await call(pgw, path)
    assert h["cf-aig-cache-status"] == "HIT" and len(upstream.seen) == 1
    _, h, _ = await call(pgw, path, body=b'{"model":"other"}')
    assert h["cf-aig-cache-status"] == "MISS" and len(upstream.seen) == 2


async def test_skip_cache(upstream, pgw):
    path = "/v1/a/cached/openai/chat/completions"
    await call(pgw, path)
    _, h, _ = await call(pgw, path, headers={"cf-aig-skip-cache": "true"})
    assert h["cf-aig-cache-status"] == "MISS" and len(upstream.seen) == 2


async def test_custom_key_alone_opts_in(upstream, pgw):
    await call(pgw, P, body=b'{"q":1}', headers={"cf-aig-cache-key": "k1"})
    _, h, b = await call(pgw, P, body=b'{"q":2}', headers={"cf-aig-cache-key": "k1"})
    assert h["cf-aig-cache-status"] == "HIT" and len(upstream.seen) == 1
    assert _json.loads(b)["body"] == '{"q":1}'


async def test_bad_ttl_is_clear_400(upstream, pgw):
    status, _, body = await call(pgw, P, headers={"cf-aig-cache-ttl": "5"})
    assert status == 400 and b"cf-aig-cache-ttl" in body and upstream.seen == []


async def test_tenants_never_share_answers(upstream, pgw):
    h = {"cf-aig-cache-ttl": "120"}
    await call(pgw, P, headers={**h, "Authorization": "Bearer tenant-a"})
    _, hb, _ = await call(pgw, P, headers={**h, "Authorization": "Bearer tenant-b"})
    _, hn, _ = await call(pgw, P, headers=h)
    assert hb["cf-aig-cache-status"] == "MISS" and hn["cf-aig-cache-status"] == "MISS"
    assert len(upstream.seen) == 3


async def test_stored_key_tenants_by_alias(upstream, pgw):
    path = "/v1/a/sec/openai/chat/completions"
    h = {**AUTH, "cf-aig-cache-ttl": "120"}
    await call(pgw, path, headers=h)
    _, h2, _ = await call(pgw, path, headers={**h, "cf-aig-byok-alias": "alt"})
    _, h3, _ = await call(pgw, path, headers={**h, "Authorization": f"Bearer {KEY}"})
    assert h2["cf-aig-cache-status"] == "MISS"
    assert h3["cf-aig-cache-status"] == "HIT"  # the same credential, sent by the client


async def test_errors_are_not_cached(upstream, pgw):
    upstream.script("/v1/chat", Reply(status=400, body=b'{"error":"bad"}'))
    for _ in range(2):
        s, h, _ = await call(pgw, P, headers={"cf-aig-cache-ttl": "120"})
        assert s == 400 and h["cf-aig-cache-status"] == "MISS"
    assert len(upstream.seen) == 2


async def test_streamed_response_replayed_byte_exact_as_stream(upstream, pgw):
    upstream.script("/v1/chat", Reply(chunks=odd_chunks(SSE_BODY), headers=SSE))
    h = {"cf-aig-cache-ttl": "120"}
    _, h1, b1 = await call(pgw, P, body=b'{"stream":true}', headers=h)
    async with pgw.post(P, data=b'{"stream":true}', headers=h) as r:
        assert r.headers["cf-aig-cache-status"] == "HIT"
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers.get("transfer-encoding") == "chunked"
        b2 = await r.read()
    assert b1 == b2 == SSE_BODY and len(upstream.seen) == 1


async def test_cut_stream_is_not_cached(upstream, pgw):
    upstream.script("/v1/chat", Reply(chunks=odd_chunks(SSE_BODY), headers=SSE, abort_after=5))
    h = {"cf-aig-cache-ttl": "120"}
    for _ in range(2):
        try:
            await call(pgw, P, body=b'{"stream":true}', headers=h)
        except Exception:
            pass
    assert len(upstream.seen) == 2


async def test_concurrent_identical_misses_make_one_call(upstream, pgw):
    upstream.script("/v1/chat", Reply(body=b'{"slow":true}', delay=0.3))
    h = {"cf-aig-cache-ttl": "120"}
    res = await asyncio.gather(*(call(pgw, P, headers=h) for _ in range(8)))
    assert all(s == 200 and b == b'{"slow":true}' for s, _, b in res)
    assert sorted(hh["cf-aig-cache-status"] for _, hh, _ in res) == ["HIT"] * 7 + ["MISS"]
    assert len(upstream.seen) == 1


async def test_coalesced_waiters_go_upstream_when_leader_fails(upstream, pgw):
    upstream.script("/v1/chat", Reply(status=500, body=b"no", delay=0.2))
    h = {"cf-aig-cache-ttl": "120"}
    res = await asyncio.gather(*(call(pgw, P, headers=h) for _ in range(3)))
    assert [s for s, _, _ in res] == [500] * 3 and len(upstream.seen) == 3


async def test_universal_hit_carries_the_producing_step(upstream, pgw):
    upstream.script("/v1/messages", Reply(status=503, body=b"down"))
    upstream.script("/v1/chat", Reply(chunks=odd_chunks(SSE_BODY), headers=SSE))
    steps = [{"provider": "anthropic", "endpoint": "v1/messages", "query": {"m": 1},
              "headers": {"x-api-key": "a"}},
             {"provider": "openai", "endpoint": "chat/completions", "query": {"m": 1},
              "headers": {"Authorization": "Bearer o", "cf-aig-cache-ttl": "300"}}]
    s1, h1, b1 = await call(pgw, "/v1/a/open", body=_json.dumps(steps))
    s2, h2, b2 = await call(pgw, "/v1/a/open", body=_json.dumps(steps))
    assert (h1["cf-aig-step"], h1["cf-aig-cache-status"]) == ("1", "MISS")
    assert (h2["cf-aig-step"], h2["cf-aig-cache-status"]) == ("1", "HIT")
    assert b1 == b2 == SSE_BODY
    assert len(upstream.seen) == 2  # 503 then 200; the hit makes no call


# ------------------------------------------------------------------ rate limits

async def test_rate_limit_429_2003_with_retry_after(upstream, pgw):
    path = "/v1/a/limited/openai/chat/completions"
    got = [await call(pgw, path) for _ in range(5)]
    assert [s for s, _, _ in got] == [200, 200, 200, 429, 429]
    _, h, body = got[3]
    assert _json.loads(body)["internalCode"] == 2003
    assert 1 <= int(h["Retry-After"]) <= 600
    assert len(upstream.seen) == 3


async def test_rate_limit_on_universal_keeps_retry_after(upstream, pgw):
    steps = [{"provider": "openai", "endpoint": "chat/completions", "query": {}}]
    got = [await call(pgw, "/v1/a/limited", body=_json.dumps(steps)) for _ in range(4)]
    assert got[3][0] == 429 and "Retry-After" in got[3][1] and got[3][1]["cf-aig-step"] == "0"


async def test_cache_hits_do_not_count(upstream, pgw):
    path = "/v1/a/limcache/openai/chat/completions"
    for _ in range(5):
        s, _, _ = await call(pgw, path)
        assert s == 200
    assert (await call(pgw, path, body=b"2"))[0] == 200
    assert (await call(pgw, path, body=b"3"))[0] == 429


# ------------------------------------------------------------------ hygiene

async def test_gateway_token_and_keys_never_logged(upstream, pgw, caplog):
    import logging

    upstream.script("/v1/chat", Reply(status=500, body=b"x"))
    with caplog.at_level(logging.DEBUG):
        await call(pgw, "/v1/a/sec/openai/chat/completions", headers=AUTH)
        await call(pgw, "/v1/a/sec/openai/chat/completions",
                   headers={"cf-aig-authorization": "Bearer wrong-token-xyz"})
    assert TOKEN not in caplog.text and KEY not in caplog.text
    assert "wrong-token-xyz" not in caplog.text


async def test_gateway_without_policy_never_touches_the_store(upstream, pgw):
    for _ in range(3):
        assert (await call(pgw, P))[0] == 200
    store = pgw.server.gateway.runtime.store
    assert store.kind == "memory"
    assert (store.cache.hits, store.cache.misses, len(store.cache)) == (0, 0, 0)
    assert "fixed 0 | sliding 0" in repr(store.limiter)


# ------------------------------------------------------------------ logs and metrics

async def test_cache_hit_logged_as_cached_with_zero_cost(make_gateway, upstream, tmp_path):
    from tests.conftest import base_config

    admin = "admin-tok-123456"
    gw = await make_gateway(raw=base_config(upstream, {
        "logs": {"backend": "sqlite", "path": str(tmp_path / "l.db")},
        "admin": {"tokens": [admin]}}))
    upstream.script("/v1/chat", Reply(body=b'{"model":"gpt-4o-mini","usage":{"prompt_tokens":'
                                           b'1000,"completion_tokens":100}}'))
    ids = []
    for _ in range(2):
        async with gw.post("/v1/acct/gw1/openai/chat/completions", data=b'{"model":"gpt-4o-mini"}',
                           headers={"cf-aig-cache-ttl": "120"}) as r:
            assert r.status == 200
            ids.append(r.headers["cf-aig-log-id"])
    assert ids[0] != ids[1]
    await gw.server.gateway.log_writer.flush()
    logs = "/client/v4/accounts/acct/ai-gateway/gateways/gw1/logs?direction=asc"
    async with gw.request("GET", logs, headers={"Authorization": f"Bearer {admin}"}) as r:
        rows = (await r.json())["result"]
    by_id = {row["id"]: row for row in rows}  # rows of one millisecond may come in any order
    assert sorted(by_id) == sorted(ids)
    assert by_id[ids[0]]["cached"] is False and by_id[ids[0]]["cost"] > 0
    assert by_id[ids[1]]["cached"] is True and by_id[ids[1]]["cost"] == 0


async def test_metrics_count_hits_and_refusals(upstream, pgw):
    await call(pgw, "/v1/a/cached/openai/chat/completions")
    await call(pgw, "/v1/a/cached/openai/chat/completions")
    for _ in range(4):
        await call(pgw, "/v1/a/limited/openai/chat/completions")
    async with pgw.request("GET", "/metrics") as r:
        text = (await r.read()).decode()
    assert 'aigw_cache_hits_total{gateway="cached"} 1' in text
    assert 'aigw_rate_limited_total{gateway="limited"} 1' in text


async def test_compat_route_unknown_alias_is_2040(upstream, pgw):
    status, _, body = await call(pgw, "/v1/a/sec/compat/chat/completions",
                                 body=b'{"model":"openai/gpt-4o","messages":[]}',
                                 headers={**AUTH, "cf-aig-byok-alias": "nope"})
    assert status == 400 and _json.loads(body)["internalCode"] == 2040
    status, _, _ = await call(pgw, "/v1/a/sec/compat/chat/completions",
                              body=b'{"model":"openai/gpt-4o","messages":[]}', headers=AUTH)
    assert status == 200 and upstream.seen[-1].headers["authorization"] == f"Bearer {KEY}"


async def test_rate_limit_is_per_gateway_whatever_the_account(upstream, pgw):
    got = [(await call(pgw, f"/v1/acct{i}/limited/openai/chat/completions"))[0] for i in range(5)]
    assert got == [200, 200, 200, 429, 429]


async def test_cache_control_headers_never_go_upstream(upstream, pgw):
    await call(pgw, P, headers={"cf-cache-ttl": "120", "cf-skip-cache": "false",
                                "cf-aig-cache-key": "k"})
    sent = upstream.seen[-1].headers
    assert not [h for h in sent if h.startswith("cf-")]


async def test_reload_keeps_cache_and_counters(upstream, make_gateway):
    from aigw import config as config_mod
    from tests.conftest import base_config

    raw = base_config(upstream, gateways())
    gw = await make_gateway(raw=raw)
    lim = "/v1/a/limited/openai/chat/completions"
    assert (await call(gw, lim))[0] == 200
    await call(gw, "/v1/a/cached/openai/x")
    old_store = gw.server.gateway.runtime.store
    await gw.server.reload(config_mod.from_dict(raw))
    assert gw.server.gateway.runtime.store is old_store
    _, h, _ = await call(gw, "/v1/a/cached/openai/x")
    assert h["cf-aig-cache-status"] == "HIT"
    assert [(await call(gw, lim))[0] for _ in range(3)] == [200, 200, 429]
