"""Run every scenario against the mock directly, aigw and any other gateway; report medians.

    python bench/run.py --quick                      # smoke: 1 s per measurement, 1 repeat
    python bench/run.py --repeats 3 --pin            # the real run (2+ cores)
    python bench/run.py --other cf=http://127.0.0.1:8080/v1/acct/gw --mock-port 9999
    python bench/run.py --workers 2 --scenario NAME  # aigw with 2 worker processes (no --pin)

Repeats are interleaved (repeat -> scenario -> target) so drift on a shared machine hits
all targets alike. Results go to bench/results/latest.json; see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import orjson

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import procstat, report  # noqa: E402
from bench.scenarios import AUTHORIZATION, SCENARIOS, Scenario, Target, parse_other  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DEFAULT_GATEWAY_CMD = ("{python} -m aigw serve --config {config} --host 127.0.0.1 --port {port} "
                       "--workers {workers}")
CONFIG_TEMPLATE = """[server]
host = "127.0.0.1"
port = {port}

[providers.openai]
base_url = "http://127.0.0.1:{mock}/v1"

[providers.anthropic]
base_url = "http://127.0.0.1:{mock}"

[providers.workers-ai]
base_url = "http://127.0.0.1:{mock}/client/v4/accounts/{{account}}/ai/run"
"""


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll until something accepts on port; False if proc died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def pinner(cpus: set[int] | None) -> Callable[[], None] | None:
    """A preexec_fn setting CPU affinity before exec, so every thread and child inherits it."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def mock_stats(port: int) -> dict[str, Any]:
    """The mock's /__stats counters."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__stats", timeout=5) as r:
        data: dict[str, Any] = orjson.loads(r.read())
        return data


class Runner:
    """Holds the run's settings and launches one measurement at a time."""

    def __init__(self, args: argparse.Namespace, tmp: Path, tool_cpus: set[int] | None) -> None:
        self.args = args
        self.tmp = tmp
        self.tool_cpus = tool_cpus
        self.use_wrk = args.tool == "wrk" or (args.tool == "auto" and shutil.which("wrk") is not None)

    def _tool(self, cmd: list[str], env: dict[str, str] | None, budget: float) -> dict[str, Any]:
        try:
            cp = subprocess.run(cmd, capture_output=True, env=env, timeout=budget + 30,
                                preexec_fn=pinner(self.tool_cpus))
        except subprocess.TimeoutExpired:
            return {"failed": "timeout"}
        for line in cp.stdout.decode(errors="replace").splitlines():
            line = line.removeprefix("WRK_JSON ")
            if line.startswith("{"):
                out: dict[str, Any] = orjson.loads(line)
                return out
        return {"failed": cp.stderr.decode(errors="replace")[-500:] or f"exit {cp.returncode}"}

    def _files(self, sc: Scenario, body: bytes) -> tuple[Path, list[str]]:
        path = self.tmp / f"{sc.name}-{abs(hash(body))}.json"
        if not path.exists():
            path.write_bytes(body)
        headers = [f"{k}: {v}" for k, v in (("authorization", AUTHORIZATION), *sc.headers)]
        return path, headers + list(self.args.header)

    def load(self, url: str, sc: Scenario, body: bytes, connections: int, duration: int) -> dict[str, Any]:
        """Throughput at a fixed number of connections, with wrk or the Python fallback."""
        path, headers = self._files(sc, body)
        if self.use_wrk:
            env = {**os.environ, "WRK_BODY_FILE": str(path), "WRK_HEADERS": "\n".join(headers)}
            cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s",
                   "-s", str(BENCH / "wrk" / "post.lua"), url]
            return self._tool(cmd, env, duration)
        cmd = [sys.executable, str(BENCH / "loadgen.py"), "--url", url, "-c", str(connections),
               "-d", str(duration), "--body", str(path)]
        for h in headers:
            cmd += ["--header", h]
        return self._tool(cmd, None, duration)

    def sequential(self, url: str, sc: Scenario, body: bytes, requests: int, bound: float) -> dict[str, Any]:
        """TTFB and total time of sequential requests on one connection."""
        path, headers = self._files(sc, body)
        cmd = [sys.executable, str(BENCH / "ttfb.py"), "--url", url, "-n", str(requests), "-d", str(bound),
               "--body", str(path)]
        for h in headers:
            cmd += ["--header", h]
        return self._tool(cmd, None, bound)

    def measure(self, target: Target, sc: Scenario, mock: tuple[int, int]) -> dict[str, Any] | None:
        """One scenario against one target: metrics plus gateway CPU per request."""
        url = target.url_for(sc)
        if url is None:
            return None
        a = self.args
        body = target.body_for(sc)
        mock_pid, mock_port = mock
        cpu0 = procstat.cpu_seconds(target.pid) if target.pid else 0.0
        mcpu0, up0, t0 = procstat.cpu_seconds(mock_pid), mock_stats(mock_port)["requests"], time.monotonic()
        m: dict[str, Any] = {}
        client_reqs = 0
        if sc.mode == "load":
            r = self.load(url, sc, body, sc.connections, a.duration)
            m["raw_load"] = r
            client_reqs += r.get("requests", 0)
            m.update(rps=r.get("rps"), p50_ms=r.get("latency_ms", {}).get("p50"),
                     p99_ms=r.get("latency_ms", {}).get("p99"), errors=r.get("errors"), non2xx=r.get("non2xx"))
        if sc.stream:
            n, bound = (a.paced_requests, 30.0) if sc.mode == "paced" else (a.ttfb_requests, float(a.duration) + 2)
            t = self.sequential(url, sc, body, n, bound)
            m["raw_ttfb"] = t
            client_reqs += t.get("requests", 0)
            m["ttfb_p50_ms"] = t.get("ttfb_ms", {}).get("p50")
            if sc.mode == "paced":
                m.update(total_p50_ms=t.get("total_ms", {}).get("p50"), errors=t.get("errors"),
                         non2xx=t.get("non2xx"))
        wall = time.monotonic() - t0
        m["mock_cpu_util"] = round((procstat.cpu_seconds(mock_pid) - mcpu0) / wall, 3)
        if client_reqs:
            m["upstream_per_req"] = round((mock_stats(mock_port)["requests"] - up0) / client_reqs, 3)
            if target.pid:
                m["cpu_us_per_req"] = round((procstat.cpu_seconds(target.pid) - cpu0) / client_reqs * 1e6, 1)
        return m


def start_gateway(args: argparse.Namespace, tmp: Path, mock_port: int, cpus: set[int] | None,
                  name: str = "aigw", extra: str = "",
                  ) -> tuple[subprocess.Popen[bytes] | None, Target | None]:
    """Launch aigw with a generated config; (None, None) with a message if it cannot start.

    The default configuration is measured (request logging on, to SQLite in the run's
    temporary folder); `extra` is TOML appended for a variant such as logging off.
    """
    port = free_port()
    config = tmp / f"{name}.toml"
    logs = extra or f'[logs]\npath = "{tmp / (name + "-logs.sqlite")}"\n'
    config.write_text(CONFIG_TEMPLATE.format(port=port, mock=mock_port) + "\n" + logs)
    cmd = shlex.split(args.gateway_cmd.format(python=shlex.quote(sys.executable), config=config, port=port,
                                              host="127.0.0.1", mock_port=mock_port,
                                              workers=args.workers))
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=pinner(cpus))
    if not wait_port(port, proc, args.start_timeout):
        stop(proc)
        tail = (tmp / f"{name}.log").read_bytes()[-1500:].decode(errors="replace")
        print(f"aigw did not start ({' '.join(cmd)}); skipping it. Log tail:\n{tail}", file=sys.stderr)
        return None, None
    base = f"http://127.0.0.1:{port}/v1/bench/bench"
    return proc, Target(name, f"{base}/openai/chat/completions", base, proc.pid)


def cpu_plan(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(gateway CPUs, mock + load generator CPUs): CPU 0 and CPU 1 of those allowed."""
    if not pin:
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    return {allowed[0]}, {allowed[1] if len(allowed) > 1 else allowed[0]}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description="aigw benchmark runner")
    ap.add_argument("--repeats", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--duration", type=int, default=None, help="seconds per load measurement (default 5)")
    ap.add_argument("--quick", action="store_true", help="1 s measurements, few requests: a smoke run")
    ap.add_argument("--pin", action="store_true", help="gateway on CPU 0, mock and load generator on CPU 1")
    ap.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--other", action="append", default=[], help="NAME=URL (see README), repeatable")
    ap.add_argument("--other-pid", action="append", default=[], help="NAME=PID to measure its CPU and RSS")
    ap.add_argument("--gateway-cmd", default=DEFAULT_GATEWAY_CMD,
                    help="how to launch aigw; {python} {config} {host} {port} {mock_port} {workers} "
                    "are filled in")
    ap.add_argument("--workers", default="1", help="aigw worker processes (a number or 'auto'); "
                    "compare 1 and 2 without --pin, which gives the gateway one CPU")
    ap.add_argument("--no-gateway", action="store_true", help="do not launch aigw")
    ap.add_argument("--nolog", action="store_true",
                    help="also run aigw with request logging off (target aigw-nolog), to show "
                         "what logging costs")
    ap.add_argument("--mock-port", type=int, default=0, help="fixed mock port, for --other gateways")
    ap.add_argument("--header", action="append", default=[], help="extra 'K: V' sent to every target")
    ap.add_argument("--scenario", action="append", default=[], help="run only these (repeatable)")
    ap.add_argument("--start-timeout", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "latest.json")
    args = ap.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.duration = args.duration or (1 if args.quick else 5)
    args.ttfb_requests = 30 if args.quick else 200
    args.paced_requests = 5 if args.quick else 20
    scenarios = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    pids = dict(p.split("=", 1) for p in args.other_pid)
    gw_cpus, tool_cpus = cpu_plan(args.pin)
    if tool_cpus:
        os.sched_setaffinity(0, tool_cpus)

    with tempfile.TemporaryDirectory(prefix="aigw-bench-") as td:
        tmp = Path(td)
        mock_port = args.mock_port or free_port()
        mock = subprocess.Popen([sys.executable, str(BENCH / "mock_upstream.py"), "--port", str(mock_port)],
                                stdout=subprocess.DEVNULL, preexec_fn=pinner(tool_cpus))
        gws: list[subprocess.Popen[bytes]] = []
        try:
            if not wait_port(mock_port, mock, 10):
                print("mock upstream did not start", file=sys.stderr)
                return 1
            targets = [Target("direct", f"http://127.0.0.1:{mock_port}/v1/chat/completions", None)]
            variants = [("aigw", "")]
            if args.nolog:
                variants.append(("aigw-nolog", '[logs]\nbackend = "off"\n'))
            for name, extra in ([] if args.no_gateway else variants):
                gw, t = start_gateway(args, tmp, mock_port, gw_cpus, name, extra)
                if gw is not None and t is not None:
                    gws.append(gw)
                    targets.append(t)
            for spec in args.other:
                name = spec.split("=", 1)[0]
                targets.append(parse_other(spec, int(pids[name]) if name in pids else None))
            runner = Runner(args, tmp, tool_cpus)
            rss0 = {t.name: procstat.rss_kb(t.pid) for t in targets if t.pid}
            for t in targets:  # warm-up: connection pools, caches; not recorded
                runner.load(t.chat_url, SCENARIOS[0], SCENARIOS[0].direct_body, 8, 1)
            runs: list[dict[str, Any]] = []
            for rep in range(args.repeats):
                for sc in scenarios:
                    for t in targets:
                        m = runner.measure(t, sc, (mock.pid, mock_port))
                        if m is not None:
                            runs.append({"repeat": rep, "scenario": sc.name, "target": t.name, **m})
                            print(report.progress_line(runs[-1]), file=sys.stderr, flush=True)
            gateways = {t.name: {"pid": t.pid, "rss_start_kb": rss0.get(t.name), "peak_rss_kb": procstat.peak_rss_kb(t.pid)}
                        for t in targets if t.pid}
        finally:
            for gw in gws:
                stop(gw)
            stop(mock)

    medians = report.medians(runs)
    result = {"meta": report.machine(runner.use_wrk, args), "targets": [t.name for t in targets],
              "gateways": gateways, "medians": medians, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(report.table(medians, [t.name for t in targets], [s.name for s in scenarios], gateways))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
