from __future__ import annotations

import time

from aigw.metrics import Counter, GatewayMetrics, Histogram, MetricsShare, retire_snapshot


def _lines(m) -> list[str]:
    return m.render().decode().splitlines()


def test_known_traffic_renders_expected_values():
    m = GatewayMetrics()
    m.requests.inc(("gw1", "openai", "200"))
    m.requests.inc(("gw1", "openai", "200"))
    m.requests.inc(("gw1", "anthropic", "503"))
    m.upstream_latency.observe(("openai",), 0.02)
    m.upstream_latency.observe(("openai",), 0.3)
    m.ttfb.observe(("openai",), 0.004)
    m.tokens.inc(("openai", "gpt-4o", "in"), 120)
    m.tokens.inc(("openai", "gpt-4o", "out"), 30)
    m.cost.inc(("openai", "gpt-4o"), 0.0006)
    m.cache_hits.inc(("gw1",))
    m.rate_limited.inc(("gw1",))
    m.fallbacks.inc(("gw1",))
    lines = _lines(m)
    assert 'aigw_requests_total{gateway="gw1",provider="openai",status="200"} 2' in lines
    assert 'aigw_requests_total{gateway="gw1",provider="anthropic",status="503"} 1' in lines
    assert 'aigw_upstream_duration_seconds_bucket{provider="openai",le="0.01"} 0' in lines
    assert 'aigw_upstream_duration_seconds_bucket{provider="openai",le="0.025"} 1' in lines
    assert 'aigw_upstream_duration_seconds_bucket{provider="openai",le="0.5"} 2' in lines
    assert 'aigw_upstream_duration_seconds_bucket{provider="openai",le="+Inf"} 2' in lines
    assert 'aigw_upstream_duration_seconds_count{provider="openai"} 2' in lines
    assert 'aigw_upstream_duration_seconds_sum{provider="openai"} 0.32' in lines
    assert 'aigw_upstream_ttfb_seconds_bucket{provider="openai",le="0.005"} 1' in lines
    assert 'aigw_tokens_total{provider="openai",model="gpt-4o",direction="in"} 120' in lines
    assert 'aigw_cost_usd_total{provider="openai",model="gpt-4o"} 0.0006' in lines
    assert 'aigw_cache_hits_total{gateway="gw1"} 1' in lines
    assert 'aigw_rate_limited_total{gateway="gw1"} 1' in lines
    assert 'aigw_fallbacks_total{gateway="gw1"} 1' in lines
    assert "# TYPE aigw_upstream_ttfb_seconds histogram" in lines


def test_log_drops_are_read_from_the_writer():
    class W:
        dropped, failed = 7, 1

    class S:
        rejected = 2

    m = GatewayMetrics()
    m.watch_writer(W(), S())
    lines = _lines(m)
    assert 'aigw_log_rows_dropped_total{reason="queue_full"} 7' in lines
    assert 'aigw_log_rows_dropped_total{reason="store_error"} 1' in lines
    assert 'aigw_log_rows_dropped_total{reason="retention"} 2' in lines


def test_label_values_are_escaped():
    c = Counter("x_total", "h", ("model",))
    c.inc(('we"ird\\mo\ndel',))
    out = []
    c.render(out)
    assert out[-1] == 'x_total{model="we\\"ird\\\\mo\\ndel"} 1'


def test_histogram_boundaries_are_inclusive():
    h = Histogram("h", "h", (), buckets=(1.0, 2.0))
    h.observe((), 1.0)
    h.observe((), 5.0)
    out = []
    h.render(out)
    assert 'h_bucket{le="1"} 1' in out and 'h_bucket{le="2"} 1' in out
    assert 'h_bucket{le="+Inf"} 2' in out


def test_increment_is_cheap():
    m = GatewayMetrics()
    labels = ("gw1", "openai", "200")
    t0 = time.perf_counter()
    for _ in range(100_000):
        m.requests.inc(labels)
    assert (time.perf_counter() - t0) / 100_000 < 2e-6  # measured ~0.15 µs


# ------------------------------------------------------------------ series cap


def _series(lines: list[str], name: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines
            if line.startswith(name + "{")}


def test_label_sets_past_the_cap_fold_into_other():
    m = GatewayMetrics(max_series=5)
    for i in range(12):
        m.requests.inc((f"gw-{i}", "openai", "200"))
        m.upstream_latency.observe((f"p{i}",), 0.01)
    m.requests.inc(("gw-0", "openai", "200"))  # a known label set still counts on its own
    lines = _lines(m)
    reqs = _series(lines, "aigw_requests_total")
    assert len(reqs) == 6  # the cap, plus the one _other series
    assert reqs['aigw_requests_total{gateway="_other",provider="_other",status="_other"}'] == 7
    assert reqs['aigw_requests_total{gateway="gw-0",provider="openai",status="200"}'] == 2
    assert sum(reqs.values()) == 13  # nothing lost
    counts = _series(lines, "aigw_upstream_duration_seconds_count")
    assert len(counts) == 6 and sum(counts.values()) == 12
    assert counts['aigw_upstream_duration_seconds_count{provider="_other"}'] == 7
    assert 'aigw_metric_series_overflow_total{metric="aigw_requests_total"} 7' in lines
    assert 'aigw_metric_series_overflow_total{metric="aigw_upstream_duration_seconds"} 7' in lines


def test_the_first_fold_is_logged_once(caplog):
    c = Counter("x_total", "h", ("model",), cap=1)
    with caplog.at_level("WARNING", logger="aigw.metrics"):
        for i in range(5):
            c.inc((f"m{i}",))
    assert sum("x_total" in r.getMessage() for r in caplog.records) == 1
    assert c.get(("_other",)) == 4 and c.get(("m0",)) == 1


def test_increment_past_the_cap_is_cheap():
    c = Counter("x_total", "h", ("model",), cap=10)
    for i in range(10):
        c.inc((f"m{i}",))
    t0 = time.perf_counter()
    for i in range(100_000):
        c.inc(("m3",))
    assert (time.perf_counter() - t0) / 100_000 < 2e-6


async def test_made_up_gateway_ids_fold_into_other(make_gateway, upstream):
    gw = await make_gateway()  # no [gateways]: every gateway id is accepted
    for m in gw.server.gateway.metrics.metrics:
        if hasattr(m, "cap"):
            m.cap = 10
    for i in range(30):
        async with gw.post(f"/v1/acct/gw-{i}/openai/chat/completions",
                           data=b'{"model":"m-%d"}' % i) as r:
            assert r.status == 200
    async with gw.request("GET", "/metrics") as r:
        lines = (await r.text()).splitlines()
    reqs = _series(lines, "aigw_requests_total")
    assert len(reqs) == 11 and sum(reqs.values()) == 30
    assert reqs['aigw_requests_total{gateway="_other",provider="_other",status="_other"}'] == 20
    assert 'aigw_metric_series_overflow_total{metric="aigw_requests_total"} 20' in lines


# ------------------------------------------------------------------ workers: one shared view

REQ = ("gw", "openai", "200")
REQ_LINE = 'aigw_requests_total{gateway="gw",provider="openai",status="200"}'


def _value(body: bytes, series: str) -> float:
    for line in body.decode().splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _worker(tmp_path, n: int, requests: int = 0, log_drops: int = 0):
    m = GatewayMetrics()
    for _ in range(requests):
        m.requests.inc(REQ)
        m.upstream_latency.observe(("openai",), 0.02)

    class W:
        dropped, failed = log_drops, 0

    m.watch_writer(W())
    return MetricsShare(tmp_path, n, m)


def test_a_worker_renders_every_workers_totals(tmp_path):
    a, b = _worker(tmp_path, 1, 3, log_drops=2), _worker(tmp_path, 2, 5, log_drops=1)
    b.write()
    body = a.render()
    assert _value(body, REQ_LINE) == 8
    assert _value(body, 'aigw_upstream_duration_seconds_count{provider="openai"}') == 8
    assert _value(body, 'aigw_upstream_duration_seconds_bucket{provider="openai",le="0.025"}') == 8
    assert _value(body, 'aigw_log_rows_dropped_total{reason="queue_full"}') == 3
    a.registry.requests.inc(REQ)  # a's own values are live; b sees them once a writes
    assert _value(a.render(), REQ_LINE) == 9
    assert _value(b.render(), REQ_LINE) == 9
    # a single process (no share) renders its own values only
    assert _value(a.registry.render(), REQ_LINE) == 4


def test_a_retired_workers_counts_stay(tmp_path):
    a, b = _worker(tmp_path, 1, 3), _worker(tmp_path, 2, 5)
    b.write()
    retire_snapshot(tmp_path, 2)  # b exited: the supervisor keeps its last counts
    assert not (tmp_path / "metrics-2.json").exists()
    assert _value(a.render(), REQ_LINE) == 8
    c = _worker(tmp_path, 3, 1)  # its replacement starts from zero
    assert _value(c.render(), REQ_LINE) == 9
    a.write()
    retire_snapshot(tmp_path, 1)
    assert _value(c.render(), REQ_LINE) == 9
    retire_snapshot(tmp_path, 7)  # a worker that died before writing anything
    assert _value(c.render(), REQ_LINE) == 9


def test_a_file_both_listed_and_folded_is_counted_once(tmp_path):
    a, b = _worker(tmp_path, 1, 3), _worker(tmp_path, 2, 5)
    b.write()
    saved = (tmp_path / "metrics-2.json").read_bytes()
    retire_snapshot(tmp_path, 2)
    (tmp_path / "metrics-2.json").write_bytes(saved)  # as a reader that listed it before
    assert _value(a.render(), REQ_LINE) == 8


def test_a_corrupt_snapshot_is_skipped_and_logged_once(tmp_path, caplog):
    a, b = _worker(tmp_path, 1, 3), _worker(tmp_path, 2, 5)
    b.write()
    (tmp_path / "metrics-3.json").write_bytes(b'{"worker": 3, "metrics": {"x": ')
    (tmp_path / "metrics-4.json").write_bytes(b'{"metrics": {"x": {"kind": "counter", "help": '
                                              b'"h", "labels": ["a"], "buckets": null, '
                                              b'"series": [[["v", "w"], 1]]}}}')
    (tmp_path / "metrics-5.json").write_bytes(b"\xff\x00")
    (tmp_path / "metrics-x.json").write_bytes(b"ignored: not a worker's name")
    with caplog.at_level("WARNING", logger="aigw.metrics"):
        for _ in range(3):
            assert _value(a.render(), REQ_LINE) == 8
    assert sum("skipping metrics snapshot" in r.getMessage() for r in caplog.records) == 1


def test_mismatched_buckets_are_left_out(tmp_path):
    a, b = _worker(tmp_path, 1, 3), _worker(tmp_path, 2, 5)
    b.registry.upstream_latency.buckets = (0.1, 1.0)  # another version's buckets
    b.registry.upstream_latency.series = {("openai",): [5.0, 0.0, 0.0, 0.1]}
    b.write()
    body = a.render()
    assert _value(body, REQ_LINE) == 8
    assert _value(body, 'aigw_upstream_duration_seconds_count{provider="openai"}') == 3


def test_the_retired_file_keeps_the_series_cap(tmp_path):
    for n in range(1, 4):
        s = _worker(tmp_path, n)
        for i in range(4):
            s.registry.requests.inc((f"gw-{n}-{i}", "openai", "200"))
        s.write()
        retire_snapshot(tmp_path, n, cap=5)
    body = _worker(tmp_path, 9).render()
    series = _series(body.decode().splitlines(), "aigw_requests_total")
    assert len(series) == 6 and sum(series.values()) == 12
