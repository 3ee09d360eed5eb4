from __future__ import annotations

import pytest
from multidict import MultiDict

from _logfixtures import ACCOUNT, GATEWAY, make_row, pg_dsn, require_pg, unique_table
from aigw.logstore.query import parse_query


@pytest.fixture
async def pg_pair():
    """Two stores on one table, as two gateway instances would have."""
    require_pg()
    from aigw.logstore.postgres import PostgresLogStore
    table = unique_table()
    a = PostgresLogStore(pg_dsn(), table=table)
    b = PostgresLogStore(pg_dsn(), table=table)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.drop()
        await a.close()
        await b.close()


async def test_instances_share_one_store(pg_pair):
    a, b = pg_pair
    ra, rb = make_row(0), make_row(1, provider="anthropic")
    await a.insert_many([ra])
    await b.insert_many([rb])
    for store in (a, b):
        rows, info = await store.list(ACCOUNT, GATEWAY, parse_query(MultiDict()))
        assert {r["id"] for r in rows} == {ra.id, rb.id} and info["total_count"] == 2
    got = await b.get(ACCOUNT, GATEWAY, ra.id)
    assert got["request_head"].startswith('{"model"') and got["success"] is True


async def test_roundtrip_keeps_types(pg_pair):
    a, _ = pg_pair
    row = make_row(0, metadata='{"k":1}', ttfb=5, custom_cost=True, cost=1.25, step=2)
    await a.insert_many([row])
    got = await a.get(ACCOUNT, GATEWAY, row.id)
    assert got["cost"] == 1.25 and got["custom_cost"] is True and got["step"] == 2
    assert got["ttfb"] == 5 and got["metadata"] == '{"k":1}'
    body, ctype, complete = await a.get_body(ACCOUNT, GATEWAY, row.id, "response")
    assert body == b'{"id":"x","usage":{}}' and ctype == "application/json" and complete


async def test_retention_delete_oldest_and_stop_inserting():
    require_pg()
    from aigw.logstore.postgres import PostgresLogStore
    s = PostgresLogStore(pg_dsn(), table=unique_table(), max_rows=3, count_every=0)
    await s.start()
    try:
        rows = [make_row(i) for i in range(5)]
        await s.insert_many(rows)
        got, _ = await s.list(ACCOUNT, GATEWAY, parse_query(MultiDict(direction="asc")))
        assert [r["id"] for r in got] == [r.id for r in rows[2:]]
        s.strategy = "STOP_INSERTING"
        assert await s.insert_many([make_row(9)]) == 0 and s.rejected == 1
    finally:
        await s.drop()
        await s.close()


async def test_a_table_from_an_earlier_version_gains_the_new_columns():
    require_pg()
    import asyncpg

    from aigw.logstore.postgres import PostgresLogStore
    from aigw.logstore.row import COLUMNS
    table = unique_table()
    conn = await asyncpg.connect(pg_dsn())
    try:
        await conn.execute(f"CREATE TABLE {table} (id TEXT PRIMARY KEY, "
                           + ", ".join(f"{c} TEXT" for c in COLUMNS if c not in ("id", "body_codec"))
                           + ")")
    finally:
        await conn.close()
    s = PostgresLogStore(pg_dsn(), table=table)
    await s.start()
    try:
        cols = {r[0] for r in await s._fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1", [table])}
        assert "body_codec" in cols
    finally:
        await s.drop()
        await s.close()


@pytest.mark.parametrize("strategy", ["DELETE_OLDEST", "STOP_INSERTING"])
async def test_retention_counts_again_after_an_api_delete(strategy):
    # The store recounts only every count_every seconds; rows deleted through the API must
    # not be counted as still there (DELETE_OLDEST would delete live rows as excess,
    # STOP_INSERTING would refuse rows there is room for).
    require_pg()
    from aigw.logstore.postgres import PostgresLogStore
    s = PostgresLogStore(pg_dsn(), table=unique_table(), max_rows=10, count_every=3600,
                         strategy=strategy)
    await s.start()
    try:
        rows = [make_row(i) for i in range(10)]
        await s.insert_many(rows)
        deleted = await s.delete(ACCOUNT, GATEWAY, parse_query(MultiDict(direction="asc", limit="5"), delete=True))
        assert deleted == 5
        fresh = [make_row(20 + i) for i in range(3)]
        assert await s.insert_many(fresh) == 3 and s.rejected == 0
        got, info = await s.list(ACCOUNT, GATEWAY, parse_query(MultiDict(direction="asc")))
        assert info["total_count"] == 8
        assert {r["id"] for r in got} == {r.id for r in rows[5:]} | {r.id for r in fresh}
    finally:
        await s.drop()
        await s.close()


async def test_a_statement_that_hangs_fails_after_the_command_timeout(monkeypatch):
    # A store that stops answering must fail the insert or the API call, not hold the
    # writer or an API client forever.
    require_pg()
    import asyncio
    import aigw.logstore.postgres as pg
    monkeypatch.setattr(pg, "COMMAND_TIMEOUT", 0.3)
    s = pg.PostgresLogStore(pg_dsn(), table=unique_table())
    await s.start()
    try:
        with pytest.raises((asyncio.TimeoutError, TimeoutError)):
            await s._fetch("SELECT pg_sleep(5)", [])
    finally:
        await s.drop()
        await s.close()
