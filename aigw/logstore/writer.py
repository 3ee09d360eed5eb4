"""The background log writer: requests hand rows over and never wait on the store.

`submit` is synchronous and O(1): an append to a bounded deque. A task drains the deque in
batches into `store.insert_many`, which redacts each batch (`redact_rows`) before writing
it. When the deque is full the row is dropped, counted in `dropped` (exported as
`aigw_log_rows_dropped_total`) and reported on the `aigw.logs` logger at most once per
`warn_every` seconds, so a slow store is never silent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from aigw.logstore.row import LogRow, redact_rows

__all__ = ["LogWriter"]

logger = logging.getLogger("aigw.logs")


class _Tally:
    """A running count reported on the log at most once per `every` seconds."""

    __slots__ = ("every", "reported", "last")

    def __init__(self, every: float) -> None:
        self.every = every
        self.reported = 0  # the count as of the last report
        self.last = float("-inf")  # when that was (monotonic)

    def due(self, total: int) -> int:
        """How much `total` grew since the last report, when a report is due now (it is
        then taken as made); else 0."""
        now = time.monotonic()
        if total <= self.reported or now - self.last < self.every:
            return 0
        since, self.reported, self.last = total - self.reported, total, now
        return since


class LogWriter:
    """Bounded queue + one batching task in front of a log store."""

    def __init__(self, store: Any, *, queue_max: int = 100_000, batch_size: int = 500,
                 flush_interval: float = 0.2, warn_every: float = 10.0) -> None:
        self.store = store
        self.queue_max = queue_max
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.warn_every = warn_every
        self._queue: deque[LogRow] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0
        self.dropped = 0  # queue full or writer closed
        self.failed = 0  # rows lost to store errors
        self._drops = _Tally(warn_every)  # rows dropped here, as reported on the log
        self._refusals = _Tally(warn_every)  # rows the store refused (STOP_INSERTING)

    def __repr__(self) -> str:
        return (f"<LogWriter [queued {len(self._queue)}/{self.queue_max} | written "
                f"{self.written} | dropped {self.dropped} | failed {self.failed}]>")

    @property
    def queued(self) -> int:
        """Rows waiting for the store."""
        return len(self._queue)

    def submit(self, row: LogRow) -> bool:
        """Queue a row; False (and counted) when the queue is full. Never blocks."""
        q = self._queue
        if len(q) >= self.queue_max or self._closing:
            self.dropped += 1
            self._warn_dropped()
            return False
        q.append(row)
        if len(q) >= self.batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    def _warn_dropped(self) -> None:
        since = self._drops.due(self.dropped)
        if since:
            logger.warning("log store falling behind: dropped %d log rows (%d since last "
                           "report); queue_max=%d", self.dropped, since, self.queue_max)

    def _warn_rejected(self) -> None:
        """The store is full under STOP_INSERTING: say so, at most once per `warn_every`."""
        rejected = getattr(self.store, "rejected", 0)
        since = self._refusals.due(rejected)
        if since:
            logger.warning("log store full (log_management_strategy STOP_INSERTING, max_rows=%s): "
                           "%d log rows not stored (%d since last report)",
                           getattr(self.store, "max_rows", "?"), rejected, since)

    async def start(self) -> None:
        """Start the store and the background task."""
        await self.store.start()
        self._task = asyncio.create_task(self._run(), name="aigw-log-writer")

    async def _run(self) -> None:
        while not self._closing:
            if len(self._queue) < self.batch_size:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            await self._drain()

    async def _drain(self, everything: bool = False) -> None:
        q = self._queue
        while q:
            n = min(len(q), self.batch_size)
            batch = [q.popleft() for _ in range(n)]
            try:
                # redacted by the store before it writes: the SQLite store does it on its
                # own thread, right before packing the same rows (bench/README.md)
                await self.store.insert_many(batch, redact_rows)
                self.written += n
            except Exception as exc:  # the store boundary: count the loss, keep the writer alive
                self.failed += n
                # the class only: a driver's message may quote the values it was given
                logger.error("log store insert failed (%s); %d rows lost", type(exc).__name__, n)
            self._warn_rejected()
            if not everything and not self._closing and len(q) < self.batch_size:
                return

    async def flush(self) -> None:
        """Write everything queued so far (tests and shutdown)."""
        await self._drain(everything=True)

    async def close(self) -> None:
        """Stop accepting rows, write what is queued, close the store."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await self._task
            finally:
                self._task = None
        await self._drain(everything=True)
        await self.store.close()
        if self.dropped > self._drops.reported:
            logger.warning("log writer closed; %d log rows were dropped in total", self.dropped)
