"""The shared log store: PostgreSQL through an asyncpg pool (`pip install aigw[postgres]`).

Several gateway instances write to one table, and the Logs API on any of them sees every
row. Retention by count re-reads the table size at most every `count_every` seconds, since
other instances insert too.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

import asyncpg  # type: ignore[import-untyped]

from aigw.logstore.base import SqlLogStore, column_sql, schema_sql
from aigw.logstore.query import POSTGRES
from aigw.errors import ConfigError
from aigw.logstore.ids import id_floor
from aigw.logstore.row import COLUMNS, LogRow

__all__ = ["PostgresLogStore"]

logger = logging.getLogger("aigw.logs")


# Seconds a statement may take before it fails (asyncpg's command_timeout).
COMMAND_TIMEOUT = 30.0


class PostgresLogStore(SqlLogStore):
    """Log rows in one PostgreSQL table; same interface as the SQLite store."""

    dialect = POSTGRES

    def __init__(self, dsn: str, *, max_rows: int = 10_000_000, max_age_days: int = 0,
                 strategy: str = "DELETE_OLDEST", table: str = "aigw_logs",
                 pool_max: int = 4, count_every: float = 5.0) -> None:
        super().__init__(table, max_rows, max_age_days, strategy)
        self._dsn = dsn
        self._pool_max = pool_max
        self._pool: asyncpg.Pool | None = None
        self._count = 0
        self._counted_at = 0.0
        self.count_every = count_every
        t = self.table
        self._insert_sql = (f"INSERT INTO {t} ({', '.join(COLUMNS)}) VALUES "
                            f"({', '.join(f'${i + 1}' for i in range(len(COLUMNS)))}) "
                            f"ON CONFLICT (id) DO NOTHING")

    async def start(self) -> None:
        """Open the pool and create the table and indexes if they are missing."""
        try:
            # command_timeout: a store that stops answering (a hung server, a dead network
            # path) fails the insert or the API call after it, rather than holding the writer
            # (rows past queue_max are then dropped and counted) or an API client forever
            self._pool = await asyncpg.create_pool(self._dsn, min_size=1,
                                                   max_size=self._pool_max,
                                                   command_timeout=COMMAND_TIMEOUT)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # the class only: the message may quote the DSN with its password
            raise ConfigError("logs.dsn", "cannot connect to the log store "
                              f"({type(exc).__name__})") from None
        async with self._pool.acquire() as conn:
            # One instance at a time creates the schema (the lock ends with the transaction).
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.table)
                for stmt in schema_sql(self.table, "BYTEA"):
                    await conn.execute(stmt)
                for c in COLUMNS:  # a table made by an earlier version gains new columns
                    await conn.execute(f"ALTER TABLE {self.table} ADD COLUMN IF NOT EXISTS "
                                       f"{column_sql(c, 'BYTEA')}")

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        assert self._pool is not None, "store not started"
        records = await self._pool.fetch(sql, *params)
        return [tuple(r) for r in records]

    async def _execute(self, sql: str, params: Sequence[Any]) -> int:
        assert self._pool is not None, "store not started"
        status = await self._pool.execute(sql, *params)
        # asyncpg returns the command tag, e.g. "DELETE 3" or "UPDATE 1".
        n = int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else 0
        if n and sql.startswith("DELETE"):
            self._counted_at = float("-inf")  # rows went: retention recounts before it acts
        return n

    async def insert_many(self, rows: Sequence[LogRow],
                          prepare: Callable[[Sequence[LogRow]], None] | None = None) -> int:
        """Insert rows in one transaction, applying retention; returns rows offered.
        `prepare` (the writer's redaction) runs first, on the loop."""
        assert self._pool is not None, "store not started"
        if prepare is not None:
            prepare(rows)
        t = self.table
        cutoff = self._age_cutoff()
        values = [r.values() for r in rows]
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                if cutoff is not None:
                    await conn.execute(f"DELETE FROM {t} WHERE id < $1", id_floor(cutoff))
                    self._counted_at = float("-inf")  # recounted just below
                if time.monotonic() - self._counted_at >= self.count_every:
                    self._count = await conn.fetchval(f"SELECT COUNT(*) FROM {t}")
                    self._counted_at = time.monotonic()
                if self.strategy == "STOP_INSERTING":
                    room = max(self.max_rows - self._count, 0)
                    if room < len(values):
                        self.rejected += len(values) - room
                        values = values[:room]
                if values:
                    await conn.executemany(self._insert_sql, values)
                self._count += len(values)
                excess = self._count - self.max_rows
                if self.strategy == "DELETE_OLDEST" and excess > 0:
                    await conn.execute(f"DELETE FROM {t} WHERE id IN (SELECT id FROM {t} "
                                       f"ORDER BY id ASC LIMIT $1)", excess)
                    self._count = self.max_rows
        return len(values)

    async def drop(self) -> None:
        """Drop the table (tests)."""
        assert self._pool is not None, "store not started"
        await self._pool.execute(f"DROP TABLE IF EXISTS {self.table}")
