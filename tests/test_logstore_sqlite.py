from __future__ import annotations

import sqlite3
import time
import zlib

import pytest

from _logfixtures import ACCOUNT, GATEWAY, make_row
from aigw.logstore.codec import LZ4, REQUEST, RESPONSE
from aigw.logstore.query import parse_query
from aigw.logstore.row import COLUMNS, DENSE, SPARSE
from aigw.logstore.sqlite import PAGE_SIZE, SqliteLogStore, has_sparse, params
from multidict import MultiDict


@pytest.fixture
async def store(tmp_path):
    s = SqliteLogStore(str(tmp_path / "logs.sqlite"))
    await s.start()
    yield s
    await s.close()


async def test_wal_mode_and_roundtrip(store, tmp_path):
    row = make_row(0, metadata='{"user":"u1"}', event_id="ev1", ttfb=12, step=1)
    assert await store.insert_many([row]) == 1
    got = await store.get(ACCOUNT, GATEWAY, row.id)
    assert got["id"] == row.id and got["step"] == 1 and got["ttfb"] == 12
    assert got["metadata"] == '{"user":"u1"}' and got["event_id"] == "ev1"
    assert got["success"] is True and got["cached"] is False
    assert got["request_head"] == '{"model":"gpt-4o-mini","messages":[]}'
    assert got["request_size"] == len(b'{"model":"gpt-4o-mini","messages":[]}')
    assert got["created_at"].endswith("Z")
    con = sqlite3.connect(tmp_path / "logs.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 16384


async def test_sparse_columns_survive_batches_with_and_without_them(store):
    """Rows whose sparse columns are all NULL go in without them; a chunk with one such value
    goes in with every column. Both read back exactly, whichever way they were batched."""
    rows = [make_row(i) for i in range(60)]
    for i in (3, 41):
        rows[i].metadata = f'{{"n":{i}}}'
        rows[i].event_id = f"ev{i}"
        rows[i].request_type = "universal"
        rows[i].model_type = "chat"
        rows[i].cache_read = i
        rows[i].cache_write = i + 1
    assert await store.insert_many(rows) == 60
    for i, row in enumerate(rows):
        got = await store.get(ACCOUNT, GATEWAY, row.id)
        marked = i in (3, 41)
        assert got["metadata"] == (f'{{"n":{i}}}' if marked else None)
        assert got["event_id"] == (f"ev{i}" if marked else None)
        assert got["cache_read"] == (i if marked else None) and got["cache_write"] == (i + 1 if marked else None)
        assert got["request_type"] == ("universal" if marked else None)
        assert got["model_type"] == ("chat" if marked else None)
        assert got["tokens_in"] == 10 * (i + 1) and got["request_head"] == '{"model":"gpt-4o-mini","messages":[]}'


async def test_other_gateway_rows_are_invisible(store):
    row = make_row(0)
    await store.insert_many([row])
    assert await store.get(ACCOUNT, "other", row.id) is None
    rows, info = await store.list(ACCOUNT, "other", parse_query(MultiDict()))
    assert rows == [] and info["total_count"] == 0


async def test_duplicate_ids_are_ignored(store):
    row = make_row(0)
    assert await store.insert_many([row, row]) == 1


async def test_delete_oldest_keeps_newest(tmp_path):
    s = SqliteLogStore(str(tmp_path / "a.sqlite"), max_rows=5, strategy="DELETE_OLDEST")
    await s.start()
    rows = [make_row(i) for i in range(8)]
    await s.insert_many(rows[:4])
    await s.insert_many(rows[4:])
    got, info = await s.list(ACCOUNT, GATEWAY, parse_query(MultiDict(direction="asc")))
    assert info["total_count"] == 5
    assert [r["id"] for r in got] == [r.id for r in rows[3:]]
    await s.close()


async def test_stop_inserting_refuses_and_counts(tmp_path):
    s = SqliteLogStore(str(tmp_path / "b.sqlite"), max_rows=5, strategy="STOP_INSERTING")
    await s.start()
    rows = [make_row(i) for i in range(8)]
    assert await s.insert_many(rows) == 5
    assert s.rejected == 3
    got, info = await s.list(ACCOUNT, GATEWAY, parse_query(MultiDict(direction="asc")))
    assert [r["id"] for r in got] == [r.id for r in rows[:5]]
    await s.close()


async def test_count_survives_restart(tmp_path):
    path = str(tmp_path / "c.sqlite")
    s = SqliteLogStore(path, max_rows=3, strategy="STOP_INSERTING")
    await s.start()
    await s.insert_many([make_row(i) for i in range(2)])
    await s.close()
    s = SqliteLogStore(path, max_rows=3, strategy="STOP_INSERTING")
    await s.start()
    assert await s.insert_many([make_row(i + 10) for i in range(2)]) == 1
    await s.close()


async def test_max_age_days_prunes_old_rows(tmp_path):
    s = SqliteLogStore(str(tmp_path / "d.sqlite"), max_age_days=1)
    await s.start()
    now = time.time_ns() // 1_000_000
    old = make_row(0, created_at=now - 2 * 86_400_000)
    await s.insert_many([old])
    s._last_prune = 0.0  # a prune is due on the next batch
    new = make_row(1, created_at=now)
    await s.insert_many([new])
    got, _ = await s.list(ACCOUNT, GATEWAY, parse_query(MultiDict()))
    assert [r["id"] for r in got] == [new.id]
    await s.close()


async def test_loop_is_not_blocked_by_store_io(store):
    # Every sqlite call runs on the store's own thread.
    import threading
    seen = []
    orig = store._fetch_sync

    def spy(sql, params):
        seen.append(threading.current_thread().name)
        return orig(sql, params)

    store._fetch_sync = spy
    await store.list(ACCOUNT, GATEWAY, parse_query(MultiDict()))
    assert seen and all(name.startswith("aigw-sqlite") for name in seen)


async def test_the_writers_redaction_runs_on_the_store_thread_before_the_rows_are_written(store):
    import threading
    seen = []

    def prepare(rows):
        seen.append(threading.current_thread().name)
        for r in rows:
            r.response_body = r.response_body.replace(b"usage", b"[REDACTED]")

    row = make_row(0)
    assert await store.insert_many([row], prepare) == 1
    assert seen and seen[0].startswith("aigw-sqlite")
    assert (await store.get_body(ACCOUNT, GATEWAY, row.id, "response"))[0] == b'{"id":"x","[REDACTED]":{}}'

    def broken(rows):
        raise RuntimeError("a bug in a redaction pass")

    with pytest.raises(RuntimeError):
        await store.insert_many([make_row(1)], broken)
    got, _ = await store.list(ACCOUNT, GATEWAY, parse_query(MultiDict()))
    assert [r["id"] for r in got] == [row.id]  # nothing of the failed batch was written


STREAM_HEAD = b"".join(b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,'
                       b'"delta":{"content":"tok%d "}}]}\n\n' % i for i in range(40))[:4096]


async def test_large_body_heads_are_stored_compressed_and_read_back_exactly(store, tmp_path):
    big_request = b'{"messages":[' + b'{"role":"user","content":"%d"},' * 200 + b"]}"
    row = make_row(0, response_content_type="text/event-stream")
    row.set_bodies(big_request, STREAM_HEAD + b"the rest of the stream", 4096)
    small = make_row(1)
    await store.insert_many([row, small])
    con = sqlite3.connect(tmp_path / "logs.sqlite")
    stored = dict((i, (req, resp, codec)) for i, req, resp, codec in con.execute(
        "SELECT id, request_body, response_body, body_codec FROM aigw_logs"))
    req, resp, codec = stored[row.id]
    assert codec == (REQUEST | RESPONSE) << LZ4 and len(resp) < len(STREAM_HEAD) // 4 and b"tok1 " not in resp
    assert stored[small.id][2] == 0 and stored[small.id][1] == b'{"id":"x","usage":{}}'  # small: raw
    got = await store.get(ACCOUNT, GATEWAY, row.id)
    assert got["response_head"] == STREAM_HEAD.decode() and got["response_head_complete"] is False
    assert got["request_head"] == big_request[:4096].decode()
    assert await store.get_body(ACCOUNT, GATEWAY, row.id, "response") == (
        STREAM_HEAD, "text/event-stream", False)
    assert (await store.get_body(ACCOUNT, GATEWAY, small.id, "response"))[0] == b'{"id":"x","usage":{}}'


async def test_heads_deflated_by_an_earlier_version_read_back(store, tmp_path):
    # before LZ4, large heads were raw deflate (window 2**12), body_codec bits 1 and 2
    row = make_row(0, response_content_type="text/event-stream")
    row.set_bodies(b'{"messages":[]}', b"x", 4096)
    await store.insert_many([row])
    old_req = b'{"messages":[' + b'{"role":"user","content":"old"},' * 60 + b"]}"

    def deflate(data: bytes) -> bytes:
        c = zlib.compressobj(1, zlib.DEFLATED, -12, 4)
        return c.compress(data) + c.flush()

    con = sqlite3.connect(tmp_path / "logs.sqlite")
    con.execute("UPDATE aigw_logs SET request_body = ?, response_body = ?, body_codec = 3 WHERE id = ?",
                (deflate(old_req), deflate(STREAM_HEAD), row.id))
    con.commit()
    con.close()
    got = await store.get(ACCOUNT, GATEWAY, row.id)
    assert got["request_head"] == old_req.decode() and got["response_head"] == STREAM_HEAD.decode()
    assert (await store.get_body(ACCOUNT, GATEWAY, row.id, "response"))[0] == STREAM_HEAD


@pytest.mark.parametrize("damage", ["lz4-garbage", "lz4-huge-size", "deflate-garbage"])
async def test_a_damaged_stored_head_reads_as_null_and_the_row_still_reads(store, tmp_path, damage, caplog):
    row = make_row(0, response_content_type="text/event-stream")
    row.set_bodies(b'{"messages":[]}', STREAM_HEAD, 4096)
    await store.insert_many([row])
    blob, codec = {"lz4-garbage": (b"\x00\x10\x00\x00not lz4 at all", 8),
                   "lz4-huge-size": (b"\xff\xff\xff\x7f" + b"x" * 20, 8),
                   "deflate-garbage": (b"\xff\xfe not deflate", 2)}[damage]
    con = sqlite3.connect(tmp_path / "logs.sqlite")
    con.execute("UPDATE aigw_logs SET response_body = ?, body_codec = ? WHERE id = ?", (blob, codec, row.id))
    con.commit()
    con.close()
    got = await store.get(ACCOUNT, GATEWAY, row.id)
    assert got["id"] == row.id and got["response_head"] is None and got["request_head"] == '{"messages":[]}'
    assert (await store.get_body(ACCOUNT, GATEWAY, row.id, "response"))[0] is None
    assert "does not decode" in caplog.text


async def test_a_table_from_an_earlier_version_gains_the_new_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    cols = [c for c in COLUMNS if c != "body_codec"]
    con.execute(f"CREATE TABLE aigw_logs ({', '.join(cols)})")
    old = make_row(0)
    con.execute(f"INSERT INTO aigw_logs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                old.values()[:-1])
    con.commit()
    con.close()
    s = SqliteLogStore(str(path))
    await s.start()
    new = make_row(1)
    new.set_bodies(b"{}", STREAM_HEAD, 4096)
    assert await s.insert_many([new]) == 1
    assert (await s.get(ACCOUNT, GATEWAY, old.id))["response_head"] == '{"id":"x","usage":{}}'
    assert (await s.get_body(ACCOUNT, GATEWAY, new.id, "response"))[0] == STREAM_HEAD
    await s.close()
    # the file keeps the page size it was made with (changing it would need a VACUUM)
    assert sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0] == 4096


async def test_batches_of_any_length_use_a_few_statement_shapes(store):
    """Several rows go in per INSERT, cut into at most three statement sizes: a prepared
    statement per distinct length stayed cached, and batches of varying length grew the
    process by tens of MB (regression)."""
    seen: set[str] = set()

    class Recording:
        def __init__(self, db):
            self.db = db

        def execute(self, sql, params=()):
            seen.add(sql)
            return self.db.execute(sql, params)

    db = store._db
    total = 0
    for n in (1, 2, 7, 24, 25, 26, 249, 250, 251, 300, 499, 500):
        for sparse in (False, True):  # with and without a value in a sparse column
            rows = [make_row(total + i) for i in range(n)]
            if sparse:
                rows[-1].event_id = "ev"
            total += n
            db.execute("BEGIN")
            store._insert_rows(Recording(db), rows)
            db.execute("COMMIT")
    assert len(seen) <= 6
    assert db.execute("SELECT COUNT(*) FROM aigw_logs").fetchone()[0] == total


def test_row_values_bind_without_sqlite3s_adapter_lookup():
    """What a row binds is an exact int, float, str or bytearray (bound directly) or None
    (found in the adapter registry, still bound as NULL): a bool or a bytes value would go
    through sqlite3's adapter lookup, which costs several times the binding itself."""
    direct = {int, float, str, bytearray}
    small = make_row(0, cost=None, ttfb=None, cached=True)
    large = make_row(1)
    large.set_bodies(b"q" * 3000, b"data: {}\n\n" * 500, 4096)  # both deflated
    assert not has_sparse([small, large])
    for full in (False, True):
        values = params([small, large], full)
        assert len(values) == 2 * (len(DENSE) + (len(SPARSE) if full else 0))
        assert {type(v) for v in values if v is not None} <= direct, values
        assert None in values
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)](None) is None
    con = sqlite3.connect(":memory:")
    assert con.execute("SELECT ? IS NULL, typeof(?)", (None, bytearray(b"x"))).fetchone() == (1, "blob")


@pytest.mark.parametrize("strategy", ["DELETE_OLDEST", "STOP_INSERTING"])
async def test_max_rows_holds_for_every_process_writing_the_file(tmp_path, strategy):
    # `aigw serve --workers N`: each worker has its own store on one file. The count is kept
    # in the file, in the same transactions as the rows, so max_rows holds for all of them,
    # and a delete through one worker's API is seen by the others.
    path = str(tmp_path / "shared.sqlite")
    a = SqliteLogStore(path, max_rows=10, strategy=strategy)
    b = SqliteLogStore(path, max_rows=10, strategy=strategy)
    await a.start()
    await b.start()
    try:
        await a.insert_many([make_row(i) for i in range(8)])
        await b.insert_many([make_row(10 + i) for i in range(8)])
        await a.insert_many([make_row(20 + i) for i in range(3)])
        _, info = await b.list(ACCOUNT, GATEWAY, parse_query(MultiDict()))
        assert info["total_count"] == 10
        assert a.rejected + b.rejected == (9 if strategy == "STOP_INSERTING" else 0)
        assert await a.delete(ACCOUNT, GATEWAY, parse_query(MultiDict(limit="4"), delete=True)) == 4
        late = [make_row(30 + i) for i in range(4)]
        assert await b.insert_many(late) == 4
        rows, info = await a.list(ACCOUNT, GATEWAY, parse_query(MultiDict(per_page="50")))
        assert info["total_count"] == 10 and len(rows) == 10
        assert {r.id for r in late} <= {r["id"] for r in rows}
    finally:
        await a.close()
        await b.close()


async def test_a_file_from_before_the_count_table_is_counted_once(tmp_path):
    path = str(tmp_path / "old.sqlite")
    s = SqliteLogStore(path)
    await s.start()
    await s.insert_many([make_row(i) for i in range(3)])
    await s.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE aigw_logs_count")  # as a file written by an earlier version
    db.commit()
    db.close()
    s = SqliteLogStore(path, max_rows=4, strategy="STOP_INSERTING")
    await s.start()
    try:
        assert await s.insert_many([make_row(10 + i) for i in range(3)]) == 1 and s.rejected == 2
    finally:
        await s.close()
