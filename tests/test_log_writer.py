from __future__ import annotations

import asyncio
import logging

from _logfixtures import make_row
from aigw.logstore.writer import LogWriter


class MemStore:
    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.rows = []
        self.batches = []
        self.delay = delay
        self.fail = fail
        self.closed = False

    async def start(self):
        pass

    async def insert_many(self, rows, prepare=None):
        await asyncio.sleep(self.delay)
        if prepare is not None:
            prepare(rows)
        if self.fail:
            raise RuntimeError("disk full")
        self.batches.append(len(rows))
        self.rows.extend(rows)
        return len(rows)

    async def close(self):
        self.closed = True


async def test_burst_below_bound_loses_nothing():
    store = MemStore(delay=0.01)
    w = LogWriter(store, queue_max=5000, batch_size=100)
    await w.start()
    rows = [make_row(i) for i in range(5000)]
    assert all(w.submit(r) for r in rows)
    await w.close()
    assert w.dropped == 0
    assert [r.id for r in store.rows] == [r.id for r in rows]
    assert max(store.batches) <= 100
    assert store.closed


async def test_burst_above_bound_counts_drops(caplog):
    store = MemStore(delay=0.05)
    w = LogWriter(store, queue_max=1000, batch_size=100)
    await w.start()
    with caplog.at_level(logging.WARNING, logger="aigw.logs"):
        accepted = sum(w.submit(make_row(i)) for i in range(1500))
    assert accepted == 1000 and w.dropped == 500
    assert any("dropped" in r.getMessage() for r in caplog.records)
    await w.close()
    assert len(store.rows) == 1000
    assert "dropped 500" in repr(w)


async def test_submit_never_awaits_and_batches_in_background():
    store = MemStore()
    w = LogWriter(store, queue_max=100, batch_size=10, flush_interval=0.01)
    await w.start()
    for i in range(3):
        w.submit(make_row(i))
    assert store.rows == []  # nothing written synchronously
    await asyncio.sleep(0.1)
    assert len(store.rows) == 3
    await w.close()


async def test_rows_are_redacted_before_the_store_sees_them():
    store = MemStore()
    w = LogWriter(store, flush_interval=0.01)
    await w.start()
    row = make_row(0, path="/v1beta/models/g:generateContent?key=AIzaSECRET&alt=sse")
    row.set_bodies(b'[{"provider":"openai","headers":{"Authorization":"Bearer sk-abcdefghijklmnopqrstu"}}]',
                   b"ok", 4096)
    row.secrets = ("sk-abcdefghijklmnopqrstu",)
    w.submit(row)
    await w.close()
    stored = store.rows[0]
    assert "AIzaSECRET" not in stored.path and "alt=sse" in stored.path
    assert b"sk-abc" not in stored.request_body
    assert stored.secrets == ()


async def test_store_errors_are_counted_not_raised(caplog):
    store = MemStore(fail=True)
    w = LogWriter(store, flush_interval=0.01)
    await w.start()
    w.submit(make_row(0))
    with caplog.at_level(logging.ERROR, logger="aigw.logs"):
        await asyncio.sleep(0.1)
    assert w.failed == 1
    await w.close()


async def test_submit_after_close_is_counted():
    w = LogWriter(MemStore())
    await w.start()
    await w.close()
    assert w.submit(make_row(0)) is False
    assert w.dropped == 1


async def test_rows_a_full_store_refuses_are_reported(caplog):
    # STOP_INSERTING: the store keeps what fits and counts the rest (the metric); the writer
    # also says so in the process log, at most once per warn_every.
    class FullStore(MemStore):
        max_rows = 3
        rejected = 0

        async def insert_many(self, rows, prepare=None):
            room = max(self.max_rows - len(self.rows), 0)
            self.rejected += max(len(rows) - room, 0)
            return await super().insert_many(rows[:room], prepare)

    store = FullStore()
    w = LogWriter(store, queue_max=100, batch_size=5, warn_every=3600)
    await w.start()
    with caplog.at_level(logging.WARNING, logger="aigw.logs"):
        for i in range(5):
            w.submit(make_row(i))
        await w.flush()
        for i in range(5, 10):
            w.submit(make_row(i))
        await w.flush()
    warnings = [r.getMessage() for r in caplog.records if "not stored" in r.getMessage()]
    assert len(store.rows) == 3 and store.rejected == 7
    assert len(warnings) == 1 and "2 log rows not stored" in warnings[0] and "max_rows=3" in warnings[0]
    await w.close()
