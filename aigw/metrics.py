"""A tiny Prometheus text-format registry: labelled counters and fixed-bucket histograms.

An increment is one dict lookup and an add (about 0.1-0.3 µs), so the hot path can count
every request; rendering happens only when /metrics is scraped.

Label values come partly from clients (a gateway id when no gateways are configured, a
model named in a request body), so each metric keeps at most `MAX_SERIES` label sets: an
increment for a new label set beyond that goes to the one series whose every label value
is `OTHER` ("_other"), and counts in `aigw_metric_series_overflow_total{metric=...}`. The
check costs nothing on a known label set (the lookup already made) and a len() on a new one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from bisect import bisect_left
from pathlib import Path
from typing import Any, Callable

from aigw import _json

__all__ = ["Counter", "CallbackCounter", "Histogram", "Registry", "GatewayMetrics", "CONTENT_TYPE",
           "MAX_SERIES", "OTHER", "MetricsShare", "retire_snapshot", "SNAPSHOT_INTERVAL"]

logger = logging.getLogger("aigw.metrics")

MAX_SERIES = 2000  # distinct label sets per metric (per process); the rest fold into OTHER
OTHER = "_other"  # every label value of the series over-cap increments fold into

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_INF = 'le="+Inf"'
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


# A metric as data: [kind ("counter" | "histogram"), help, label names, buckets (histograms;
# else None), {label values: value (counter) | [count per bucket..., +Inf count, sum]}].
State = list[Any]


def _render_counter(out: list[str], name: str, help: str, labelnames: tuple[str, ...],
                    values: dict[tuple[str, ...], float]) -> None:
    out.append(f"# HELP {name} {help}")
    out.append(f"# TYPE {name} counter")
    for labels, value in sorted(values.items()):
        out.append(f"{name}{_labels(labelnames, labels)} {_num(value)}")


def _render_histogram(out: list[str], name: str, help: str, names: tuple[str, ...],
                      buckets: tuple[float, ...],
                      series: dict[tuple[str, ...], list[float]]) -> None:
    out.append(f"# HELP {name} {help}")
    out.append(f"# TYPE {name} histogram")
    for labels, s in sorted(series.items()):
        acc = 0.0
        for bound, n in zip(buckets, s):
            acc += n
            le = f'le="{_num(bound)}"'
            out.append(f"{name}_bucket{_labels(names, labels, le)} {_num(acc)}")
        acc += s[len(buckets)]
        out.append(f"{name}_bucket{_labels(names, labels, _INF)} {_num(acc)}")
        out.append(f"{name}_sum{_labels(names, labels)} {_num(s[-1])}")
        out.append(f"{name}_count{_labels(names, labels)} {_num(acc)}")


def _fold(metric: Counter | Histogram) -> tuple[str, ...]:
    """A new label set past the cap: count the fold, warn once, return the OTHER labels."""
    if metric.overflow is not None:
        metric.overflow.inc((metric.name,))
    if not metric.folded:
        metric.folded = True
        logger.warning("metric %s has %d label sets; new ones are counted under %s",
                       metric.name, metric.cap, OTHER)
    return metric.other


class Counter:
    """A monotonically increasing value per label tuple (at most `cap` of them, then OTHER)."""

    __slots__ = ("name", "help", "labelnames", "values", "cap", "other", "overflow", "folded")

    def __init__(self, name: str, help: str, labelnames: tuple[str, ...] = (),
                 cap: int = MAX_SERIES) -> None:
        self.name = name
        self.help = help
        self.labelnames = labelnames
        self.values: dict[tuple[str, ...], float] = {}
        self.cap = cap
        self.other = (OTHER,) * len(labelnames)
        self.overflow: Counter | None = None  # counts folds by metric name
        self.folded = False

    def inc(self, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        """Add `amount` for `labels` (a tuple in `labelnames` order)."""
        v = self.values
        old = v.get(labels)
        if old is None:
            if len(v) >= self.cap:
                labels = _fold(self)
                old = v.get(labels, 0.0)
            else:
                old = 0.0
        v[labels] = old + amount

    def get(self, labels: tuple[str, ...] = ()) -> float:
        """The current value (tests)."""
        return self.values.get(labels, 0.0)

    def state(self) -> State:
        """Kind, help, label names, buckets and the live series (snapshots, merged renders)."""
        return ["counter", self.help, self.labelnames, None, self.values]

    def render(self, out: list[str]) -> None:
        """Append the exposition lines."""
        _render_counter(out, self.name, self.help, self.labelnames, self.values)


class CallbackCounter:
    """A counter whose values are read from elsewhere at scrape time (e.g. the log writer)."""

    __slots__ = ("name", "help", "labelnames", "fn")

    def __init__(self, name: str, help: str, labelnames: tuple[str, ...] = (),
                 fn: Callable[[], dict[tuple[str, ...], float]] | None = None) -> None:
        self.name = name
        self.help = help
        self.labelnames = labelnames
        self.fn = fn or dict

    def get(self, labels: tuple[str, ...] = ()) -> float:
        """The current value (tests)."""
        return self.fn().get(labels, 0.0)

    def state(self) -> State:
        """As Counter.state, the values read now."""
        return ["counter", self.help, self.labelnames, None, self.fn()]

    def render(self, out: list[str]) -> None:
        """Append the exposition lines."""
        _render_counter(out, self.name, self.help, self.labelnames, self.fn())


class Histogram:
    """Observations counted into fixed buckets, per label tuple."""

    __slots__ = ("name", "help", "labelnames", "buckets", "series", "cap", "other", "overflow",
                 "folded")

    def __init__(self, name: str, help: str, labelnames: tuple[str, ...] = (),
                 buckets: tuple[float, ...] = LATENCY_BUCKETS, cap: int = MAX_SERIES) -> None:
        self.name = name
        self.help = help
        self.labelnames = labelnames
        self.buckets = buckets
        # labels -> [count per bucket..., +Inf count, sum]
        self.series: dict[tuple[str, ...], list[float]] = {}
        self.cap = cap
        self.other = (OTHER,) * len(labelnames)
        self.overflow: Counter | None = None
        self.folded = False

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        """Count one observation (non-cumulative here; made cumulative on render)."""
        s = self.series.get(labels)
        if s is None:
            if len(self.series) >= self.cap:
                labels = _fold(self)
                s = self.series.get(labels)
            if s is None:
                s = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        s[bisect_left(self.buckets, value)] += 1
        s[-1] += value

    def state(self) -> State:
        """As Counter.state; a series is [count per bucket..., +Inf count, sum]."""
        return ["histogram", self.help, self.labelnames, self.buckets, self.series]

    def render(self, out: list[str]) -> None:
        """Append the exposition lines (cumulative buckets, _sum, _count)."""
        _render_histogram(out, self.name, self.help, self.labelnames, self.buckets, self.series)


class Registry:
    """An ordered set of metrics rendered together."""

    def __init__(self) -> None:
        self.metrics: list[Counter | CallbackCounter | Histogram] = []

    def add(self, metric: Counter | CallbackCounter | Histogram) -> None:
        """Register a metric for rendering."""
        self.metrics.append(metric)

    def state(self) -> dict[str, State]:
        """Every metric as data, by name (the live series: serialise before changing any)."""
        return {m.name: m.state() for m in self.metrics}

    def render(self, others: list[dict[str, State]] | None = None) -> bytes:
        """The Prometheus text exposition of every metric, plus `others` (other workers'
        snapshots, see MetricsShare) added in series by series."""
        out: list[str] = []
        if not others:
            for m in self.metrics:
                m.render(out)
        else:
            merged = {name: _copy(st) for name, st in self.state().items()}
            for snap in others:
                if not merge(merged, snap):
                    _merge_reader.warn("a metrics snapshot has metrics that do not match "
                                       "this worker's (another version?); they are left out")
            for name, (kind, help, names, buckets, series) in merged.items():
                if kind == "histogram":
                    _render_histogram(out, name, help, names, buckets, series)
                else:
                    _render_counter(out, name, help, names, series)
        return ("\n".join(out) + "\n").encode()


class GatewayMetrics(Registry):
    """The gateway's metrics; one instance per worker, held under an AppKey."""

    def __init__(self, max_series: int = MAX_SERIES) -> None:
        super().__init__()
        n = max_series
        self.requests = Counter("aigw_requests_total", "Upstream attempts (each fallback step "
                                "and retry) and cache hits, by gateway, provider and the status "
                                "they got (error: none)", ("gateway", "provider", "status"), n)
        self.upstream_latency = Histogram("aigw_upstream_duration_seconds", "Upstream attempt "
                                          "duration, until the last byte", ("provider",), cap=n)
        self.ttfb = Histogram("aigw_upstream_ttfb_seconds", "Upstream time to first byte",
                              ("provider",), cap=n)
        self.tokens = Counter("aigw_tokens_total", "Tokens by provider, model and direction "
                              "(in|out)", ("provider", "model", "direction"), n)
        self.cost = Counter("aigw_cost_usd_total", "Estimated or custom cost in USD",
                            ("provider", "model"), n)
        self.cache_hits = Counter("aigw_cache_hits_total", "Requests answered from the cache",
                                  ("gateway",), n)
        self.rate_limited = Counter("aigw_rate_limited_total", "Requests refused by the "
                                    "gateway rate limit", ("gateway",), n)
        self.fallbacks = Counter("aigw_fallbacks_total", "Fallback steps taken after a failed "
                                 "step", ("gateway",), n)
        self.log_dropped = CallbackCounter("aigw_log_rows_dropped_total", "Log rows not "
                                           "stored, by reason (queue_full, store_error, "
                                           "retention)", ("reason",))
        self.series_overflow = Counter("aigw_metric_series_overflow_total", "Increments "
                                       f"counted under the {OTHER} label set because their "
                                       "metric had reached its cap of label sets", ("metric",))
        capped = (self.requests, self.upstream_latency, self.ttfb, self.tokens, self.cost,
                  self.cache_hits, self.rate_limited, self.fallbacks)
        for m in capped:
            m.overflow = self.series_overflow
            self.add(m)
        self.add(self.log_dropped)
        self.add(self.series_overflow)

    def watch_writer(self, writer: Any, store: Any | None = None) -> None:
        """Export the writer's and store's drop counters, read at scrape time."""

        def drops() -> dict[tuple[str, ...], float]:
            out: dict[tuple[str, ...], float] = {("queue_full",): float(writer.dropped),
                                                 ("store_error",): float(writer.failed)}
            if store is not None:
                out[("retention",)] = float(store.rejected)
            return out

        self.log_dropped.fn = drops


# ---------------------------------------------------------------- workers: one shared view
#
# Under `serve --workers N` each worker counts in its own process. So that any worker's
# /metrics reports the totals of all of them, each worker writes a snapshot of its metrics
# to the supervisor's directory (`metrics-<worker>.json`: a temp file, then os.replace, so a
# reader sees a whole old or a whole new file) every SNAPSHOT_INTERVAL seconds, at
# shutdown, and just before it answers /metrics; it answers with its own live values plus
# every other worker's file. When a worker exits (asked, crashed or killed) the supervisor
# adds its last snapshot into `metrics-retired.json`, records its number there as folded,
# then deletes its file; readers read the workers' files first and the retired one last,
# and skip the files of workers it names, so a worker's counts are never missing or
# counted twice. Every file only grows, and a worker writes its own file before it shows
# its values, so totals never go down from one scrape to the next, whichever worker
# answers. A worker killed with SIGKILL loses what it counted since its last write.

SNAPSHOT_INTERVAL = 1.0  # seconds: how stale the other workers' values can be
RETIRED = "metrics-retired.json"
_PREFIX, _SUFFIX = "metrics-", ".json"


def _copy(st: State) -> State:
    kind, help, names, buckets, series = st
    if kind == "histogram":
        return [kind, help, names, buckets, {k: list(v) for k, v in series.items()}]
    return [kind, help, names, buckets, dict(series)]


def merge(into: dict[str, State], snap: dict[str, State], cap: int | None = None) -> bool:
    """Add `snap`'s series into `into` (owned copies); False when some metric of `snap` did
    not match (kind, label names or buckets differ, e.g. from another version) and was left
    out. With `cap`, label sets past it go to the OTHER series."""
    ok = True
    for name, st in snap.items():
        cur = into.get(name)
        if cur is None:
            cur = into[name] = [*st[:4], {}]
        elif cur[0] != st[0] or cur[2] != st[2] or cur[3] != st[3]:
            ok = False
            continue
        series, other = cur[4], (OTHER,) * len(cur[2])
        hist = cur[0] == "histogram"
        for labels, value in st[4].items():
            if labels not in series and cap is not None and len(series) >= cap:
                labels = other
            old = series.get(labels)
            if not hist:
                series[labels] = (old or 0.0) + value
            elif old is None:
                series[labels] = list(value)
            else:
                for i, x in enumerate(value):
                    old[i] += x
    return ok


def encode(state: dict[str, State], worker: int | None, folded: list[int] | None = None) -> bytes:
    """A snapshot file's bytes."""
    return _json.dumps({
        "worker": worker, "folded": folded,
        "metrics": {name: {"kind": k, "help": h, "labels": n, "buckets": b,
                           "series": list(s.items())}
                    for name, (k, h, n, b, s) in state.items()},
    })


def _number(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError("not a number")
    return float(x)


def decode(data: bytes) -> tuple[dict[str, State], list[int]]:
    """A snapshot file's metrics and folded worker numbers; ValueError if it is not one."""
    try:
        obj = _json.loads(data)
        folded = [int(i) for i in obj.get("folded") or ()]
        out: dict[str, State] = {}
        for name, m in obj["metrics"].items():
            kind, names = m["kind"], tuple(m["labels"])
            if not all(isinstance(x, str) for x in names):
                raise ValueError("label names")
            if kind == "histogram":
                buckets: tuple[float, ...] | None = tuple(_number(b) for b in m["buckets"])
                width = len(buckets) + 2  # type: ignore[arg-type]
            elif kind == "counter":
                buckets = None
            else:
                raise ValueError(f"kind {kind!r}")
            series: dict[tuple[str, ...], Any] = {}
            for labels, value in m["series"]:
                labels = tuple(labels)
                if len(labels) != len(names) or not all(isinstance(x, str) for x in labels):
                    raise ValueError("label values")
                if buckets is None:
                    series[labels] = _number(value)
                elif len(value) != width:
                    raise ValueError("bucket count")
                else:
                    series[labels] = [_number(x) for x in value]
            out[str(name)] = [kind, str(m["help"]), names, buckets, series]
        return out, folded
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a metrics snapshot ({type(exc).__name__}: {exc})") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: readers see the old or the new file, never part of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class _Reader:
    """Reads snapshot files; a bad one is skipped and logged once per process."""

    def __init__(self) -> None:
        self.warned = False

    def read(self, path: Path) -> tuple[dict[str, State], list[int]] | None:
        try:
            return decode(path.read_bytes())
        except FileNotFoundError:  # its worker was just folded into the retired file
            return None
        except (OSError, ValueError) as exc:
            self.warn("skipping metrics snapshot %s: %s", path, exc)
            return None

    def warn(self, msg: str, *args: Any) -> None:
        if not self.warned:
            self.warned = True
            logger.warning(msg + " (further such problems are not logged)", *args)


class MetricsShare:
    """One worker's part in the shared view: writes its snapshot, reads the others'."""

    def __init__(self, directory: str | Path, worker: int, registry: Registry) -> None:
        self.dir = Path(directory)
        self.worker = worker
        self.registry = registry
        self.path = self.dir / f"{_PREFIX}{worker}{_SUFFIX}"
        self.reader = _Reader()

    def __repr__(self) -> str:
        return f"<MetricsShare {self.path}>"

    def write(self) -> None:
        """Write this worker's snapshot now (a failure is logged once, never raised)."""
        try:
            write_atomic(self.path, encode(self.registry.state(), self.worker))
        except OSError as exc:
            self.reader.warn("cannot write metrics snapshot %s: %s", self.path, exc)

    def others(self) -> list[dict[str, State]]:
        """The other workers' snapshots and the retired one (read last, see above)."""
        try:
            names = os.listdir(self.dir)
        except OSError as exc:
            self.reader.warn("cannot list metrics snapshots in %s: %s", self.dir, exc)
            return []
        found: list[tuple[int, dict[str, State]]] = []
        for name in names:
            n = _worker_of(name)
            if n is None or n == self.worker:
                continue
            got = self.reader.read(self.dir / name)
            if got is not None:
                found.append((n, got[0]))
        retired = self.reader.read(self.dir / RETIRED)
        if retired is None:
            return [snap for _, snap in found]
        folded = set(retired[1])
        return [snap for n, snap in found if n not in folded] + [retired[0]]

    def render(self) -> bytes:
        """/metrics: write this worker's values first (so no later scrape, through any
        worker, shows less), then render them plus every other snapshot."""
        self.write()
        return self.registry.render(self.others())

    async def run(self, interval: float = SNAPSHOT_INTERVAL) -> None:
        """The background task: a snapshot every `interval` seconds."""
        while True:
            await asyncio.sleep(interval)
            self.write()


def _worker_of(name: str) -> int | None:
    if name.startswith(_PREFIX) and name.endswith(_SUFFIX):
        digits = name[len(_PREFIX):-len(_SUFFIX)]
        if digits.isdigit():
            return int(digits)
    return None


_retire_reader = _Reader()
_merge_reader = _Reader()


def retire_snapshot(directory: str | Path, worker: int, cap: int = MAX_SERIES) -> None:
    """Supervisor, after a worker exited: add its last snapshot to the retired file (at most
    `cap` label sets a metric there too), name it as folded, then delete its file."""
    d = Path(directory)
    path = d / f"{_PREFIX}{worker}{_SUFFIX}"
    retired = _retire_reader.read(d / RETIRED) or ({}, [])
    dead = _retire_reader.read(path)
    state, folded = retired
    if dead is not None and not merge(state, dead[0], cap):
        _retire_reader.warn("metrics of worker #%d that do not match the others' were "
                            "dropped", worker)
    folded.append(worker)
    try:
        write_atomic(d / RETIRED, encode(state, None, folded))
    except OSError as exc:
        _retire_reader.warn("cannot write %s: %s", d / RETIRED, exc)
        return  # keep the worker's file: its counts stay in the totals
    path.unlink(missing_ok=True)
