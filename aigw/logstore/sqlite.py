"""The embedded log store: stdlib sqlite3 in WAL mode, driven from one worker thread.

Every sqlite3 call runs on a single-thread executor, so the connection is only ever used
by one thread and the event loop never blocks on disk. Large body heads are deflated on
that thread before the insert (aigw.logstore.codec).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence, TypeVar

from aigw.logstore.base import SqlLogStore, column_sql, schema_sql
from aigw.logstore.codec import pack
from aigw.logstore.query import SQLITE
from aigw.errors import ConfigError
from aigw.logstore.ids import id_floor
from aigw.logstore.row import COLUMNS, LogRow

__all__ = ["SqliteLogStore"]

logger = logging.getLogger("aigw.logs")
T = TypeVar("T")


class SqliteLogStore(SqlLogStore):
    """Log rows in one SQLite file; retention by count and age."""

    dialect = SQLITE

    def __init__(self, path: str, *, max_rows: int = 10_000_000, max_age_days: int = 0,
                 strategy: str = "DELETE_OLDEST", table: str = "aigw_logs") -> None:
        super().__init__(table, max_rows, max_age_days, strategy)
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aigw-sqlite")
        self._count = 0
        t = self.table
        self._insert_sql = (f"INSERT OR IGNORE INTO {t} ({', '.join(COLUMNS)}) "
                            f"VALUES ({', '.join('?' for _ in COLUMNS)})")

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
        self._count = db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0]
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
        assert self._db is not None, "store not started"
        n = self._db.execute(sql, params).rowcount
        if sql.startswith("DELETE"):
            self._count = max(self._count - n, 0)
        return n

    async def insert_many(self, rows: Sequence[LogRow]) -> int:
        """Insert rows in one transaction, applying retention; returns rows stored."""
        cutoff = self._age_cutoff()
        values = [r.values() for r in rows]
        return await self._run(self._insert_sync, values, cutoff)

    def _insert_sync(self, values: list[tuple[Any, ...]], cutoff: int | None) -> int:
        db = self._db
        assert db is not None, "store not started"
        t = self.table
        db.execute("BEGIN")
        try:
            if cutoff is not None:
                n = db.execute(f"DELETE FROM {t} WHERE id < ?", (id_floor(cutoff),)).rowcount
                self._count = max(self._count - n, 0)
            if self.strategy == "STOP_INSERTING":
                room = max(self.max_rows - self._count, 0)
                if room < len(values):
                    self.rejected += len(values) - room
                    values = values[:room]
            before = db.total_changes
            db.executemany(self._insert_sql, [pack(v) for v in values])
            stored = db.total_changes - before
            self._count += stored
            excess = self._count - self.max_rows
            if self.strategy == "DELETE_OLDEST" and excess > 0:
                n = db.execute(f"DELETE FROM {t} WHERE id IN (SELECT id FROM {t} "
                               f"ORDER BY id ASC LIMIT ?)", (excess,)).rowcount
                self._count -= n
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return stored
