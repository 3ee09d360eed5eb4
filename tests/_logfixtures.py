"""Shared helpers for the log tests: rows with known values and store factories."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from aigw.logstore.row import LogRow

ACCOUNT = "acct1"
GATEWAY = "gw1"
T0 = 1_790_000_000_000  # 2026-09-21T...Z, Unix ms


def make_row(i: int = 0, **kw) -> LogRow:
    row = LogRow(created_at=kw.pop("created_at", T0 + i * 1000))
    row.account = ACCOUNT
    row.gateway = GATEWAY
    row.provider = "openai"
    row.model = "gpt-4o-mini"
    row.path = "/v1/chat/completions"
    row.status_code = 200
    row.success = True
    row.duration = 100 + i
    row.tokens_in = 10 * (i + 1)
    row.tokens_out = i + 1
    row.cost = 0.001 * (i + 1)
    row.request_content_type = "application/json"
    row.response_content_type = "application/json"
    row.set_bodies(b'{"model":"gpt-4o-mini","messages":[]}', b'{"id":"x","usage":{}}', 4096)
    for k, v in kw.items():
        setattr(row, k, v)
    return row


def pg_dsn() -> str:
    return os.environ.get("AIGW_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def require_pg() -> None:
    """Skip with a reason when PostgreSQL is unreachable, but fail under CI=true."""
    if pg_available():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("PostgreSQL at 127.0.0.1:5432 is required when CI=true")
    pytest.skip("PostgreSQL at 127.0.0.1:5432 is unreachable")


def unique_table() -> str:
    return "aigw_test_" + uuid.uuid4().hex[:12]
