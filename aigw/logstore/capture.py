"""Per-request capture: turns upstream attempts into log rows and metric updates.

A `Recorder` is made once per request from its `cf-aig-*` headers (bad values are 400s
before anything goes upstream). The proxy reports each attempt to it; a committed attempt
gets an `Attempt` whose `feed` sees each relayed chunk on the side (usage scan and body
head) and whose `finish` submits the row. Rows are built with plain attribute sets.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from aigw.cost import CustomCost, PriceTable, compute_cost, parse_custom_cost
from aigw.logstore.row import SECRET_HEADERS, LogRow, collect_flags, parse_metadata, response_members
from aigw.usage import SSEUsageScanner, model_from_path, model_from_request, usage_from_json

__all__ = ["Recorder", "Attempt"]

_SECRET_HEADERS_B = frozenset(h.encode() for h in SECRET_HEADERS)


class Recorder:
    """What one client request contributes to every row and metric of its attempts."""

    __slots__ = ("writer", "metrics", "prices", "account", "gateway", "metadata", "event_id",
                 "do_log", "payload", "custom", "head_bytes", "user_agent", "request_type",
                 "last_id")

    def __init__(self, writer: Any, metrics: Any, prices: PriceTable, account: str,
                 gateway_id: str, gw: Any, headers: Any, head_bytes: int,
                 request_type: str | None) -> None:
        get = headers.get
        self.writer = writer
        self.metrics = metrics
        self.prices = prices
        self.account = account
        self.gateway = gateway_id
        self.do_log, self.payload = collect_flags(
            gw.collect_logs and writer is not None, gw.collect_log_payload,
            get("cf-aig-collect-log"), get("cf-aig-collect-log-payload"))
        if writer is None:
            self.do_log = False
        meta = get("cf-aig-metadata")
        self.metadata = parse_metadata(meta) if meta else None
        self.event_id: str | None = get("cf-aig-event-id")
        cc = get("cf-aig-custom-cost")
        self.custom: CustomCost | None = parse_custom_cost(cc) if cc else None
        self.head_bytes = head_bytes
        self.user_agent: str | None = get("User-Agent")
        self.request_type = request_type
        self.last_id: str | None = None

    def _row(self, t: Any, started: float, status: int) -> LogRow:
        row = LogRow()
        row.account = self.account
        row.gateway = self.gateway
        row.provider = t.slug
        row.path = t.target
        row.request_type = self.request_type
        row.step = t.step
        row.status_code = status
        row.success = 200 <= status < 300
        row.duration = int((time.monotonic() - started) * 1000)
        row.metadata = self.metadata
        row.event_id = self.event_id
        row.user_agent = self.user_agent
        for k, v in t.headers:  # (bytes, bytes) pairs, as sent upstream
            low = k.lower()
            if low == b"content-type":
                row.request_content_type = v.decode("latin-1")
            elif low in _SECRET_HEADERS_B:
                row.secrets += (v.decode("utf-8", "replace").split(" ", 1)[-1],)
        return row

    def failed(self, t: Any, status: int | None, headers: Any, body: bytes,
               started: float) -> None:
        """An attempt that will not be committed (error status, timeout, no response)."""
        code = status or 0
        self.metrics.requests.inc((self.gateway, t.slug, str(code) if status else "error"))
        self.metrics.upstream_latency.observe((t.slug,), time.monotonic() - started)
        if not self.do_log:
            return
        row = self._row(t, started, code)
        if headers is not None:
            for k, v in headers:
                if k.lower() == "content-type":
                    row.response_content_type = v
        self._finish_row(t, row, body)

    def hit(self, t: Any, status: int, ctype: str | None, body: bytes) -> None:
        """A request answered from the cache: a row with cached = true and cost 0."""
        self.metrics.requests.inc((self.gateway, t.slug, str(status)))
        row = self._row(t, time.monotonic(), status)
        self.last_id = row.id
        if not self.do_log:
            return
        row.cached = True
        row.cost = 0.0
        row.response_content_type = ctype
        self._finish_row(t, row, body)

    def _finish_row(self, t: Any, row: LogRow, body: bytes) -> None:
        """Model from the request, body heads (or sizes only), and the row to the writer."""
        row.model = model_from_request(t.body or b"") or \
            model_from_path(t.wire, t.target.partition("?")[0]) or ""
        row.set_bodies((t.body or b"") if self.payload else None,
                       body if self.payload else None, self.head_bytes)
        if not self.payload:
            row.request_size = len(t.body or b"")
            row.response_size = len(body)
        self.writer.submit(row)

    def fallback(self) -> None:
        """The request moves on to its next step."""
        self.metrics.fallbacks.inc((self.gateway,))

    def ready(self, t: Any, status: int, ctype: str, head: bytes, complete: bool,
              started: float) -> "Attempt":
        """A committed attempt; its row id is known now, for `cf-aig-log-id`."""
        row = self._row(t, started, status)
        row.ttfb = row.duration
        row.response_content_type = ctype or None
        self.last_id = row.id
        return Attempt(self, t, row, head, complete, started)

    def response_headers(self) -> tuple[tuple[str, str], ...]:
        """`cf-aig-log-id` and `cf-aig-event-id` for the committed attempt."""
        if self.last_id is None:
            return ()
        return (("cf-aig-log-id", self.last_id),
                ("cf-aig-event-id", self.event_id or self.last_id))


class Attempt:
    """The committed attempt: watches relayed chunks, then writes its row."""

    __slots__ = ("rec", "t", "row", "head", "complete", "started", "scanner", "_scan", "size",
                 "parts", "room")

    def __init__(self, rec: Recorder, t: Any, row: LogRow, head: bytes, complete: bool,
                 started: float) -> None:
        self.rec = rec
        self.t = t
        self.row = row
        self.head = head
        self.started = started
        # A JSON body read whole is parsed once at the end; anything streamed (or an SSE
        # reply that happened to arrive whole) is scanned as it goes.
        sse = (row.response_content_type or "").startswith("text/event-stream")
        streamed = not complete or sse
        self.complete = not streamed
        self.scanner: SSEUsageScanner | None = SSEUsageScanner() if streamed else None
        # A translated stream (a target with its own relay) is parsed event by event by its
        # translator, which hands the scanner what it parsed (`usage_sink`): its bytes are
        # not searched and parsed a second time.
        self._scan = None if self.scanner is None or (sse and t.relay is not None) \
            else self.scanner.feed
        self.size = len(head)
        # the response head is kept only for a row that stores bodies
        keep = rec.head_bytes if rec.do_log and rec.payload else 0
        self.parts: list[bytes] = [head[:keep]] if head and keep else []
        self.room = keep - len(self.parts[0]) if self.parts else keep
        if head and self._scan is not None:
            self._scan(head)

    def feed(self, chunk: bytes) -> None:
        """One relayed chunk: count it, keep the body head, scan for usage."""
        self.size += len(chunk)
        if self.room > 0:
            self.parts.append(chunk[:self.room])
            self.room -= len(self.parts[-1])
        if self._scan is not None:
            self._scan(chunk)

    def usage_sink(self) -> Callable[[Any], None] | None:
        """Where a stream translator sends each parsed upstream event (usage is read from
        them): the scanner's `see`, or None when this reply is not scanned."""
        return self.scanner.see if self.scanner is not None else None

    def finish(self) -> None:
        """The response is done: usage, cost, metrics, and the row to the writer."""
        rec, t, row = self.rec, self.t, self.row
        elapsed = time.monotonic() - self.started
        row.duration = int(elapsed * 1000)
        if self.complete:
            usage = usage_from_json(t.wire, self.head)
        else:
            usage = self.scanner.result() if self.scanner is not None else None
        model = (usage.model if usage is not None else None) or \
            model_from_request(t.body or b"") or model_from_path(t.wire, t.target.partition("?")[0]) or ""
        row.model = model
        price = rec.prices.lookup(t.slug, model)
        row.cost, row.custom_cost = compute_cost(usage, price, rec.custom)
        m = rec.metrics
        m.requests.inc((rec.gateway, t.slug, str(row.status_code)))
        m.upstream_latency.observe((t.slug,), elapsed)
        if row.ttfb is not None:
            m.ttfb.observe((t.slug,), row.ttfb / 1000.0)
        if usage is not None:
            row.tokens_in = usage.tokens_in
            row.tokens_out = usage.tokens_out
            row.cache_read = usage.cache_read
            row.cache_write = usage.cache_write
            m.tokens.inc((t.slug, model, "in"), usage.tokens_in)
            m.tokens.inc((t.slug, model, "out"), usage.tokens_out)
        if row.cost:
            m.cost.inc((t.slug, model), row.cost)
        if not rec.do_log:
            return
        body = t.body or b""
        row.request_size = len(body)
        row.response_size = self.size
        row.request_head_complete = len(body) <= rec.head_bytes
        row.response_head_complete = self.size <= rec.head_bytes
        if rec.payload:
            row.request_body = body[:rec.head_bytes]
            row.response_body = b"".join(self.parts)
            row.response_members = response_members(t.wire, row.status_code,
                                                    row.response_content_type, t.target)
        rec.writer.submit(row)
