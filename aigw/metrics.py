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

import logging
from bisect import bisect_left
from typing import Any, Callable

__all__ = ["Counter", "CallbackCounter", "Histogram", "Registry", "GatewayMetrics", "CONTENT_TYPE",
           "MAX_SERIES", "OTHER"]

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

    def render(self, out: list[str]) -> None:
        """Append the exposition lines."""
        out.append(f"# HELP {self.name} {self.help}")
        out.append(f"# TYPE {self.name} counter")
        for labels, value in sorted(self.values.items()):
            out.append(f"{self.name}{_labels(self.labelnames, labels)} {_num(value)}")


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

    def render(self, out: list[str]) -> None:
        """Append the exposition lines."""
        out.append(f"# HELP {self.name} {self.help}")
        out.append(f"# TYPE {self.name} counter")
        for labels, value in sorted(self.fn().items()):
            out.append(f"{self.name}{_labels(self.labelnames, labels)} {_num(value)}")


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

    def render(self, out: list[str]) -> None:
        """Append the exposition lines (cumulative buckets, _sum, _count)."""
        out.append(f"# HELP {self.name} {self.help}")
        out.append(f"# TYPE {self.name} histogram")
        names = self.labelnames
        for labels, s in sorted(self.series.items()):
            acc = 0.0
            for bound, n in zip(self.buckets, s):
                acc += n
                le = f'le="{_num(bound)}"'
                out.append(f"{self.name}_bucket{_labels(names, labels, le)} {_num(acc)}")
            acc += s[len(self.buckets)]
            out.append(f"{self.name}_bucket{_labels(names, labels, _INF)} {_num(acc)}")
            out.append(f"{self.name}_sum{_labels(names, labels)} {_num(s[-1])}")
            out.append(f"{self.name}_count{_labels(names, labels)} {_num(acc)}")


class Registry:
    """An ordered set of metrics rendered together."""

    def __init__(self) -> None:
        self.metrics: list[Counter | CallbackCounter | Histogram] = []

    def add(self, metric: Counter | CallbackCounter | Histogram) -> None:
        """Register a metric for rendering."""
        self.metrics.append(metric)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        out: list[str] = []
        for m in self.metrics:
            m.render(out)
        return ("\n".join(out) + "\n").encode()


class GatewayMetrics(Registry):
    """The gateway's metrics; one instance per worker, held under an AppKey."""

    def __init__(self, max_series: int = MAX_SERIES) -> None:
        super().__init__()
        n = max_series
        self.requests = Counter("aigw_requests_total", "Requests answered, by gateway, "
                                "provider and status code", ("gateway", "provider", "status"), n)
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
