"""What a feature costs: two aigw configurations on one CPU, loaded at the same time.

    python bench/overhead.py                           # the judged comparisons, 10 rounds of 3 s
    python bench/overhead.py --comparison logging_json --rounds 5
    python bench/overhead.py --comparison compat_sse_live   # supplementary: a live stream

On a shared VM the speed of the machine drifts by 10-30% from one minute to the next, more
than the costs measured here. `run.py` measures targets one after the other, so drift lands
on one of them. This tool runs the baseline and the variant side by side instead: both
gateways are pinned to CPU 0, the mock and one wrk per gateway to CPU 1, and each round
loads both for the same seconds. Whatever the machine does in a round, it does to both.

The figure is the ratio of CPU time per request (utime + stime of each gateway's whole
process tree, from /proc, over the requests its wrk completed), paired round by round:
`baseline / variant` is the throughput the variant keeps on a saturated core, so 0.90
means the feature costs 10% of throughput. The median and the range of the rounds are
reported. Results go to bench/results/overhead.json; see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import procstat, report  # noqa: E402
from bench.run import (BENCH, CONFIG_TEMPLATE, DEFAULT_GATEWAY_CMD, ROOT, free_port, pinner,  # noqa: E402
                       stop, wait_port)
from bench.scenarios import AUTHORIZATION, LIVE_SCENARIOS, SCENARIOS, Scenario  # noqa: E402

LOGS_OFF = '[logs]\nbackend = "off"\n'
# /compat sends the provider only its own headers, not the client's x-mock-*: a live
# Anthropic stream is asked for by the gateway's provider config, on both sides.
_LIVE_ANTHROPIC = '[providers.anthropic.headers]\n"x-mock-chunk-delay-ms" = "1"\n'
PROVIDER_CONFIG = {"anthropic_sse_live_c32": _LIVE_ANTHROPIC, "compat_sse_live_c32": _LIVE_ANTHROPIC}
ROUTES = {"chat": "/openai/chat/completions", "anthropic": "/anthropic/v1/messages",
          "compat": "/compat/chat/completions"}


@dataclass(frozen=True)
class Side:
    """One gateway of a comparison: a scenario and whether request logging is on."""

    scenario: str
    logs: bool
    root: str = ""  # the aigw checkout to run (default: this one)


@dataclass(frozen=True)
class Comparison:
    name: str
    what: str
    baseline: Side
    variant: Side
    target: float  # the variant keeps at least this share of the baseline's throughput
    default: bool = True  # in a run without --comparison


COMPARISONS = (
    Comparison("logging_json", "request logging (SQLite) on vs off, JSON chat at c=64",
               Side("json_c64", False), Side("json_c64", True), 0.90),
    Comparison("logging_sse", "request logging (SQLite) on vs off, 20-chunk stream at c=32",
               Side("sse_c32", False), Side("sse_c32", True), 0.90),
    Comparison("compat_json", "/compat (OpenAI in, Anthropic out, translated back) vs the "
               "Anthropic pass-through, JSON at c=32, logging off",
               Side("anthropic_json_c32", False), Side("compat_json_c32", False), 0.85),
    Comparison("compat_sse", "/compat vs the Anthropic pass-through, 20-delta stream at c=32, "
               "logging off", Side("anthropic_sse_c32", False), Side("compat_sse_c32", False), 0.85),
    # Supplementary, run by name: the same with live streams (an event per chunk, 1 ms apart).
    # Neither gateway is saturated then; CPU per request is still what is compared.
    Comparison("logging_sse_live", "request logging on vs off, 20-chunk live stream at c=32",
               Side("sse_live_c32", False), Side("sse_live_c32", True), 0.90, default=False),
    Comparison("compat_sse_live", "/compat vs the Anthropic pass-through, 20-delta live stream "
               "at c=32, logging off", Side("anthropic_sse_live_c32", False),
               Side("compat_sse_live_c32", False), 0.85, default=False),
)


def against(c: Comparison, root: str) -> Comparison:
    """The code comparison for `c`: its variant side run from `root` (baseline) and from
    this checkout (variant)."""
    return Comparison(f"{c.name}@against", f"{c.variant.scenario} (logs {'on' if c.variant.logs else 'off'}): "
                      f"{root} vs this checkout", Side(c.variant.scenario, c.variant.logs, root),
                      c.variant, c.target, c.default)


class Gateway:
    """One running aigw for one side, with its wrk command."""

    def __init__(self, side: Side, tmp: Path, name: str, mock_port: int, cpus: set[int] | None,
                 tool_cpus: set[int] | None) -> None:
        self.side = side
        self.sc: Scenario = {s.name: s for s in SCENARIOS + LIVE_SCENARIOS}[side.scenario]
        port = free_port()
        logs = f'[logs]\npath = "{tmp / (name + ".sqlite")}"\n' if side.logs else LOGS_OFF
        config = tmp / f"{name}.toml"
        config.write_text(CONFIG_TEMPLATE.format(port=port, mock=mock_port) + "\n"
                          + PROVIDER_CONFIG.get(side.scenario, "") + logs)
        cmd = DEFAULT_GATEWAY_CMD.format(python=sys.executable, config=config, port=port, workers=1)
        root = side.root or str(ROOT)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - kept for the child's lifetime
        self.proc = subprocess.Popen(cmd.split(), cwd=root, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, preexec_fn=pinner(cpus))
        if not wait_port(port, self.proc, 30):
            raise RuntimeError(f"aigw did not start: {(tmp / f'{name}.log').read_text()[-800:]}")
        body = tmp / f"{name}.json"
        body.write_bytes(self.sc.body)
        headers = [f"{k}: {v}" for k, v in (("authorization", AUTHORIZATION), *self.sc.headers)]
        self.env = {**os.environ, "WRK_BODY_FILE": str(body), "WRK_HEADERS": "\n".join(headers)}
        self.url = f"http://127.0.0.1:{port}/v1/bench/bench{ROUTES[self.sc.route]}"
        self.tool_cpus = tool_cpus

    def start_load(self, seconds: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["wrk", "-t1", f"-c{self.sc.connections}", f"-d{seconds}s", "--timeout", "10s",
             "-s", str(BENCH / "wrk" / "post.lua"), self.url],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=pinner(self.tool_cpus))

    def close(self) -> None:
        stop(self.proc)
        self.log.close()


def _wrk_result(proc: subprocess.Popen[str], budget: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=budget)
    for line in out.splitlines():
        if line.startswith("WRK_JSON "):
            data: dict[str, Any] = orjson.loads(line[len("WRK_JSON "):])
            return data
    raise RuntimeError(f"wrk gave no result: {err[-400:]}")


def run_comparison(c: Comparison, rounds: int, seconds: int, mock_port: int,
                   cpus: set[int] | None, tool_cpus: set[int] | None, tmp: Path,
                   spare_core: bool = False) -> dict[str, Any]:
    """Both sides loaded together, `rounds` times (after one warm-up round). `spare_core`:
    the gateways' helper threads run on the tool CPU, only their event loops on CPU 0."""
    sides = [Gateway(c.baseline, tmp, f"{c.name}-base", mock_port, cpus, tool_cpus),
             Gateway(c.variant, tmp, f"{c.name}-variant", mock_port, cpus, tool_cpus)]
    measured: list[list[dict[str, float]]] = [[], []]
    try:
        for r in range(rounds + 1):
            secs = seconds if r else 1
            if spare_core and tool_cpus:  # each round: a helper may have started since
                for g in sides:
                    for tid in procstat.helper_threads(g.proc.pid):
                        with contextlib.suppress(OSError):
                            os.sched_setaffinity(tid, tool_cpus)
            cpu0 = [procstat.cpu_seconds(g.proc.pid) for g in sides]
            loop0 = [procstat.main_thread_seconds(g.proc.pid) for g in sides]
            loads = [g.start_load(secs) for g in sides]
            results = [_wrk_result(p, secs + 30) for p in loads]
            cpu1 = [procstat.cpu_seconds(g.proc.pid) for g in sides]
            loop1 = [procstat.main_thread_seconds(g.proc.pid) for g in sides]
            if r == 0:
                continue
            for i, res in enumerate(results):
                n = max(int(res["requests"]), 1)
                measured[i].append({"rps": n / secs, "cpu_us_per_req": (cpu1[i] - cpu0[i]) / n * 1e6,
                                    "loop_us_per_req": (loop1[i] - loop0[i]) / n * 1e6,
                                    "errors": res.get("errors", 0), "non2xx": res.get("non2xx", 0)})
    finally:
        for g in sides:
            g.close()
    ratios = [b["cpu_us_per_req"] / v["cpu_us_per_req"] for b, v in zip(*measured)]
    rps_ratios = [v["rps"] / b["rps"] for b, v in zip(*measured)]
    loop_ratios = [b["loop_us_per_req"] / v["loop_us_per_req"] for b, v in zip(*measured)]
    med = statistics.median(ratios)

    def side(s: Side, m: list[dict[str, float]]) -> dict[str, Any]:
        return {"scenario": s.scenario, "logs": s.logs,
                "cpu_us_per_req": statistics.median(x["cpu_us_per_req"] for x in m),
                "loop_us_per_req": statistics.median(x["loop_us_per_req"] for x in m)}

    return {
        "comparison": c.name, "what": c.what, "target": c.target,
        "baseline": side(c.baseline, measured[0]), "variant": side(c.variant, measured[1]),
        "throughput_kept": round(med, 3), "range": [round(min(ratios), 3), round(max(ratios), 3)],
        # the same ratio for the event loop's thread alone: the throughput kept where the
        # helper threads (the SQLite writer, the access log) have a core of their own
        "loop_throughput_kept": round(statistics.median(loop_ratios), 3),
        # requests answered, variant over baseline: the throughput the variant keeps, counted
        # directly, where CPU 0 is shared fairly (--spare-core, or --against)
        "rps_kept": round(statistics.median(rps_ratios), 3), "spare_core": spare_core,
        "met": med >= c.target, "rounds": measured,
        "errors": sum(m["errors"] + m["non2xx"] for side in measured for m in side),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description="the cost of a feature, measured side by side")
    ap.add_argument("--comparison", action="append", choices=[c.name for c in COMPARISONS],
                    help="run only these (repeatable); default: all but the *_live ones")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--duration", type=int, default=3, help="seconds per round")
    ap.add_argument("--no-pin", action="store_true", help="do not pin (one CPU machines)")
    ap.add_argument("--spare-core", action="store_true",
                    help="run the gateways' helper threads (log writer, access log) on the tool "
                         "CPU: a worker on a machine with a core to spare (supplementary)")
    ap.add_argument("--against", metavar="DIR",
                    help="compare code instead of features: each chosen comparison's variant "
                         "side runs from this checkout and from DIR (e.g. a `git worktree` of "
                         "an earlier commit) at once; 'kept' above 1 means this checkout is cheaper")
    ap.add_argument("--out", default=str(BENCH / "results" / "overhead.json"))
    args = ap.parse_args(argv)
    allowed = sorted(os.sched_getaffinity(0))
    cpus = tool_cpus = None
    if not args.no_pin and len(allowed) > 1:
        cpus, tool_cpus = {allowed[0]}, {allowed[1]}
    chosen = [c for c in COMPARISONS if c.name in args.comparison] if args.comparison else \
        [c for c in COMPARISONS if c.default]
    if args.against:
        if not (Path(args.against) / "aigw" / "__init__.py").is_file():
            ap.error(f"--against {args.against}: not an aigw checkout")
        chosen = [against(c, str(Path(args.against).resolve())) for c in chosen]
    results = []
    with tempfile.TemporaryDirectory(prefix="aigw-overhead-") as td:
        tmp = Path(td)
        mock_port = free_port()
        mock = subprocess.Popen([sys.executable, str(BENCH / "mock_upstream.py"), "--port", str(mock_port)],
                                stdout=subprocess.DEVNULL, preexec_fn=pinner(tool_cpus))
        try:
            if not wait_port(mock_port, mock, 10):
                print("mock upstream did not start", file=sys.stderr)
                return 1
            for c in chosen:
                t0 = time.monotonic()
                res = run_comparison(c, args.rounds, args.duration, mock_port, cpus, tool_cpus, tmp,
                                     args.spare_core)
                results.append(res)
                verdict = ("a code comparison: above 1, this checkout is cheaper" if args.against else
                           f"target >= {c.target}: {'met' if res['met'] else 'NOT met'}")
                # Requests answered compare throughput only where CPU 0 is shared fairly: by
                # the two event loops alone (--spare-core), or by two sides with the same
                # threads (--against). Otherwise the side with more threads gets more CPU.
                answered = (f"requests answered: kept {res['rps_kept']:.3f}; "
                            if args.spare_core or args.against else "")
                print(f"{c.name:14s} kept {res['throughput_kept']:.3f} of the baseline's throughput "
                      f"(rounds {res['range'][0]:.3f}-{res['range'][1]:.3f}; {verdict}); "
                      f"CPU/req {res['baseline']['cpu_us_per_req']:.0f}"
                      f" -> {res['variant']['cpu_us_per_req']:.0f} us; event-loop thread alone: kept "
                      f"{res['loop_throughput_kept']:.3f} ({res['baseline']['loop_us_per_req']:.0f} -> "
                      f"{res['variant']['loop_us_per_req']:.0f} us); {answered}errors {res['errors']}; "
                      f"{time.monotonic() - t0:.0f} s", flush=True)
        finally:
            stop(mock)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = report.machine(True, argparse.Namespace(
        repeats=args.rounds, duration=args.duration, pin=cpus is not None, ttfb_requests=None,
        paced_requests=None, gateway_cmd=DEFAULT_GATEWAY_CMD))
    meta["method"] = "side by side: both gateways on one CPU, loaded together (bench/overhead.py)"
    out.write_bytes(orjson.dumps({"meta": meta, "results": results}, option=orjson.OPT_INDENT_2))
    print(f"wrote {out}")
    return 0 if all(r["errors"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
