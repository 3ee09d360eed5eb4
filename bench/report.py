"""Summaries of a benchmark run: medians, the printed table and the machine record."""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import time
from importlib import metadata
from pathlib import Path
from statistics import median
from typing import Any

MEDIAN_METRICS = ("rps", "p50_ms", "p99_ms", "ttfb_p50_ms", "total_p50_ms", "cpu_us_per_req",
                  "upstream_per_req", "mock_cpu_util")
SUM_METRICS = ("errors", "non2xx")
TABLE_METRICS = ("rps", "p50_ms", "ttfb_p50_ms", "total_p50_ms", "cpu_us_per_req")
ROOT = Path(__file__).resolve().parent.parent


def progress_line(run: dict[str, Any]) -> str:
    """One line per measurement on stderr, so a long run shows it is alive."""
    shown = " ".join(f"{k}={run[k]}" for k in (*TABLE_METRICS, *SUM_METRICS) if run.get(k) is not None)
    return f"[{run['repeat']}] {run['scenario']:<20} {run['target']:<10} {shown}"


def medians(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """scenario -> target -> metric -> median over repeats (errors and non2xx are summed)."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        grouped.setdefault((r["scenario"], r["target"]), []).append(r)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (sc, tgt), rs in grouped.items():
        row: dict[str, float] = {}
        for k in MEDIAN_METRICS:
            vals = [r[k] for r in rs if isinstance(r.get(k), (int, float))]
            if vals:
                row[k] = round(float(median(vals)), 4)
        for k in SUM_METRICS:
            row[k] = float(sum(r.get(k) or 0 for r in rs))
        out.setdefault(sc, {})[tgt] = row
    return out


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3f}"


def table(med: dict[str, dict[str, dict[str, float]]], targets: list[str], scenarios: list[str],
          gateways: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of medians, each with its ratio to direct in parentheses."""
    width = 22
    lines = [f"{'scenario':<20} {'metric':<15}" + "".join(f"{t:>{width}}" for t in targets)]
    lines.append("-" * len(lines[0]))
    for sc in scenarios:
        per = med.get(sc, {})
        first = True
        for k in TABLE_METRICS:
            if not any(k in per.get(t, {}) for t in targets):
                continue
            base = per.get("direct", {}).get(k)
            cells = []
            for t in targets:
                v = per.get(t, {}).get(k)
                if v is None:
                    cells.append(f"{'-':>{width}}")
                    continue
                ratio = f" ({v / base:.2f}x)" if base and t != "direct" else ""
                cells.append(f"{_fmt(v) + ratio:>{width}}")
            lines.append(f"{sc if first else '':<20} {k:<15}" + "".join(cells))
            first = False
        bad = {t: per[t]["errors"] + per[t]["non2xx"] for t in targets if t in per and
               per[t]["errors"] + per[t]["non2xx"] > 0}
        if bad:
            lines.append(f"{'':<20} {'errors+non2xx':<15} {bad}")
    for name, g in gateways.items():
        lines.append(f"{name}: peak RSS {g['peak_rss_kb'] / 1024:.1f} MiB (start {(g['rss_start_kb'] or 0) / 1024:.1f})")
    return "\n".join(lines)


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _cmd(cmd: list[str]) -> str | None:
    try:
        cp = subprocess.run(cmd, capture_output=True, timeout=10, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (cp.stdout or cp.stderr).decode(errors="replace").strip()
    return text.splitlines()[0] if text else None


def machine(use_wrk: bool, args: argparse.Namespace) -> dict[str, Any]:
    """What a result depends on: machine, limits, versions, settings (TensorZero's habit)."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "ulimit_nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in ("aiohttp", "orjson", "uvloop", "aigw")},
        "load_tool": _cmd(["wrk", "-v"]) if use_wrk else "bench/loadgen.py",
        "git": _cmd(["git", "rev-parse", "--short", "HEAD"]),
        "settings": {"repeats": args.repeats, "duration_s": args.duration, "pin": args.pin,
                     "ttfb_requests": args.ttfb_requests, "paced_requests": args.paced_requests,
                     "gateway_cmd": args.gateway_cmd},
    }
