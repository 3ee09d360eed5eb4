from __future__ import annotations


import pytest
from aiohttp import web

from _logfixtures import ACCOUNT, GATEWAY, make_row, pg_dsn, require_pg, unique_table
from aigw import _json
from aigw.api import handle_api, split_api_path
from aigw.logstore.sqlite import SqliteLogStore

TOKEN = "admin-secret-token"
BASE = f"/client/v4/accounts/{ACCOUNT}/ai-gateway/gateways/{GATEWAY}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteLogStore(str(tmp_path / "logs.sqlite"))
        await s.start()
        yield s
        await s.close()
        return
    require_pg()
    from aigw.logstore.postgres import PostgresLogStore
    s = PostgresLogStore(pg_dsn(), table=unique_table())
    await s.start()
    try:
        yield s
    finally:
        await s.drop()
        await s.close()


def seed_rows():
    rows = [
        make_row(0),
        make_row(1, provider="anthropic", model="claude-haiku-4-5", metadata='{"user":"alice","tier":1}'),
        make_row(2, success=False, status_code=503, cost=None, tokens_in=None, tokens_out=None,
                 step=0, event_id="ev-2"),
        make_row(3, cached=True, cost=0.0, duration=2, step=0, metadata='{"user":"bob"}',
                 response_content_type="text/event-stream"),
        make_row(4, provider="workers-ai", model="@cf/meta/llama-3.1-8b-instruct", feedback=1,
                 request_type="universal", user_agent="curl/8"),
        make_row(5, provider="openai", model="gpt-4o", step=1, feedback=-1, cost=0.5,
                 duration=900, tokens_in=1000, tokens_out=500),
    ]
    return rows


@pytest.fixture
async def api(store, aiohttp_raw_server, aiohttp_client):
    rows = seed_rows()
    other = make_row(9, gateway="other-gw")
    await store.insert_many(rows + [other])

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        parts = split_api_path(request.path)
        if parts is None:
            return web.Response(status=404)
        return await handle_api(request, store, (TOKEN, "second-token"), *parts)

    server = await aiohttp_raw_server(handler)
    client = await aiohttp_client(server)
    client.rows = rows
    client.store = store
    return client


def _serve(store, aiohttp_raw_server):
    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        parts = split_api_path(request.path)
        if parts is None:
            return web.Response(status=404)
        return await handle_api(request, store, (TOKEN, "second-token"), *parts)

    return aiohttp_raw_server(handler)


@pytest.fixture
async def both(tmp_path, aiohttp_raw_server, aiohttp_client):
    """A SQLite and a PostgreSQL store holding the same rows, each behind the API; use
    `same_answer` to ask both the same question."""
    require_pg()
    from aigw.logstore.postgres import PostgresLogStore

    stores = [SqliteLogStore(str(tmp_path / "both.sqlite")),
              PostgresLogStore(pg_dsn(), table=unique_table())]
    rows = seed_rows() + [make_row(9, gateway="other-gw")]
    clients = []
    try:
        for s in stores:
            await s.start()
            await s.insert_many(rows)
            client = await aiohttp_client(await _serve(s, aiohttp_raw_server))
            client.rows, client.store = rows[:-1], s
            clients.append(client)
        yield clients
    finally:
        await stores[1].drop()
        for s in stores:
            await s.close()


async def same_answer(both, method: str, path: str, params=None, json=None):
    """(status, body) of one request, asserted identical from both stores. A DELETE's rows
    are put back afterwards (the stores ignore ids they hold), so calls can follow."""
    answers = []
    for client in both:
        resp = await client.request(method, f"{BASE}/{path}", params=params, json=json,
                                    headers=AUTH)
        body = await resp.json()
        assert resp.status < 500, (client.store, params, body)
        answers.append((resp.status, body))
        if method == "DELETE":
            await client.store.insert_many(client.rows)
    assert answers[0] == answers[1], (params, answers)
    return answers[0]


async def _ids(api, params) -> list[str]:
    resp = await api.get(f"{BASE}/logs", params=params, headers=AUTH)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["success"] is True and body["errors"] == []
    return [r["id"] for r in body["result"]]


def _pick(rows, *idx):
    return {rows[i].id for i in idx}


FILTER_CASES = [
    ({}, (0, 1, 2, 3, 4, 5)),
    ({"cached": "true"}, (3,)),
    ({"cached": "false"}, (0, 1, 2, 4, 5)),
    ({"success": "false"}, (2,)),
    ({"feedback": "1"}, (4,)),
    ({"feedback": "0"}, (5,)),
    ({"provider": "anthropic"}, (1,)),
    ({"model": "gpt-4o"}, (5,)),
    ({"response_content_type": "text/event-stream"}, (3,)),
    ({"request_content_type": "application/json"}, (0, 1, 2, 3, 4, 5)),
    ({"start_date": "2026-09-21T14:13:22Z", "end_date": "2026-09-21T14:13:24Z"}, (2, 3, 4)),
    ({"min_cost": "0.002", "max_cost": "0.005"}, (1, 4)),
    ({"min_duration": "104"}, (4, 5)),
    ({"max_duration": "50"}, (3,)),
    ({"min_tokens_in": "40", "max_tokens_in": "60"}, (3, 4)),
    ({"min_tokens_out": "500"}, (5,)),
    ({"max_total_tokens": "25"}, (0, 1, 2)),
    ({"search": "alice"}, (1,)),
    ({"search": "llama"}, (4,)),
    ({"filters": '[{"key":"provider","operator":"neq","value":["openai"]}]'}, (1, 4)),
    ({"filters": '[{"key":"model","operator":"contains","value":["claude","llama"]}]'}, (1, 4)),
    ({"filters": '[{"key":"cost","operator":"gt","value":[0.004]}]'}, (4, 5)),
    ({"filters": '[{"key":"tokens","operator":"lt","value":[25]}]'}, (0, 1, 2)),
    ({"filters": '[{"key":"event_id","operator":"eq","value":["ev-2"]}]'}, (2,)),
    ({"filters": '[{"key":"metadata.key","operator":"eq","value":["user"]}]'}, (1, 3)),
    ({"filters": '[{"key":"metadata.value","operator":"eq","value":["bob"]}]'}, (3,)),
    ({"filters": '[{"key":"metadata.value","operator":"contains","value":["lic"]}]'}, (1,)),
    ({"filters": '[{"key":"success","operator":"eq","value":[false]}]'}, (2,)),
    ({"filters": '[{"key":"request_type","operator":"eq","value":["universal"]}]'}, (4,)),
    ({"filters": '[{"key":"user_agent","operator":"contains","value":["curl"]}]'}, (4,)),
    ({"filters": '[{"key":"duration","operator":"lt","value":[101]}]'}, (0, 3)),
    ({"filters": '[{"key":"created_at","operator":"gt","value":["2026-09-21T14:13:24Z"]}]'},
     (5,)),
    ({"filters": '[{"key":"feedback","operator":"eq","value":[1]}]'}, (4,)),
    ({"filters.key": "provider", "filters.operator": "eq", "filters.value": "workers-ai"}, (4,)),
    ({"filters[0][key]": "cached", "filters[0][operator]": "eq", "filters[0][value][]": "true"},
     (3,)),
]


@pytest.mark.parametrize("params,expected", FILTER_CASES,
                         ids=[str(sorted(p.items())) for p, _ in FILTER_CASES])
async def test_each_filter(api, params, expected):
    params = {"per_page": "50", **params}
    assert set(await _ids(api, params)) == _pick(api.rows, *expected)


async def test_default_order_is_newest_first_and_gateway_scoped(api):
    assert await _ids(api, {}) == [r.id for r in reversed(api.rows)]


async def test_order_by_and_direction(api):
    ids = await _ids(api, {"order_by": "duration", "order_by_direction": "asc"})
    assert ids[0] == api.rows[3].id and ids[-1] == api.rows[5].id
    ids = await _ids(api, {"order_by": "provider", "direction": "desc"})
    assert ids[0] == api.rows[4].id


async def test_pagination_and_result_info(api):
    resp = await api.get(f"{BASE}/logs", params={"per_page": "2", "page": "2",
                                                 "direction": "asc"}, headers=AUTH)
    body = await resp.json()
    assert [r["id"] for r in body["result"]] == [api.rows[2].id, api.rows[3].id]
    info = body["result_info"]
    assert info["count"] == 2 and info["page"] == 2 and info["per_page"] == 2
    assert info["total_count"] == 6
    assert info["min_cost"] == 0.0 and info["max_cost"] == 0.5
    assert info["min_duration"] == 2 and info["max_duration"] == 900
    assert info["max_total_tokens"] == 1500


@pytest.mark.parametrize("params,needle", [
    ({"order_by": "id; DROP TABLE x"}, "order_by"),
    ({"direction": "sideways"}, "asc or desc"),
    ({"per_page": "0"}, "per_page"),
    ({"page": "x"}, "page"),
    ({"cached": "maybe"}, "true or false"),
    ({"min_cost": "cheap"}, "number"),
    ({"start_date": "yesterday"}, "ISO 8601"),
    ({"filters": "not json"}, "JSON"),
    ({"filters": '[{"key":"nope","operator":"eq","value":["x"]}]'}, "unsupported key"),
    ({"filters": '[{"key":"cost","operator":"like","value":[1]}]'}, "operator"),
    ({"filters": '[{"key":"cost","operator":"lt","value":[1, 2]}]'}, "exactly one"),
    ({"filters": '[{"key":"cost","operator":"eq","value":[]}]'}, "at least one"),
])
async def test_bad_filters_are_400_never_500(api, params, needle):
    resp = await api.get(f"{BASE}/logs", params=params, headers=AUTH)
    body = await resp.json()
    assert resp.status == 400
    assert body["success"] is False and needle in body["errors"][0]["message"]


STRICT_NUMBER_CASES = [
    ({"page": "1_0"}, "page"), ({"page": "\u0661\u0660"}, "page"), ({"page": " 5"}, "page"),
    ({"page": "+2"}, "page"), ({"page": "2.0"}, "page"), ({"per_page": "1e1"}, "per_page"),
    ({"page": "9" * 5000}, "page"), ({"per_page": "-1"}, "per_page"),
    ({"min_cost": "1_0"}, "min_cost"), ({"min_cost": "nan"}, "min_cost"),
    ({"max_cost": "inf"}, "max_cost"), ({"max_cost": "-Infinity"}, "max_cost"),
    ({"min_duration": "1e999"}, "finite"), ({"min_tokens_in": "\u0663"}, "min_tokens_in"),
    ({"max_total_tokens": " 1"}, "max_total_tokens"), ({"min_cost": "0x10"}, "min_cost"),
    ({"filters.key": "cost", "filters.operator": "gt", "filters.value": "1_0"}, "number"),
    ({"filters[0][key]": "duration", "filters[0][operator]": "lt",
      "filters[0][value][]": "NaN"}, "number"),
    ({"filters": '[{"key":"tokens","operator":"lt","value":["1_0"]}]'}, "number"),
    ({"filters": '[{"key":"cost","operator":"lt","value":[1e400]}]'}, "JSON"),
    ({"filters": '[{"key":"cost","operator":"lt","value":[' + "9" * 400 + ']}]'}, "filters"),
]


@pytest.mark.parametrize("params,needle", STRICT_NUMBER_CASES,
                         ids=[repr(p)[:60] for p, _ in STRICT_NUMBER_CASES])
async def test_numbers_in_the_query_are_strict(api, params, needle):
    for method in (api.get, api.delete):
        resp = await method(f"{BASE}/logs", params=params, headers=AUTH)
        body = await resp.json()
        assert resp.status == 400, body
        assert body["success"] is False and needle in body["errors"][0]["message"]
    assert len(await _ids(api, {})) == 6  # the DELETE above removed nothing


async def test_strict_numbers_still_take_every_ordinary_form(api):
    assert set(await _ids(api, {"min_cost": "5e-3", "max_cost": ".5"})) == _pick(api.rows, 4, 5)
    assert set(await _ids(api, {"min_cost": "-1", "max_cost": "0.0010"})) == _pick(api.rows, 0, 3)
    assert set(await _ids(api, {"min_duration": "104."})) == _pick(api.rows, 4, 5)
    assert await _ids(api, {"page": "2", "per_page": "5", "direction": "asc"}) == [api.rows[5].id]
    resp = await api.delete(f"{BASE}/logs", headers=AUTH,
                            params={"limit": "1", "order_by_direction": "asc"})
    assert (await resp.json())["result"]["deleted"] == 1


async def test_sql_in_values_is_only_data(api):
    assert await _ids(api, {"model": "x' OR '1'='1"}) == []
    assert await _ids(api, {"search": "%"}) == []
    assert len(await _ids(api, {})) == 6


async def test_auth(api):
    resp = await api.get(f"{BASE}/logs")
    assert resp.status == 401
    assert (await resp.json())["errors"][0]["code"] == 10000
    resp = await api.get(f"{BASE}/logs", headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401
    resp = await api.get(f"{BASE}/logs", headers={"Authorization": "Bearer second-token"})
    assert resp.status == 200


async def test_no_admin_tokens_disables_the_api(store, aiohttp_raw_server, aiohttp_client):
    async def handler(request):
        return await handle_api(request, store, (), *split_api_path(request.path))

    client = await aiohttp_client(await aiohttp_raw_server(handler))
    resp = await client.get(f"{BASE}/logs", headers=AUTH)
    assert resp.status == 403


async def test_get_one_and_404(api):
    row = api.rows[1]
    resp = await api.get(f"{BASE}/logs/{row.id}", headers=AUTH)
    body = await resp.json()
    got = body["result"]
    assert got["id"] == row.id and got["provider"] == "anthropic"
    assert got["metadata"] == '{"user":"alice","tier":1}'
    assert got["request_head"].startswith('{"model"') and got["request_head_complete"] is True
    assert got["response_size"] == len(b'{"id":"x","usage":{}}')
    resp = await api.get(f"{BASE}/logs/0190a000-0000-7000-8000-000000000000", headers=AUTH)
    assert resp.status == 404 and (await resp.json())["success"] is False
    other = f"/client/v4/accounts/{ACCOUNT}/ai-gateway/gateways/other-gw/logs/{row.id}"
    assert (await api.get(other, headers=AUTH)).status == 404


async def test_request_and_response_bodies(api):
    row = api.rows[0]
    resp = await api.get(f"{BASE}/logs/{row.id}/request", headers=AUTH)
    assert resp.status == 200 and await resp.json() == {"model": "gpt-4o-mini", "messages": []}
    resp = await api.get(f"{BASE}/logs/{row.id}/response", headers=AUTH)
    assert await resp.json() == {"id": "x", "usage": {}}
    resp = await api.get(f"{BASE}/logs/{row.id}/headers", headers=AUTH)
    assert resp.status == 404


async def test_body_not_stored_is_a_clear_404(api):
    row = make_row(20)
    row.request_body = None
    await api.store.insert_many([row])
    resp = await api.get(f"{BASE}/logs/{row.id}/request", headers=AUTH)
    assert resp.status == 404 and "collect_log_payload" in (await resp.json())["errors"][0]["message"]


async def test_patch_feedback_score_metadata(api):
    row = api.rows[0]
    resp = await api.patch(f"{BASE}/logs/{row.id}", headers=AUTH,
                           json={"feedback": 1, "score": 87.5, "metadata": {"reviewed": True}})
    body = await resp.json()
    assert resp.status == 200, body
    assert body["result"]["feedback"] == 1 and body["result"]["score"] == 87.5
    assert body["result"]["metadata"] == '{"reviewed":true}'
    assert set(await _ids(api, {"feedback": "1"})) == _pick(api.rows, 0, 4)
    resp = await api.patch(f"{BASE}/logs/{row.id}", headers=AUTH, json={"feedback": None})
    assert (await resp.json())["result"]["feedback"] is None


async def test_patch_feedback_is_minus_one_one_or_null_and_the_filter_finds_it(api):
    """PATCH takes -1|1|null (reference 6.3); the list filter's 0|1 finds -1|1."""
    row = api.rows[0]
    for feedback, found_by in ((-1, "0"), (1, "1"), (-1.0, "0"), (1.0, "1")):
        resp = await api.patch(f"{BASE}/logs/{row.id}", headers=AUTH, json={"feedback": feedback})
        assert (await resp.json())["result"]["feedback"] == feedback
        assert row.id in await _ids(api, {"feedback": found_by})
        assert row.id in await _ids(api, {"filters": _json.dumps(
            [{"key": "feedback", "operator": "eq", "value": [int(found_by)]}]).decode()})
    for bad in (0, 0.0, -0.0, True, False, "1", 2, -2, 1.5, [1], {"v": 1}):
        resp = await api.patch(f"{BASE}/logs/{row.id}", headers=AUTH, json={"feedback": bad})
        body = await resp.json()
        assert resp.status == 400, (bad, body)
        assert "feedback must be -1" in body["errors"][0]["message"]
    resp = await api.get(f"{BASE}/logs/{row.id}", headers=AUTH)
    assert (await resp.json())["result"]["feedback"] == 1  # no refused PATCH changed it


@pytest.mark.parametrize("payload", [{"feedback": 2}, {"score": "high"}, {"score": 101},
                                     {"metadata": {"a": {"b": 1}}}, {"bogus": 1}, [1]])
async def test_patch_rejects_bad_bodies(api, payload):
    resp = await api.patch(f"{BASE}/logs/{api.rows[0].id}", headers=AUTH, json=payload)
    assert resp.status == 400


async def test_patch_unknown_id_is_404(api):
    resp = await api.patch(f"{BASE}/logs/0190a000-0000-7000-8000-000000000000", headers=AUTH,
                           json={"feedback": 1})
    body = await resp.json()
    assert resp.status == 404 and body["errors"][0]["message"] == "Log not found"


async def test_delete_with_filters(api):
    resp = await api.delete(f"{BASE}/logs", headers=AUTH, params={"provider": "openai"})
    body = await resp.json()
    assert body["success"] is True and body["result"]["deleted"] == 4
    assert set(await _ids(api, {})) == _pick(api.rows, 1, 4)
    # the other gateway's row is untouched
    other = f"/client/v4/accounts/{ACCOUNT}/ai-gateway/gateways/other-gw/logs"
    assert len((await (await api.get(other, headers=AUTH)).json())["result"]) == 1


async def test_delete_with_limit_and_order(api):
    resp = await api.delete(f"{BASE}/logs", headers=AUTH,
                            params={"limit": "2", "order_by": "created_at",
                                    "order_by_direction": "asc"})
    assert (await resp.json())["result"]["deleted"] == 2
    assert set(await _ids(api, {})) == _pick(api.rows, 2, 3, 4, 5)


async def test_analytics_sums_match_rows(api):
    rows = api.rows
    resp = await api.get(f"{BASE}/analytics", headers=AUTH, params={
        "start": "2026-09-21T00:00:00Z", "end": "2026-09-22T00:00:00Z", "interval": "hour"})
    body = await resp.json()
    assert resp.status == 200, body
    r = body["result"]
    totals = r["totals"]
    assert totals["requests"] == len(rows)
    assert totals["errors"] == sum(not x.success for x in rows)
    assert totals["cached_requests"] == sum(x.cached for x in rows)
    assert totals["tokens_in"] == sum(x.tokens_in or 0 for x in rows)
    assert totals["tokens_out"] == sum(x.tokens_out or 0 for x in rows)
    assert totals["cost"] == pytest.approx(sum(x.cost or 0 for x in rows))
    assert sum(p["requests"] for p in r["series"]) == len(rows)
    assert r["series"][0]["time"] == "2026-09-21T14:00:00.000Z"


async def test_analytics_group_by(api):
    params = {"start": "2026-09-21T00:00:00Z", "end": "2026-09-22T00:00:00Z",
              "interval": "minute", "group_by": "provider"}
    r = (await (await api.get(f"{BASE}/analytics", headers=AUTH, params=params)).json())["result"]
    groups = {g["group"]: g for g in r["groups"]}
    assert groups["openai"]["requests"] == 4 and groups["anthropic"]["requests"] == 1
    assert groups["openai"]["cost"] == pytest.approx(0.001 + 0.0 + 0.5)
    params["group_by"] = "metadata.user"
    r = (await (await api.get(f"{BASE}/analytics", headers=AUTH, params=params)).json())["result"]
    groups = {g["group"]: g["requests"] for g in r["groups"]}
    assert groups == {"alice": 1, "bob": 1, None: 4}


@pytest.mark.parametrize("params", [{"interval": "week"}, {"group_by": "path"},
                                    {"group_by": "metadata.a'b"}, {"start": "nope"},
                                    {"start": "2026-09-22T00:00:00Z", "end": "2026-09-21T00:00:00Z"},
                                    {"start": "2000-01-01T00:00:00Z", "interval": "minute"}])
async def test_analytics_bad_params_are_400(api, params):
    resp = await api.get(f"{BASE}/analytics", headers=AUTH, params=params)
    assert resp.status == 400


async def test_unknown_routes_and_methods(api):
    assert (await api.get(f"{BASE}/datasets", headers=AUTH)).status == 404
    assert (await api.post(f"{BASE}/logs", headers=AUTH)).status == 405


async def test_official_cloudflare_sdk_lists_and_fetches(api):
    from cloudflare import AsyncCloudflare

    base_url = str(api.make_url("/client/v4"))
    async with AsyncCloudflare(api_token=TOKEN, base_url=base_url, max_retries=0) as cf:
        page = await cf.ai_gateway.logs.list(GATEWAY, account_id=ACCOUNT, per_page=3,
                                             order_by="created_at", order_by_direction="asc")
        assert [log.id for log in page.result] == [r.id for r in api.rows[:3]]
        assert page.result[0].provider == "openai" and page.result[0].success is True
        everything = [log.id async for log in
                      cf.ai_gateway.logs.list(GATEWAY, account_id=ACCOUNT, per_page=4)]
        assert set(everything) == {r.id for r in api.rows}
        filtered = await cf.ai_gateway.logs.list(
            GATEWAY, account_id=ACCOUNT,
            filters=[{"key": "provider", "operator": "eq", "value": ["anthropic"]}])
        assert [log.id for log in filtered.result] == [api.rows[1].id]
        got = await cf.ai_gateway.logs.get(api.rows[1].id, account_id=ACCOUNT,
                                           gateway_id=GATEWAY)
        assert got.model == "claude-haiku-4-5" and got.request_head_complete is True
        assert got.tokens_in == 20 and got.cost == pytest.approx(0.002)
        await cf.ai_gateway.logs.edit(api.rows[1].id, account_id=ACCOUNT, gateway_id=GATEWAY,
                                      feedback=1, score=90)
        body = await cf.ai_gateway.logs.request(api.rows[1].id, account_id=ACCOUNT,
                                                gateway_id=GATEWAY)
        assert body == {"model": "gpt-4o-mini", "messages": []}
        deleted = await cf.ai_gateway.logs.delete(
            GATEWAY, account_id=ACCOUNT,
            filters=[{"key": "provider", "operator": "eq", "value": ["workers-ai"]}])
        assert deleted.success is True
    assert api.rows[4].id not in await _ids(api, {})


def _f(key, op, *values):
    return {"key": key, "operator": op, "value": list(values)}


async def test_official_cloudflare_sdk_lists_and_deletes_with_several_filters(api):
    """The SDK sends two or more filters grouped by field (filters.key=a&filters.key=b&
    filters.operator=..&filters.value=..): one value each, or the extra values to the one
    filter that is not lt/gt, is read; anything else is a 400 naming the ambiguity."""
    import json

    from cloudflare import AsyncCloudflare, BadRequestError

    rows = api.rows
    base_url = str(api.make_url("/client/v4"))
    async with AsyncCloudflare(api_token=TOKEN, base_url=base_url, max_retries=0) as cf:
        async def listed(filters, **kw):
            page = await cf.ai_gateway.logs.list(GATEWAY, account_id=ACCOUNT, per_page=50,
                                                 filters=filters, **kw)
            return {log.id for log in page.result}

        assert await listed([_f("provider", "eq", "openai"),
                             _f("success", "eq", True)]) == _pick(rows, 0, 3, 5)
        assert await listed([_f("provider", "eq", "openai"), _f("model", "neq", "gpt-4o"),
                             _f("cost", "gt", 0.0005)]) == _pick(rows, 0)
        # several values for the one filter that is not lt/gt, wherever it stands
        assert await listed([_f("cost", "gt", 0.0015), _f("provider", "eq", "openai",
                                                           "anthropic"),
                             _f("duration", "lt", 500)]) == _pick(rows, 1)
        assert await listed([_f("model", "contains", "claude", "llama"),
                             _f("tokens", "gt", 30)]) == _pick(rows, 4)
        for ambiguous in ([_f("provider", "eq", "openai", "anthropic"),
                           _f("model", "contains", "gpt", "claude")],
                          [_f("provider", "eq", "openai", "anthropic"), _f("cached", "eq", False),
                           _f("cost", "lt", 1)]):
            with pytest.raises(BadRequestError) as err:
                await listed(ambiguous)
            assert "ambiguous" in str(err.value) and "JSON array" in str(err.value)
            with pytest.raises(BadRequestError):
                await cf.ai_gateway.logs.delete(GATEWAY, account_id=ACCOUNT, filters=ambiguous)
        with pytest.raises(BadRequestError) as err:  # the SDK drops a null value
            await listed([_f("provider", "eq", "openai"), _f("model", "eq", None)])
        assert "has no value" in str(err.value)
        # the way round the ambiguity the message names: one JSON array in extra_query
        assert await listed(None, extra_query={"filters": json.dumps(
            [_f("provider", "eq", "openai", "anthropic"),
             _f("model", "contains", "gpt-4o-", "claude")])}) == _pick(rows, 0, 1, 2, 3)
        assert len(await listed(None)) == 6  # no refused DELETE removed anything

        await cf.ai_gateway.logs.delete(GATEWAY, account_id=ACCOUNT, filters=[
            _f("provider", "eq", "openai"), _f("cached", "eq", False)])
        assert await listed(None) == _pick(rows, 1, 3, 4)
        await cf.ai_gateway.logs.delete(GATEWAY, account_id=ACCOUNT, filters=[
            _f("provider", "eq", "anthropic", "workers-ai"), _f("duration", "gt", 100),
            _f("cost", "lt", 0.01)])
        assert await listed(None) == _pick(rows, 3)


@pytest.mark.parametrize("query,expected", [
    # interleaved, each filters.key starting a filter, is read as before
    ("filters.key=provider&filters.operator=eq&filters.value=openai&filters.value=anthropic"
     "&filters.key=cached&filters.operator=eq&filters.value=true", (3,)),
    ("filters.key=provider&filters.value=workers-ai", (4,)),
    # grouped, one value each, operators left out (eq)
    ("filters.key=provider&filters.key=cached&filters.value=openai&filters.value=true", (3,)),
    ("filters.key=provider&filters.key=model&filters.operator=neq&filters.operator=contains"
     "&filters.value=openai&filters.value%5B%5D=a", (1, 4)),
])
async def test_dotted_filters_in_both_layouts(api, query, expected):
    resp = await api.get(f"{BASE}/logs?per_page=50&{query}", headers=AUTH)
    body = await resp.json()
    assert resp.status == 200, body
    assert {r["id"] for r in body["result"]} == _pick(api.rows, *expected)


@pytest.mark.parametrize("query,needle", [
    ("filters.key=provider&filters.key=cached&filters.operator=eq&filters.value=openai"
     "&filters.value=true", "1 filters.operator"),
    ("filters.key=cost&filters.key=duration&filters.operator=gt&filters.operator=lt"
     "&filters.value=1&filters.value=2&filters.value=3", "exactly one value"),
    ("filters.operator=eq&filters.key=provider&filters.value=openai", "must come first"),
    ("filters.kee=provider", "unknown field"),
])
async def test_dotted_filters_that_cannot_be_read_are_400(api, query, needle):
    resp = await api.get(f"{BASE}/logs?{query}", headers=AUTH)
    body = await resp.json()
    assert resp.status == 400 and needle in body["errors"][0]["message"], body


_ALL_KEYS = ("id", "created_at", "request_content_type", "response_content_type",
             "request_type", "success", "cached", "provider", "model", "model_type", "cost",
             "tokens", "tokens_in", "tokens_out", "duration", "feedback", "event_id",
             "metadata.key", "metadata.value", "user_agent")
_EMPTYISH = ([None], [], [""], ["\u0000"], [None, ""], [{}], [[]], "", None)


async def test_every_key_and_operator_with_empty_values_is_400_or_an_answer(both):
    """No filter reaches SQL without a usable value: [null], [], [""] and the like under
    every key and operator are a 400 or the same rows from both stores, never a 5xx."""
    refused = set()
    for key in _ALL_KEYS:
        for op in ("eq", "neq", "contains", "lt", "gt"):
            for values in _EMPTYISH:
                f = _json.dumps([{"key": key, "operator": op, "value": values}]).decode()
                for method in ("GET", "DELETE"):
                    status, body = await same_answer(both, method, "logs",
                                                     params={"filters": f, "per_page": "50"})
                    if status != 200:
                        assert status == 400 and body["success"] is False
                        assert body["errors"][0]["message"].startswith("filters")
                        refused.add((key, op, _json.dumps(values).decode()))
    # what cannot mean anything is refused, whatever the store
    for key in ("model", "metadata.value", "id", "event_id"):
        assert (key, "contains", "[null]") in refused
        assert (key, "contains", '[""]') in refused
        assert (key, "eq", "[]") in refused
    assert ("metadata.key", "eq", "[null]") in refused
    assert ("metadata.value", "neq", "[null]") in refused
    assert ("id", "lt", "[null]") in refused
    assert ("model", "eq", '["\\u0000"]') in refused
    assert ("cost", "eq", "[null]") in refused
    # null under eq/neq on a text field means "empty": only row 2 has an event id
    _, body = await same_answer(both, "GET", "logs", params={
        "filters": '[{"key":"event_id","operator":"eq","value":[null]}]', "per_page": "50"})
    assert {r["id"] for r in body["result"]} == _pick(both[0].rows, 0, 1, 3, 4, 5)
    _, body = await same_answer(both, "GET", "logs", params={
        "filters": '[{"key":"event_id","operator":"neq","value":[null]}]'})
    assert [r["id"] for r in body["result"]] == [both[0].rows[2].id]


@pytest.mark.parametrize("params", [{"model": "gpt\u0000"}, {"provider": "\u0000"},
                                    {"search": "a\u0000b"}])
async def test_nul_in_text_parameters_is_400_on_both_stores(both, params):
    for method in ("GET", "DELETE"):
        status, body = await same_answer(both, method, "logs", params=params)
        assert status == 400 and "NUL" in body["errors"][0]["message"]


async def _add_rows(both, rows):
    for client in both:
        await client.store.insert_many(rows)
        client.rows = client.rows + rows


async def test_boolean_metadata_reads_true_and_false_on_both_stores(both):
    """JSON true/false in metadata are the text "true"/"false" for filters and group_by
    on SQLite as on PostgreSQL (SQLite's json_each holds them as 1/0)."""
    extra = [make_row(10, metadata='{"flag":true,"n":1}'), make_row(11, metadata='{"flag":false}'),
             make_row(12, metadata='{"flag":"true","x":null}'), make_row(13, metadata='{"flag":1}')]
    await _add_rows(both, extra)
    ids = {r.id: i for i, r in enumerate(both[0].rows)}

    async def found(key, op, *values):
        f = _json.dumps([{"key": key, "operator": op, "value": list(values)}]).decode()
        _, body = await same_answer(both, "GET", "logs", params={"filters": f, "per_page": "50"})
        return sorted(ids[r["id"]] for r in body["result"])

    assert await found("metadata.value", "eq", "true") == [6, 8]
    assert await found("metadata.value", "eq", True) == [6, 8]
    assert await found("metadata.value", "eq", "false") == [7]
    assert await found("metadata.value", "eq", "1") == [1, 6, 9]  # row 1 has "tier":1
    assert await found("metadata.value", "eq", 1) == [1, 6, 9]
    assert await found("metadata.value", "contains", "RU") == [6, 8]
    assert await found("metadata.value", "neq", "true", "false") == [0, 1, 2, 3, 4, 5, 9]
    assert await found("metadata.key", "eq", "x") == [8]
    _, body = await same_answer(both, "GET", "analytics", params={
        "start": "2026-09-21T00:00:00Z", "end": "2026-09-22T00:00:00Z",
        "group_by": "metadata.flag"})
    groups = {g["group"]: g["requests"] for g in body["result"]["groups"]}
    assert groups == {"true": 2, "false": 1, "1": 1, None: 6}
    _, body = await same_answer(both, "GET", "analytics", params={
        "start": "2026-09-21T00:00:00Z", "end": "2026-09-22T00:00:00Z",
        "group_by": "metadata.x"})
    assert {g["group"]: g["requests"] for g in body["result"]["groups"]} == {None: 10}
    for group_by in ("provider", "model", "metadata.user", None):  # series in the same order
        await same_answer(both, "GET", "analytics", params={
            "start": "2026-09-21T00:00:00Z", "end": "2026-09-22T00:00:00Z",
            "interval": "minute", **({"group_by": group_by} if group_by else {})})


@pytest.mark.parametrize("order_by", ["cost", "tokens_in", "tokens_out", "duration", "feedback",
                                      "model", "model_type", "provider", "success", "cached",
                                      "created_at"])
async def test_order_by_puts_nulls_last_ascending_first_descending_on_both_stores(both,
                                                                                  order_by):
    extra = [make_row(10, model="Zeta", duration=None, cost=None, success=None),
             make_row(11, model="@cf/x", model_type="chat", cached=None, feedback=1),
             make_row(12, model="\u00e9clair", provider="Anthropic", tokens_out=None)]
    await _add_rows(both, extra)
    for direction in ("asc", "desc"):
        _, body = await same_answer(both, "GET", "logs", params={
            "order_by": order_by, "order_by_direction": direction, "per_page": "50"})
        values = [r[order_by] for r in body["result"]]
        nulls = [v is None for v in values]
        assert nulls == sorted(nulls, reverse=direction == "desc"), values
        present = [v for v in values if v is not None]
        assert present == sorted(present, reverse=direction == "desc"), values
        if order_by == "cost":
            assert values[-1 if direction == "asc" else 0] is None
        # the DELETE picks its `limit` rows in the same order on both
        status, body = await same_answer(both, "DELETE", "logs", params={
            "order_by": order_by, "order_by_direction": direction, "limit": "3"})
        assert body["result"]["deleted"] == 3


async def test_logs_api_error_codes_are_its_own(api, aiohttp_raw_server, aiohttp_client):
    """400s of the Logs API carry 2914 (2900 for a PATCH body that is not JSON) and a failed
    store 503/2915: not 2912/2913, which are the loop guard's and the body timeout's."""
    async def code(resp, status):
        body = await resp.json()
        assert resp.status == status and body["success"] is False, body
        return body["errors"][0]["code"]

    assert await code(await api.get(f"{BASE}/logs", headers=AUTH,
                                     params={"cached": "maybe"}), 400) == 2914
    assert await code(await api.get(f"{BASE}/logs", headers=AUTH,
                                     params={"page": "1_0"}), 400) == 2914
    assert await code(await api.delete(f"{BASE}/logs", headers=AUTH,
                                        params={"filters": "nope"}), 400) == 2914
    assert await code(await api.get(f"{BASE}/analytics", headers=AUTH,
                                     params={"interval": "week"}), 400) == 2914
    assert await code(await api.get(f"{BASE}/logs/bad!id", headers=AUTH), 400) == 2914
    row = api.rows[0].id
    assert await code(await api.patch(f"{BASE}/logs/{row}", headers=AUTH,
                                       json={"feedback": 0}), 400) == 2914
    assert await code(await api.patch(f"{BASE}/logs/{row}", headers=AUTH,
                                       data=b"{not json"), 400) == 2900

    class Broken:
        async def list(self, *a):
            raise OSError("disk gone")

    client = await aiohttp_client(await _serve(Broken(), aiohttp_raw_server))
    resp = await client.get(f"{BASE}/logs", headers=AUTH)
    assert await code(resp, 503) == 2915


async def test_patch_metadata_with_nul_is_400_and_metadata_queries_keep_working(both):
    """A NUL in metadata would poison PostgreSQL's every metadata query (jsonb refuses it)."""
    row = both[0].rows[0].id
    for meta in ({"a": "x\u0000"}, {"\u0000": 1}):
        status, body = await same_answer(both, "PATCH", f"logs/{row}", json={"metadata": meta})
        assert status == 400 and "NUL" in body["errors"][0]["message"]
    await same_answer(both, "PATCH", f"logs/{row}", json={"metadata": {"a": "x\u0001"}})
    status, body = await same_answer(both, "GET", "logs", params={
        "filters": '[{"key":"metadata.key","operator":"eq","value":["a"]}]'})
    assert status == 200 and [r["id"] for r in body["result"]] == [row]
