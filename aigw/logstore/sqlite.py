"""The embedded log store: stdlib sqlite3 in WAL mode, driven from one worker thread.

Every sqlite3 call runs on a single-thread executor, so the connection is only ever used
by one thread and the event loop never blocks on disk. Rows are redacted, and large body
heads compressed (LZ4, aigw.logstore.codec), on that thread before the insert.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from operator import attrgetter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence, TypeVar, cast

from aigw.logstore.base import SqlLogStore, column_sql, schema_sql
from aigw.logstore.codec import pack
from aigw.logstore.query import SQLITE
from aigw.errors import ConfigError
from aigw.logstore.ids import id_floor
from aigw.logstore.row import COLUMNS, DENSE, SPARSE, LogRow

__all__ = ["SqliteLogStore"]

logger = logging.getLogger("aigw.logs")
T = TypeVar("T")
# Rows per INSERT, at most: a batch of 500 rows goes in as two statements (fewer rows where
# the SQLite library takes fewer bound values per statement: 999 before 3.32).
ROWS_PER_INSERT = 250
# Page size of a new log file (an existing file keeps its own). Rows are appended and the
# WAL writes, checksums and checkpoints whole pages: at 16 KB a JSON row cost the writer
# ~0.7 µs less than at SQLite's default 4 KB, and the benchmark's rows took 23% less space
# (fuller pages; bench/README.md).
PAGE_SIZE = 16384


# NULL without the adapter lookup: sqlite3 binds None only after looking for an adapter,
# whose miss formats and discards an AttributeError (252 ns a value; a row has several
# NULLs). A registered adapter is found by one dict lookup (127 ns). `{}.get` is a C
# callable that returns None for None, so a None still binds as NULL, wherever in the
# process sqlite3 is used. (Registering for a base type (int, float, str, bytearray) would
# slow every binding; None and bytes are not among them.)
sqlite3.register_adapter(type(None), cast(Callable[[None], None], {}.get))

_dense = attrgetter(*DENSE)
_sparse = attrgetter(*SPARSE)
_NULLS = (None,) * len(SPARSE)


def has_sparse(rows: Sequence[LogRow]) -> bool:
    """Whether any of `rows` has a value in a SPARSE column."""
    return any(_sparse(r) != _NULLS for r in rows)


def params(rows: Sequence[LogRow], full: bool) -> list[Any]:
    """The values one INSERT binds for `rows`, flat: each row's DENSE columns (and then its
    SPARSE ones when `full`), packed (aigw.logstore.codec.pack), straight from the rows."""
    out: list[Any] = []
    add = out.extend
    for r in rows:
        add(pack([*_dense(r), *_sparse(r)] if full else [*_dense(r)]))
    return out


class SqliteLogStore(SqlLogStore):
    """Log rows in one SQLite file; retention by count and age."""

    dialect = SQLITE

    def __init__(self, path: str, *, max_rows: int = 10_000_000, max_age_days: int = 0,
                 strategy: str = "DELETE_OLDEST", table: str = "aigw_logs") -> None:
        super().__init__(table, max_rows, max_age_days, strategy)
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aigw-sqlite")
        self._count = 0  # rows in the table, as of this process's last transaction
        # The row count lives in a one-row table beside the log table, kept in the same
        # transactions as the rows: every worker process writing to the file sees one count.
        self._count_table = f"{self.table}_count"
        self._sizes: tuple[int, ...] = (1,)  # rows per INSERT statement, set at open
        t = self.table
        # Two column lists: every column (dense + sparse), or the dense ones alone for rows
        # whose sparse columns are all NULL (aigw.logstore.row.SPARSE).
        self._heads = tuple(f"INSERT OR IGNORE INTO {t} ({', '.join(cols)}) VALUES "
                            for cols in (DENSE, DENSE + SPARSE))
        self._row_sqls = tuple(f"({', '.join('?' for _ in cols)})" for cols in (DENSE, DENSE + SPARSE))

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def start(self) -> None:
        """Open the file, switch to WAL and create the schema."""
        try:
            await self._run(self._open)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError("logs.path", f"cannot open the log store {self.path}: "
                              f"{exc}") from None

    def _open(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # no effect on a file that has pages
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes
        db.execute("PRAGMA busy_timeout=5000")
        for stmt in schema_sql(self.table, "BLOB"):
            db.execute(stmt)
        # a table made by an earlier version gains the columns added since
        have = {r[1] for r in db.execute(f"PRAGMA table_info({self.table})")}
        for c in COLUMNS:
            if c not in have:
                db.execute(f"ALTER TABLE {self.table} ADD COLUMN {column_sql(c, 'BLOB')}")
        ct = self._count_table
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(f"CREATE TABLE IF NOT EXISTS {ct} (n INTEGER NOT NULL)")
            row = db.execute(f"SELECT n FROM {ct}").fetchone()
            if row is None:  # a new file, or one from a version without the count
                n = db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0]
                db.execute(f"INSERT INTO {ct} (n) VALUES (?)", (n,))
                row = (n,)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._count = row[0]
        limit = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        per = max(1, min(ROWS_PER_INSERT, limit // len(COLUMNS)))
        # A few fixed statement sizes, largest first: each distinct size is a prepared
        # statement kept in the connection's cache, and a large one holds much memory, so
        # a batch of any length is cut into these (250 + 25 + 1: three statements at most).
        self._sizes = tuple(sorted({per, max(1, per // 10), 1}, reverse=True))
        self._db = db

    async def close(self) -> None:
        """Close the connection and the worker thread."""
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return await self._run(self._fetch_sync, sql, params)

    def _fetch_sync(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        assert self._db is not None, "store not started"
        return self._db.execute(sql, params).fetchall()

    async def _execute(self, sql: str, params: Sequence[Any]) -> int:
        return await self._run(self._execute_sync, sql, params)

    def _execute_sync(self, sql: str, params: Sequence[Any]) -> int:
        db = self._db
        assert db is not None, "store not started"
        if not sql.startswith("DELETE"):
            return db.execute(sql, params).rowcount
        db.execute("BEGIN IMMEDIATE")
        try:
            n = db.execute(sql, params).rowcount
            if n:
                db.execute(f"UPDATE {self._count_table} SET n = max(n - ?, 0)", (n,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return n

    def _insert_rows(self, db: sqlite3.Connection, rows: Sequence[LogRow]) -> None:
        """Many rows per INSERT statement: each statement is one sqlite3 step, and every step
        hands the GIL to the event loop and back. One row per step (executemany) cost twice
        the CPU of the insert itself under load (~45 µs a row instead of ~20). A chunk whose
        sparse columns are all NULL leaves them out. At most six statements are prepared:
        three sizes, two column lists."""
        i = 0
        for size in self._sizes:
            while len(rows) - i >= size:
                chunk = rows[i:i + size]
                i += size
                full = has_sparse(chunk)
                db.execute(self._heads[full] + ",".join([self._row_sqls[full]] * size),
                           params(chunk, full))

    async def insert_many(self, rows: Sequence[LogRow],
                          prepare: Callable[[Sequence[LogRow]], None] | None = None) -> int:
        """Insert rows in one transaction, applying retention; returns rows stored.

        `prepare` (the writer's redaction) runs on the store's thread, just before the rows
        are packed, so the two passes over the same body heads follow each other on one
        thread and the event loop does neither (nothing else touches a row once it is
        queued). Measured against redacting on the loop in bench/README.md ("Sixth
        session")."""
        cutoff = self._age_cutoff()
        return await self._run(self._insert_sync, rows, cutoff, prepare)

    def _insert_sync(self, rows: Sequence[LogRow], cutoff: int | None,
                     prepare: Callable[[Sequence[LogRow]], None] | None = None) -> int:
        db = self._db
        assert db is not None, "store not started"
        if prepare is not None:
            prepare(rows)
        t = self.table
        # IMMEDIATE: the write lock first, so the count read below is the one this
        # transaction changes, whichever process wrote last
        db.execute("BEGIN IMMEDIATE")
        try:
            self._count = db.execute(f"SELECT n FROM {self._count_table}").fetchone()[0]
            if cutoff is not None:
                n = db.execute(f"DELETE FROM {t} WHERE id < ?", (id_floor(cutoff),)).rowcount
                self._count = max(self._count - n, 0)
            if self.strategy == "STOP_INSERTING":
                room = max(self.max_rows - self._count, 0)
                if room < len(rows):
                    self.rejected += len(rows) - room
                    rows = rows[:room]
            before = db.total_changes
            self._insert_rows(db, rows)
            stored = db.total_changes - before
            self._count += stored
            excess = self._count - self.max_rows
            if self.strategy == "DELETE_OLDEST" and excess > 0:
                n = db.execute(f"DELETE FROM {t} WHERE id IN (SELECT id FROM {t} "
                               f"ORDER BY id ASC LIMIT ?)", (excess,)).rowcount
                self._count -= n
            db.execute(f"UPDATE {self._count_table} SET n = ?", (self._count,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return stored
