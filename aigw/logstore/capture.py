"""Per-request capture: turns upstream attempts into log rows and metric updates.

A `Recorder` is made once per request from its `cf-aig-*` headers (bad values are 400s
before anything goes upstream). The proxy reports each attempt to it; a committed attempt
gets an `Attempt` whose `feed` sees each relayed chunk on the side (usage scan and body
head) and whose `finish` submits the row. Rows are built with plain attribute sets.
"""

from __future__ import annotations

import time
import zlib
from typing import Any, Callable, Iterator

from aigw.cost import CustomCost, PriceTable, compute_cost, parse_custom_cost
from aigw.logstore.row import (SECRET_HEADERS, LogRow, clean_text, collect_flags, parse_metadata,
                               response_members)
from aigw.usage import (SSEUsageScanner, Usage, model_from_path, model_from_request, usage_from_json,
                        usage_from_obj, usage_from_tail)

__all__ = ["Recorder", "Attempt", "secret_header_names", "decoder"]

SECRET_HEADERS_B = frozenset(h.encode() for h in SECRET_HEADERS)


def secret_header_names(auth_headers: Any) -> frozenset[bytes]:
    """SECRET_HEADERS and the given auth header names (each provider's `auth_header`), as
    the lowercase bytes `Recorder` compares upstream header names with."""
    return SECRET_HEADERS_B | {h.lower().encode("latin-1") for h in auth_headers if h}


class Recorder:
    """What one client request contributes to every row and metric of its attempts."""

    __slots__ = ("writer", "metrics", "prices", "account", "gateway", "metadata", "event_id",
                 "do_log", "payload", "custom", "head_bytes", "user_agent", "request_type",
                 "last_id", "secret_headers", "client_secrets")

    def __init__(self, writer: Any, metrics: Any, prices: PriceTable, account: str,
                 gateway_id: str, gw: Any, headers: Any, head_bytes: int,
                 request_type: str | None,
                 secret_headers: frozenset[bytes] = SECRET_HEADERS_B) -> None:
        get = headers.get
        # Header names whose values sent upstream are credentials: the usual ones and every
        # configured provider's own auth header (secret_header_names, built at start-up).
        self.secret_headers = secret_headers
        # The gateway token is a secret too, though it never goes upstream.
        token = get("cf-aig-authorization")
        self.client_secrets: tuple[str, ...] = (token.split(" ", 1)[-1],) if token else ()
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
        self.event_id: str | None = clean_text(get("cf-aig-event-id"))
        cc = get("cf-aig-custom-cost")
        self.custom: CustomCost | None = parse_custom_cost(cc) if cc else None
        self.head_bytes = head_bytes
        self.user_agent: str | None = clean_text(get("User-Agent"))
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
        row.secrets = self.client_secrets
        secret = self.secret_headers
        for k, v in t.headers:  # (bytes, bytes) pairs, as sent upstream
            low = k.lower()
            if low == b"content-type":
                row.request_content_type = v.decode("latin-1")
            elif low in secret:
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
        row.success = False  # an in-band error comes with a 2xx status
        self.last_id = row.id  # the error the client gets names this row (cf-aig-log-id)
        size = len(body)
        if headers is not None:
            for k, v in headers:
                if k.lower() == "content-type":
                    row.response_content_type = v
            body = _plain(headers, body, self.head_bytes + 1)
        self._finish_row(t, row, body, size)

    def hit(self, t: Any, status: int, headers: Any, body: bytes) -> None:
        """A request answered from the cache: a row with cached = true and cost 0."""
        self.metrics.requests.inc((self.gateway, t.slug, str(status)))
        row = self._row(t, time.monotonic(), status)
        self.last_id = row.id
        if not self.do_log:
            return
        row.cached = True
        row.cost = 0.0
        row.response_content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
        self._finish_row(t, row, _plain(headers, body, self.head_bytes + 1), len(body))

    def _finish_row(self, t: Any, row: LogRow, body: bytes, size: int) -> None:
        """Model from the request, body heads (or sizes only), and the row to the writer.
        `body` is the response body (or, compressed, the head of it decoded); `size` the
        bytes relayed."""
        row.model = clean_text(model_from_request(t.body or b"") or
                               model_from_path(t.wire, t.target.partition("?")[0])) or ""
        row.set_bodies((t.body or b"") if self.payload else None,
                       body if self.payload else None, self.head_bytes)
        if not self.payload:
            row.request_size = len(t.body or b"")
        row.response_size = size
        self.writer.submit(row)

    def fallback(self) -> None:
        """The request moves on to its next step."""
        self.metrics.fallbacks.inc((self.gateway,))

    def ready(self, t: Any, status: int, ctype: str, head: bytes, complete: bool,
              started: float, encoding: bytes | None = None) -> "Attempt":
        """A committed attempt; its row id is known now, for `cf-aig-log-id`."""
        row = self._row(t, started, status)
        row.ttfb = row.duration
        row.response_content_type = ctype or None
        self.last_id = row.id
        return Attempt(self, t, row, head, complete, started, encoding)

    def response_headers(self) -> tuple[tuple[str, str], ...]:
        """`cf-aig-log-id` and `cf-aig-event-id` for the committed attempt."""
        if self.last_id is None:
            return ()
        return (("cf-aig-log-id", self.last_id),
                ("cf-aig-event-id", self.event_id or self.last_id))


# A JSON reply relayed in pieces (chunked, or larger than proxy.SMALL_BODY) is kept whole
# up to JSON_KEEP bytes for its usage; past that only its last TAIL_KEEP bytes, where every
# supported shape puts its usage (aigw.usage.usage_from_tail).
JSON_KEEP = 256 << 10
TAIL_KEEP = 64 << 10
# Decoded bytes looked at per compressed reply: a compression bomb stops being read here.
DECODE_MAX = 16 << 20
PIECE = 256 << 10


class Inflate:
    """A gzip or deflate response body, decoded on the side (the client gets the bytes as
    they came): what the log row's head and the usage scan look at. Bounded: at most
    DECODE_MAX decoded bytes a reply, handed out in pieces of at most PIECE bytes, so a
    compression bomb costs neither memory nor more than a few ms of inflating."""

    __slots__ = ("_d", "left", "opaque")

    def __init__(self, encoding: bytes, opaque: bool = False) -> None:
        self._d: Any = None if opaque or encoding == b"deflate" else zlib.decompressobj(31)
        self.left = 0 if opaque else DECODE_MAX
        self.opaque = opaque  # an encoding aigw cannot decode: nothing comes out

    def _inflate(self, data: bytes, most: int) -> bytes:
        if self._d is None:  # HTTP's deflate is zlib-wrapped; some servers send it raw
            self._d = zlib.decompressobj(15 if len(data) > 1 and data[0] & 0x0F == 8 and
                                         (data[0] << 8 | data[1]) % 31 == 0 else -15)
        try:
            out = self._d.decompress(data, min(most, self.left))
        except zlib.error:
            self.left = 0
            return b""
        self.left -= len(out)
        return out

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes of the next chunk, in pieces (none once it fails or reaches
        DECODE_MAX)."""
        while data and self.left > 0:
            out = self._inflate(data, PIECE)
            if not out:
                return  # needs the next chunk (or failed)
            data = self._d.unconsumed_tail
            yield out

    def head(self, data: bytes, most: int) -> bytes:
        """The first `most` decoded bytes of a whole body."""
        return self._inflate(data, most) if data and self.left > 0 else b""


def decoder(encoding: bytes | None) -> Inflate | None:
    """A decoder for a `Content-Encoding` (None for none); an encoding aigw cannot decode
    (br, zstd, several) gets one that yields nothing: no usage, and no head is stored."""
    if encoding is None:
        return None
    enc = encoding.strip().lower()
    if enc in (b"", b"identity"):
        return None
    if enc in (b"gzip", b"x-gzip", b"deflate"):
        return Inflate(enc)
    return Inflate(enc, opaque=True)


def _plain(headers: Any, body: bytes, most: int) -> bytes:
    """A whole body as its stored head shows it: decoded (its first `most` bytes) when
    `headers` (str pairs) say the upstream compressed it (b"" for an encoding aigw cannot
    decode)."""
    enc = next((v for k, v in headers if k.lower() == "content-encoding"), None)
    dec = None if enc is None else decoder(enc.encode("latin-1"))
    return body if dec is None else dec.head(body, most)


class Attempt:
    """The committed attempt: watches relayed chunks, then writes its row."""

    __slots__ = ("rec", "t", "row", "head", "complete", "started", "scanner", "_scan", "size",
                 "parts", "room", "decoder", "plain", "body", "kept", "truncated", "failed",
                 "ttfb", "parsed")

    def __init__(self, rec: Recorder, t: Any, row: LogRow, head: bytes, complete: bool,
                 started: float, encoding: bytes | None = None) -> None:
        self.rec = rec
        self.t = t
        self.row = row
        self.started = started
        self.ttfb = time.monotonic() - started  # seconds, for the histogram (the row has ms)
        self.size = len(head)
        self.failed = False  # the reply was not delivered whole (`mark_failed`)
        self.decoder = None if encoding is None else decoder(encoding)
        self.head = head
        self.parsed: Any = None  # the body as the relay parsed it (`usage_from`)
        self.plain = 0  # bytes taken (`_take`): the decoded size of a compressed reply
        # Usage: a JSON body read whole is parsed once at the end; one relayed in pieces (or
        # compressed: decoded in bounded pieces) is kept, bounded, and parsed at the end; an
        # SSE reply is scanned as it goes.
        sse = (row.response_content_type or "").startswith("text/event-stream")
        self.complete = complete and not sse and self.decoder is None
        self.body: list[bytes] | None = None if self.complete or sse else []
        self.kept = 0
        self.truncated = False
        self.scanner: SSEUsageScanner | None = SSEUsageScanner() if sse else None
        # A translated stream (a target with its own relay) is parsed event by event by its
        # translator, which hands the scanner what it parsed (`usage_sink`): its bytes are
        # not searched and parsed a second time.
        self._scan = None if self.scanner is None or t.relay is not None else self.scanner.feed
        # the response head is kept only for a row that stores bodies
        self.parts: list[bytes] = []
        self.room = rec.head_bytes if rec.do_log and rec.payload else 0
        if self.decoder is not None:
            for piece in self.decoder.pieces(head):
                self._take(piece)
        elif head:
            self._take(head)

    def feed(self, chunk: bytes) -> None:
        """One relayed chunk: count it, keep the body head, scan for usage."""
        self.size += len(chunk)
        if self.decoder is not None:
            for piece in self.decoder.pieces(chunk):
                self._take(piece)
            return
        if self.room > 0:
            self.parts.append(chunk[:self.room])
            self.room -= len(self.parts[-1])
        if self._scan is not None:
            self._scan(chunk)
        elif self.body is not None:
            self._keep(chunk)

    def _take(self, piece: bytes) -> None:
        """The head, or a decoded piece of a compressed reply: what `feed` does with a plain
        chunk (which `feed` does inline: a call more per relayed chunk shows in the
        benchmark)."""
        self.plain += len(piece)
        if self.room > 0:
            self.parts.append(piece[:self.room])
            self.room -= len(self.parts[-1])
        if self._scan is not None:
            self._scan(piece)
        elif self.body is not None:
            self._keep(piece)

    def _keep(self, chunk: bytes) -> None:
        body = self.body
        assert body is not None
        body.append(chunk)
        self.kept += len(chunk)
        if self.kept > JSON_KEEP + TAIL_KEEP:  # past the whole-body bound: keep the tail
            tail = b"".join(body)[-TAIL_KEEP:]
            body[:] = [tail]
            self.kept = len(tail)
            self.truncated = True

    def mark_failed(self) -> None:
        """The relay did not deliver a whole reply: the upstream broke off mid-way, or (a
        translated reply) sent an error event, no finish reason, or a 2xx that is not its
        reply. The row says the attempt did not succeed; its status is the upstream's."""
        self.failed = True

    def usage_from(self, parsed: Any) -> None:
        """The whole JSON body, already parsed by a translating relay: usage is read from it
        rather than from the bytes parsed again."""
        self.parsed = parsed

    def usage_sink(self) -> Callable[[Any], None] | None:
        """Where a stream translator sends each parsed upstream event (usage is read from
        them): the scanner's `see`, or None when this reply is not scanned."""
        return self.scanner.see if self.scanner is not None else None

    def _usage(self) -> Usage | None:
        if self.complete:
            if self.parsed is not None:
                return usage_from_obj(self.parsed)
            return usage_from_json(self.t.wire, self.head)
        if self.body is not None:
            data = b"".join(self.body)
            return usage_from_tail(data) if self.truncated else usage_from_json(self.t.wire, data)
        if self.scanner is None:
            return None
        self.scanner.flush()
        return self.scanner.result()

    def finish(self) -> None:
        """The response is done: usage, cost, metrics, and the row to the writer."""
        rec, t, row = self.rec, self.t, self.row
        elapsed = time.monotonic() - self.started
        row.duration = int(elapsed * 1000)
        try:
            usage = self._usage()
        except Exception:  # an upstream body no parser should have to take: no usage
            usage = None
        if self.failed:
            row.success = False
        model = (usage.model if usage is not None else None) or \
            model_from_request(t.body or b"") or model_from_path(t.wire, t.target.partition("?")[0]) or ""
        row.model = model = clean_text(model) or ""
        price = rec.prices.lookup(t.slug, model)
        row.cost, row.custom_cost = compute_cost(usage, price, rec.custom)
        m = rec.metrics
        m.requests.inc((rec.gateway, t.slug, str(row.status_code)))
        m.upstream_latency.observe((t.slug,), elapsed)
        m.ttfb.observe((t.slug,), self.ttfb)
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
        if self.decoder is None:
            row.response_head_complete = self.size <= rec.head_bytes
        else:  # the head is of the decoded body (the size is of the bytes relayed)
            row.response_head_complete = self.plain <= rec.head_bytes and self.decoder.left > 0
        if rec.payload:
            row.request_body = body[:rec.head_bytes]
            # a body in an encoding aigw cannot decode is not stored (its size is)
            opaque = self.decoder is not None and self.decoder.opaque
            row.response_body = None if opaque else b"".join(self.parts)
            row.response_members = response_members(t.wire, row.status_code,
                                                    row.response_content_type, t.target)
        rec.writer.submit(row)
