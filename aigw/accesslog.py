"""The process's own logs: one access line per request, and the `aigw.*` messages.

Both are written by threads, never by the event loop. An access entry is a tuple appended
to a bounded deque (one `deque.append`, ~50 ns); a writer thread wakes every 50 ms, formats
the batch (JSON lines or text) and writes it to stdout. When the deque is full the entry
is dropped and counted, so a stalled stdout can slow nothing but the log itself.
Messages go through `logging.handlers.QueueHandler` to a `QueueListener` on stderr.

Fields: ts, method, route, path (never the query: it may carry `?key=`), gateway,
provider, status, step, duration_ms, ttfb_ms, bytes, cache, pid. No headers are logged.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
from collections import deque
from typing import IO, Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from aigw import _json
from aigw.config import LogSpec

logger = logging.getLogger("aigw.accesslog")

FLUSH_INTERVAL = 0.05
QUEUE_MAX = 100_000

# (wall ts, method, raw path, status, step, cache, duration s, ttfb s | None, bytes)
Entry = tuple[float, str, str, int, str | None, str | None, float, float | None, int]


class TimedRequest(web.BaseRequest):
    """A request that remembers when its response head went out (for TTFB).

    `_prepare_hook` is the method aiohttp awaits in `StreamResponse.prepare()` (web.Request
    fires `on_response_prepare` from it); the base class's is a no-op, so this costs one
    attribute set per request.
    """

    # perf_counter: uvloop's loop.time() ticks in whole milliseconds.
    first_byte_at = 0.0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.started_at = time.perf_counter()

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        self.first_byte_at = time.perf_counter()


def split_route(path: str) -> tuple[str, str | None, str | None]:
    """(route, gateway, provider) of a raw path without its query."""
    if path.startswith("/v1/"):
        parts = path[4:].split("/", 3)
        gateway = parts[1] if len(parts) > 1 else None
        if len(parts) == 2 or (len(parts) == 3 and parts[2] == ""):
            return "universal", gateway, None
        if len(parts) >= 3:
            return "provider", gateway, parts[2]
        return "other", None, None
    if path in ("/healthz", "/readyz"):
        return path[1:], None, None
    return "other", None, None


def to_fields(e: Entry, pid: int) -> dict[str, Any]:
    """An entry as the dict a JSON line is made of."""
    ts, method, raw, status, step, cache, duration, ttfb, size = e
    path = raw.partition("?")[0]
    route, gateway, provider = split_route(path)
    return {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z",
        "method": method, "route": route, "path": path[:512], "gateway": gateway,
        "provider": provider, "status": status,
        "step": int(step) if step is not None and step.isdigit() else None,
        "duration_ms": round(duration * 1000, 3),
        "ttfb_ms": round(ttfb * 1000, 3) if ttfb is not None else None,
        "bytes": size, "cache": cache, "pid": pid,
    }


def format_text(f: dict[str, Any]) -> str:
    """One human-readable line (log.format = "text")."""
    return ("{ts} {method} {path} {status} route={route} gateway={gateway} provider={provider} "
            "step={step} duration_ms={duration_ms} ttfb_ms={ttfb_ms} bytes={bytes} "
            "cache={cache}").format(**f)


class AccessLog:
    """Bounded queue of access entries, drained by a writer thread."""

    def __init__(self, fmt: str = "json", stream: IO[bytes] | None = None,
                 maxlen: int = QUEUE_MAX) -> None:
        self.fmt = fmt
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.maxlen = maxlen
        self.entries: deque[Entry] = deque()
        self.written = 0
        self.dropped = 0
        self._reported = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return (f"<AccessLog {self.fmt} [queued {len(self.entries)} | written {self.written} | "
                f"dropped {self.dropped}]>")

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="aigw-access-log", daemon=True)
        self._thread.start()

    def add(self, entry: Entry) -> None:
        """Queue one entry (from the event loop); never blocks."""
        if len(self.entries) >= self.maxlen:
            self.dropped += 1
            return
        self.entries.append(entry)

    def logger_class(self) -> type[AbstractAccessLogger]:
        """An aiohttp access-logger class feeding this log; aiohttp calls `log()` once the
        response has been sent, so status, bytes and duration are final."""
        sink = self

        class _Access(AbstractAccessLogger):
            __slots__ = ()

            def log(self, request: web.BaseRequest, response: web.StreamResponse,
                    time_: float) -> None:
                if isinstance(request, TimedRequest):
                    time_ = time.perf_counter() - request.started_at
                    first = request.first_byte_at
                    ttfb = first - request.started_at if first else None
                else:
                    ttfb = None
                h = response.headers
                sink.add((time.time(), request.method, request.raw_path, response.status,
                          h.get("cf-aig-step"), h.get("cf-aig-cache-status"), time_, ttfb,
                          response.body_length))

        return _Access

    def _format(self, e: Entry) -> bytes:
        fields = to_fields(e, self._pid)
        if self.fmt == "json":
            return _json.dumps(fields) + b"\n"
        return format_text(fields).encode() + b"\n"

    def flush(self) -> None:
        """Write whatever is queued (writer thread, or the caller after `close`)."""
        out = []
        entries = self.entries
        while entries:
            out.append(self._format(entries.popleft()))
        if out:
            try:
                self.stream.write(b"".join(out))
                self.stream.flush()
            except (OSError, ValueError):
                self.dropped += len(out)
                return
            self.written += len(out)
        if self.dropped != self._reported:
            logger.warning("access log: %d lines dropped so far", self.dropped)
            self._reported = self.dropped

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL):
            self.flush()
        self.flush()

    def close(self) -> None:
        """Stop the writer after it has written everything queued."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.flush()


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", "pid"}` per line; exceptions as `exc`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(), "pid": record.process,
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _json.dumps(out).decode()


def configure(spec: LogSpec, stream: IO[str] | None = None) -> logging.handlers.QueueListener:
    """Route the process's log messages through a queue to a thread writing `stream`
    (stderr); returns the listener, whose `stop()` flushes it."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if spec.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s "
                                               "[%(process)d]: %(message)s"))
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(logging.handlers.QueueHandler(q))
    root.setLevel(spec.level.upper())
    listener = logging.handlers.QueueListener(q, handler, respect_handler_level=False)
    listener.start()
    return listener


def set_level(spec: LogSpec) -> None:
    """Apply a reloaded `log.level`."""
    logging.getLogger().setLevel(spec.level.upper())
