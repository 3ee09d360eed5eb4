"""Soak run: a long mixed load against one aigw process, watching its memory and descriptors.

    PYTHONPATH=. python bench/soak.py --requests 1000000 --connections 32

Starts `bench/mock_upstream.py` and `python -m aigw serve` as child processes (SQLite log
store on, in a temporary directory), then drives a fixed, interleaved mix of requests over
keep-alive connections: pass-through JSON, pass-through SSE streams, universal requests whose
first step fails (503, or a stall past its `requestTimeout`) and falls back, upstream 429s
with `Retry-After`, streams cut by the upstream mid-way, and clients that hang up after the
response head. Every `--sample` seconds it records the gateway's VmRSS and open descriptors.

Pass criteria (printed, and the exit status): every request sent got a response head
(`answered == sent`), RSS after warm-up grew by less than 5%, the descriptor count after
the load (clients gone) is no higher than during warm-up, and the gateway logged no
traceback. All traffic stays on 127.0.0.1;
the run stops at `--requests` or `--max-seconds`, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import ProtocolError, RequestSpec, read_response, run_loop  # noqa: E402
from bench.run import free_port, stop, wait_port  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
GATEWAY = "/v1/acct/soak"
CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
STREAM = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
MESSAGES = (b'{"model":"claude-haiku-4-5","max_tokens":16,'
            b'"messages":[{"role":"user","content":"hi"}]}')
AUTH = ("Authorization", "Bearer sk-soak-0000000000000000")
# OpenAI's shape to /compat, answered by the Anthropic mock and translated back (a whole
# stream of the usual shape: the one-pass path, StreamTranslator.whole)
COMPAT_STREAM = (b'{"model":"anthropic/claude-haiku-4-5","stream":true,"stream_options":'
                 b'{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}')


def _universal(first: dict[str, Any]) -> bytes:
    second = {"provider": "anthropic", "endpoint": "v1/messages",
              "headers": {"x-api-key": "sk-ant-soak-0000000000"},
              "query": orjson.loads(MESSAGES)}
    return orjson.dumps([first, second])


@dataclass(frozen=True, slots=True)
class Kind:
    """One request shape of the mix; `hangup`: the client closes after the response head."""

    name: str
    spec: RequestSpec
    hangup: bool = False


def mix(port: int) -> list[Kind]:
    """The request mix, one entry per slot of a 20-slot cycle."""
    base = f"http://127.0.0.1:{port}{GATEWAY}"
    ct = ("content-type", "application/json")

    def spec(path: str, body: bytes, *headers: tuple[str, str]) -> RequestSpec:
        return RequestSpec.build(base + path, "POST", body, [ct, *headers])

    json_ = Kind("json", spec("/openai/chat/completions", CHAT, AUTH))
    stream = Kind("stream", spec("/openai/chat/completions", STREAM, AUTH,
                                 ("x-mock-chunks", "8")))
    fb_status = Kind("fallback-503", spec("", _universal(
        {"provider": "openai", "endpoint": "chat/completions",
         "headers": {"Authorization": "Bearer sk-soak-1", "x-mock-status": "503"},
         "query": orjson.loads(CHAT)})))
    fb_timeout = Kind("fallback-timeout", spec("", _universal(
        {"provider": "openai", "endpoint": "chat/completions",
         "headers": {"Authorization": "Bearer sk-soak-2", "x-mock-delay-ms": "300"},
         "config": {"requestTimeout": 40}, "query": orjson.loads(CHAT)})))
    rate = Kind("upstream-429", spec("/openai/chat/completions", CHAT, AUTH,
                                     ("x-mock-status", "429"), ("x-mock-retry-after", "1")))
    cut = Kind("stream-cut", spec("/openai/chat/completions", STREAM, AUTH,
                                  ("x-mock-chunks", "8"), ("x-mock-abort-after", "3")))
    hangup = Kind("client-hangup", spec("/openai/chat/completions", STREAM, AUTH,
                                        ("x-mock-chunks", "40"), ("x-mock-chunk-delay-ms", "2")),
                  hangup=True)
    anth = Kind("anthropic-json", spec("/anthropic/v1/messages", MESSAGES,
                                       ("x-api-key", "sk-ant-soak-0000000000")))
    # the same body each time: after the first, answered from the response cache
    cached = Kind("cache-hit-json", spec("/openai/chat/completions", CHAT, AUTH,
                                         ("cf-aig-cache-ttl", "3600")))
    cached_stream = Kind("cache-hit-stream", spec("/openai/chat/completions", STREAM, AUTH,
                                                  ("x-mock-chunks", "8"),
                                                  ("cf-aig-cache-ttl", "3600")))
    compat = Kind("compat-stream", spec("/compat/chat/completions", COMPAT_STREAM, AUTH))
    return [json_, stream, cached, anth, fb_status, json_, stream, hangup, json_, rate,
            cached_stream, stream, json_, anth, fb_timeout, cached, stream, cut, json_, compat]


@dataclass(slots=True)
class Tally:
    """Counters shared by the workers."""

    sent: int = 0
    answered: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    status: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    cuts: int = 0

    def error(self, kind: str, exc: BaseException) -> None:
        """A request with no response head at all."""
        key = f"{kind}:{type(exc).__name__}"
        self.errors[key] = self.errors.get(key, 0) + 1


async def _head(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1])


async def worker(kinds: list[Kind], offset: int, budget: list[int], deadline: float,
                 tally: Tally) -> None:
    """One client connection (reopened when a response ends it) walking the mix."""
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    i = offset
    try:
        while budget[0] > 0 and time.monotonic() < deadline:
            kind = kinds[i % len(kinds)]
            i += 1
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(
                    kind.spec.host, kind.spec.port, limit=1 << 20)
            budget[0] -= 1
            tally.sent += 1
            tally.by_kind[kind.name] = tally.by_kind.get(kind.name, 0) + 1
            try:
                async with asyncio.timeout(30):
                    writer.write(kind.spec.raw)
                    if kind.hangup:
                        status, keep = await _head(reader), False
                    else:
                        status, _, keep = await read_response(reader)
            except asyncio.IncompleteReadError as exc:
                # a stream cut by the upstream ends without a terminator, as designed
                if kind.name == "stream-cut" and exc.partial is not None:
                    tally.answered += 1
                    tally.cuts += 1
                else:
                    tally.error(kind.name, exc)
                writer.close()
                writer = reader = None
                continue
            except (OSError, asyncio.LimitOverrunError, TimeoutError, ProtocolError,
                    ValueError) as exc:
                tally.error(kind.name, exc)
                writer.close()
                writer = reader = None
                continue
            tally.answered += 1
            tally.status[status] = tally.status.get(status, 0) + 1
            if not keep:
                writer.close()
                writer = reader = None
    finally:
        if writer is not None:
            writer.close()


def sample(pid: int) -> tuple[int, int, int]:
    """(VmRSS KiB, RssAnon KiB, open descriptors) of a process.

    VmRSS also counts file pages mapped by the process (SQLite's WAL index is an mmapped
    file); RssAnon is the heap alone, which is where a leak would show.
    """
    rss = anon = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("RssAnon:"):
            anon = int(line.split()[1])
    return rss, anon, len(os.listdir(f"/proc/{pid}/fd"))


async def drive(port: int, pid: int, total: int, connections: int, every: float,
                warmup: int, max_seconds: float) -> dict[str, Any]:
    """Run the mix; sample the gateway while it runs."""
    kinds = mix(port)
    tally = Tally()
    budget = [total]
    start = time.monotonic()
    deadline = start + max_seconds
    samples: list[dict[str, Any]] = []
    rss0, anon0, fd0 = sample(pid)
    tasks = [asyncio.create_task(worker(kinds, c * 7, budget, deadline, tally))
             for c in range(connections)]
    warm: dict[str, Any] | None = None
    while not all(t.done() for t in tasks):
        await asyncio.sleep(every)
        rss, anon, fds = sample(pid)
        row = {"t": round(time.monotonic() - start, 1), "sent": tally.sent,
               "answered": tally.answered, "rss_kib": rss, "anon_kib": anon, "fds": fds}
        samples.append(row)
        if warm is None and tally.sent >= warmup:
            warm = row
        print(orjson.dumps(row).decode(), flush=True)
    for t in tasks:
        t.result()  # a worker that crashed is a failed run
    elapsed = time.monotonic() - start
    await asyncio.sleep(2.0)  # let the gateway notice the closed client connections
    rss_end, anon_end, fd_end = sample(pid)
    if warm is None:
        warm = samples[-1] if samples else {"rss_kib": rss0, "anon_kib": anon0, "fds": fd0}
    growth = (rss_end - warm["rss_kib"]) / warm["rss_kib"]
    fd_peak = max((s["fds"] for s in samples), default=fd0)
    return {
        "requests_sent": tally.sent, "answered": tally.answered, "cuts": tally.cuts,
        "errors": tally.errors, "status": {str(k): v for k, v in sorted(tally.status.items())},
        "by_kind": tally.by_kind, "elapsed_s": round(elapsed, 1),
        "rps": round(tally.sent / elapsed, 1) if elapsed else 0.0,
        "rss_kib": {"start": rss0, "warm": warm["rss_kib"], "end": rss_end,
                    "max": max((s["rss_kib"] for s in samples), default=rss0)},
        "anon_kib": {"start": anon0, "warm": warm["anon_kib"], "end": anon_end,
                     "max": max((s["anon_kib"] for s in samples), default=anon0)},
        "rss_growth_after_warmup": round(growth, 4),
        "anon_growth_after_warmup": round((anon_end - warm["anon_kib"]) / warm["anon_kib"], 4),
        "fds": {"start": fd0, "warm": warm["fds"], "peak_under_load": fd_peak,
                "after_load": fd_end},
        "pass": (tally.answered == tally.sent and growth < 0.05 and fd_end <= warm["fds"]),
    }


CONFIG = """[server]
host = "127.0.0.1"
port = {port}
stream_idle_timeout = 10
client_timeout = 30

[providers.openai]
base_url = "http://127.0.0.1:{mock}/v1"

[providers.anthropic]
base_url = "http://127.0.0.1:{mock}"

[logs]
{logs}
"""
LOGS_SQLITE = 'backend = "sqlite"\npath = "{db}"\nmax_rows = 200000\n{queue}'
LOGS_OFF = 'backend = "off"'


def main(argv: list[str] | None = None) -> int:
    """Start mock and gateway, drive the soak, print and save the summary."""
    ap = argparse.ArgumentParser(description="aigw soak run")
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--warmup", type=int, default=100_000, help="requests before the RSS baseline")
    ap.add_argument("--max-seconds", type=float, default=4 * 3600)
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "soak.json")
    ap.add_argument("--logs", choices=("sqlite", "off"), default="sqlite",
                    help="the gateway's log store (sqlite: a row per attempt, capped at 200k)")
    ap.add_argument("--log-queue", type=int, default=None,
                    help="logs.queue_max: rows waiting for the writer (default: the gateway's)")
    args = ap.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="aigw-soak-") as tmp:
        mport, gport = free_port(), free_port()
        cfg = Path(tmp) / "aigw.toml"
        db = Path(tmp) / "logs.sqlite"
        queue = "" if args.log_queue is None else f"queue_max = {args.log_queue}"
        logs = LOGS_OFF if args.logs == "off" else LOGS_SQLITE.format(db=db, queue=queue)
        cfg.write_text(CONFIG.format(port=gport, mock=mport, logs=logs))
        mock = subprocess.Popen([sys.executable, str(BENCH / "mock_upstream.py"), "--port",
                                 str(mport)], env=env, stdout=subprocess.DEVNULL)
        gw_log = open(Path(tmp) / "aigw.log", "wb")
        gw = subprocess.Popen([sys.executable, "-m", "aigw", "serve", "--config", str(cfg)],
                              env=env, stdout=gw_log, stderr=subprocess.STDOUT)
        try:
            if not (wait_port(mport, mock, 20) and wait_port(gport, gw, 20)):
                sys.stderr.write("soak: mock or gateway did not start\n")
                return 2
            result = run_loop(drive(gport, gw.pid, args.requests, args.connections,
                                    args.sample, args.warmup, args.max_seconds))
        finally:
            stop(gw)
            stop(mock)
            gw_log.close()
        log = (Path(tmp) / "aigw.log").read_bytes()
    result["gateway_log_tracebacks"] = log.count(b"Traceback")
    result["gateway_log_tail"] = log[-600:].decode("utf-8", "replace")
    result["pass"] = result["pass"] and result["gateway_log_tracebacks"] == 0
    result["python"] = sys.version.split()[0]
    result["logs"] = args.logs
    result["log_queue"] = args.log_queue
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
