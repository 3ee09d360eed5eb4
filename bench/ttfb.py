"""Sequential requests on one keep-alive connection: time to first body byte and to last byte.

    python bench/ttfb.py --url http://127.0.0.1:9999/v1/chat/completions \
        --body stream.json --requests 200 --duration 10

prints JSON: requests, ttfb_ms {p50,p99,...}, total_ms {p50,p99,...}, errors, non2xx.
One connection and no concurrency, so the figures are latency, not queueing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen  # noqa: E402


async def measure(spec: loadgen.RequestSpec, requests: int, duration: float, timeout: float = 10.0) -> dict[str, Any]:
    """Up to `requests` sequential requests within `duration` seconds; TTFB and total time."""
    out = await loadgen.run(spec, 1, duration, requests, timeout)
    return {
        "tool": "ttfb",
        "requests": out["requests"],
        "ttfb_ms": out["ttfb_ms"],
        "total_ms": out["latency_ms"],
        "errors": out["errors"],
        "error_kinds": out["error_kinds"],
        "non2xx": out["non2xx"],
        "status": out["status"],
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: print the JSON summary."""
    ap = argparse.ArgumentParser(description="TTFB / total-time client on one keep-alive connection")
    loadgen.common_args(ap)
    ap.add_argument("--requests", "-n", type=int, default=200)
    ap.add_argument("--duration", "-d", type=float, default=10.0, help="upper bound, seconds")
    args = ap.parse_args(argv)
    out = loadgen.run_loop(measure(loadgen.spec_from_args(args), args.requests, args.duration, args.timeout))
    sys.stdout.write(orjson.dumps(out).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
