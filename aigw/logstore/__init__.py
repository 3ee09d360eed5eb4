"""Log rows, the background writer and the stores (SQLite embedded, PostgreSQL shared)."""

from __future__ import annotations

from typing import Any

from aigw.logstore.row import LogRow, collect_flags, parse_metadata
from aigw.logstore.writer import LogWriter

__all__ = ["LogRow", "LogWriter", "collect_flags", "parse_metadata", "open_store"]


def open_store(spec: Any) -> Any:
    """The store a `[logs]` spec names (not started), or None for `backend = "off"`."""
    if spec.backend == "off":
        return None
    if spec.backend == "postgres":
        from aigw.logstore.postgres import PostgresLogStore  # asyncpg is an optional extra

        return PostgresLogStore(spec.dsn, max_rows=spec.max_rows, max_age_days=spec.max_age_days,
                                strategy=spec.log_management_strategy)
    from aigw.logstore.sqlite import SqliteLogStore

    return SqliteLogStore(spec.path, max_rows=spec.max_rows, max_age_days=spec.max_age_days,
                          strategy=spec.log_management_strategy)
