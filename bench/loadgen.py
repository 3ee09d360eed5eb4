"""A closed-loop HTTP/1.1 load generator, the fallback for when `wrk` is not installed.

One keep-alive connection per worker; each worker sends a request, reads the complete
response (Content-Length, chunked or read-to-close), and sends the next. Every request
records latency (send -> last byte) and time to first body byte, so the same code is the
TTFB client (`bench/ttfb.py` runs it with one connection).

    python bench/loadgen.py --url http://127.0.0.1:9999/v1/chat/completions \
        --connections 8 --duration 5 --body body.json --header 'content-type:application/json'

prints one JSON object: rps, latency_ms {p50,p90,p99,max,mean}, ttfb_ms, errors, non2xx.
It is a Python client, so it saturates near 15-25k req/s on one core; prefer wrk for
throughput and use this for TTFB and stream timing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Coroutine
from urllib.parse import urlsplit

import orjson

# Bounded even when the duration is long: a runaway run stops at this many requests.
DEFAULT_MAX_REQUESTS = 5_000_000
CONNECT_RETRY_S = 0.01


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """A request resolved once into the bytes every worker sends."""

    host: str
    port: int
    raw: bytes

    @classmethod
    def build(cls, url: str, method: str, body: bytes, headers: list[tuple[str, str]]) -> RequestSpec:
        """Resolve URL, method, body and headers into wire bytes."""
        u = urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"only http:// URLs are supported: {url!r}")
        port = u.port or 80
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        names = {k.lower() for k, _ in headers}
        lines = [f"{method} {path} HTTP/1.1", f"Host: {u.hostname}:{port}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body and "content-type" not in names:
            lines.append("Content-Type: application/json")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        return cls(u.hostname, port, raw)


@dataclass(slots=True)
class Results:
    """Raw samples of one run; summarised by `summary`."""

    latency: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    status: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, exc: BaseException) -> None:
        """Count a failed request by exception type."""
        self.errors += 1
        name = type(exc).__name__
        self.error_kinds[name] = self.error_kinds.get(name, 0) + 1


class ProtocolError(Exception):
    """The server sent something this client cannot frame."""


async def read_response(reader: asyncio.StreamReader) -> tuple[int, float, bool]:
    """Read one response; return (status, time of first body byte, keep-alive)."""
    head = await reader.readuntil(b"\r\n\r\n")
    t_first = time.perf_counter()
    lines = head.decode("latin-1").split("\r\n")
    try:
        version, code = lines[0].split(" ", 2)[:2]
        status = int(code)
    except ValueError as exc:
        raise ProtocolError(f"bad status line {lines[0]!r}") from exc
    length = -1
    chunked = False
    keep = version == "HTTP/1.1"
    for line in lines[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        if k == "content-length":
            length = int(v)
        elif k == "transfer-encoding" and "chunked" in v.lower():
            chunked = True
        elif k == "connection":
            keep = "close" not in v.lower()
    if status in (204, 304) or 100 <= status < 200:
        return status, t_first, keep
    if chunked:
        first = True
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
            if first:
                t_first, first = time.perf_counter(), False
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return status, t_first, keep
            await reader.readexactly(size + 2)
    if length >= 0:
        if length:
            got = len(await reader.read(length))
            t_first = time.perf_counter()
            if got < length:
                await reader.readexactly(length - got)
        return status, t_first, keep
    # no framing: the body runs to connection close
    data = await reader.read(65536)
    t_first = time.perf_counter()
    while data:
        data = await reader.read(65536)
    return status, t_first, False


async def _worker(spec: RequestSpec, deadline: float, budget: list[int], timeout: float, res: Results) -> None:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    try:
        while time.perf_counter() < deadline and budget[0] > 0:
            if writer is None or reader is None:
                try:
                    reader, writer = await asyncio.open_connection(spec.host, spec.port, limit=1 << 20)
                except OSError as exc:
                    res.error(exc)
                    await asyncio.sleep(CONNECT_RETRY_S)
                    continue
            budget[0] -= 1
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    writer.write(spec.raw)
                    status, t_first, keep = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                    ProtocolError, ValueError) as exc:
                res.error(exc)
                writer.close()
                writer = reader = None
                continue
            t1 = time.perf_counter()
            res.latency.append(t1 - t0)
            res.ttfb.append(t_first - t0)
            res.status[status] = res.status.get(status, 0) + 1
            if not keep:
                writer.close()
                writer = reader = None
    finally:
        if writer is not None:
            writer.close()


def percentiles(samples: list[float], points: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles in milliseconds, plus max and mean."""
    if not samples:
        return {}
    s = sorted(samples)
    out = {f"p{p}": round(s[min(len(s) - 1, max(0, -(-p * len(s) // 100) - 1))] * 1000, 4) for p in points}
    out["max"] = round(s[-1] * 1000, 4)
    out["mean"] = round(sum(s) / len(s) * 1000, 4)
    return out


async def run(spec: RequestSpec, connections: int, duration: float, max_requests: int = DEFAULT_MAX_REQUESTS,
              timeout: float = 10.0) -> dict[str, Any]:
    """Drive `connections` closed-loop workers for `duration` seconds; return the summary."""
    res = Results()
    budget = [max_requests]
    t0 = time.perf_counter()
    deadline = t0 + duration
    await asyncio.gather(*(_worker(spec, deadline, budget, timeout, res) for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    done = len(res.latency)
    non2xx = sum(n for code, n in res.status.items() if not 200 <= code < 300)
    return {
        "tool": "python",
        "connections": connections,
        "duration_s": round(elapsed, 3),
        "requests": done,
        "rps": round(done / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": percentiles(res.latency),
        "ttfb_ms": percentiles(res.ttfb),
        "errors": res.errors,
        "error_kinds": res.error_kinds,
        "non2xx": non2xx,
        "status": {str(k): v for k, v in sorted(res.status.items())},
    }


def parse_header(text: str) -> tuple[str, str]:
    """`K:V` or `K: V` into a pair."""
    k, sep, v = text.partition(":")
    if not sep or not k.strip():
        raise argparse.ArgumentTypeError(f"header must be K:V, got {text!r}")
    return k.strip(), v.strip()


def common_args(ap: argparse.ArgumentParser) -> None:
    """Arguments shared by loadgen and ttfb."""
    ap.add_argument("--url", required=True)
    ap.add_argument("--method", default="POST")
    ap.add_argument("--body", type=Path, help="file whose bytes are the request body")
    ap.add_argument("--header", action="append", type=parse_header, default=[], help="K:V, repeatable")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")


def spec_from_args(args: argparse.Namespace) -> RequestSpec:
    """Build the request from parsed CLI arguments."""
    body = args.body.read_bytes() if args.body else b""
    return RequestSpec.build(args.url, args.method.upper(), body, args.header)


def run_loop(coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run on uvloop when installed: it roughly doubles what one Python core can drive."""
    factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: print the JSON summary."""
    ap = argparse.ArgumentParser(description="closed-loop HTTP/1.1 load generator")
    common_args(ap)
    ap.add_argument("--connections", "-c", type=int, default=8)
    ap.add_argument("--duration", "-d", type=float, default=5.0, help="seconds")
    ap.add_argument("--max-requests", type=int, default=DEFAULT_MAX_REQUESTS)
    args = ap.parse_args(argv)
    out = run_loop(run(spec_from_args(args), max(1, args.connections), args.duration, args.max_requests,
                       args.timeout))
    sys.stdout.write(orjson.dumps(out).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
