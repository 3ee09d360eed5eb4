"""UUIDv7 log ids: time-ordered, also within one millisecond (rows of one fallback chain)."""

from __future__ import annotations

import uuid

from aigw.logstore.ids import uuid7, uuid7_ms
from aigw.logstore.row import LogRow


def test_rows_made_back_to_back_sort_in_creation_order():
    rows = [LogRow() for _ in range(2000)]
    ids = [r.id for r in rows]
    assert ids == sorted(ids)  # was random within a millisecond: a flaky fallback row order
    assert len(set(ids)) == len(ids)


def test_version_variant_and_time():
    for log_id in (uuid7(), uuid7(1_700_000_000_123), uuid7(ns=1_700_000_000_123_456_789)):
        u = uuid.UUID(log_id)
        assert u.version == 7 and u.variant == uuid.RFC_4122
    assert uuid7_ms(uuid7(1_700_000_000_123)) == 1_700_000_000_123
    assert uuid7_ms(uuid7(ns=1_700_000_000_123_999_999)) == 1_700_000_000_123
    assert uuid7(ns=1_000_000_500_000) < uuid7(ns=1_000_000_900_000)


def test_explicit_created_at_is_kept():
    row = LogRow(created_at=1_700_000_000_000)
    assert uuid7_ms(row.id) == 1_700_000_000_000
