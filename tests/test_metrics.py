from __future__ import annotations

import time

from aigw.metrics import Counter, GatewayMetrics, Histogram


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
