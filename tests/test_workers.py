"""`aigw serve --workers N`: workers share one socket, and dead or hung ones are replaced."""

from __future__ import annotations

import asyncio
import os
import signal


from tests.conftest import Reply
from tests.procs import Aigw, config_text, free_port, session

CHAT = "/v1/acct/gw/openai/chat/completions"


async def _burst(base: str, n: int) -> list[int]:
    async with session() as s:
        async def one() -> int:
            async with s.post(base + CHAT, data=b'{"model":"m"}') as r:
                await r.read()
                return r.status
        return await asyncio.gather(*(one() for _ in range(n)))


async def test_workers_serve_and_share_load(upstream, tmp_path, procs):
    upstream.script("/v1/chat", Reply(delay=0.05))
    gw = Aigw(tmp_path, config_text(upstream, free_port()), workers=2)
    procs.append(gw)
    await gw.ready()
    assert len(gw.worker_pids()) == 2
    assert all(s == 200 for s in await _burst(gw.base, 40))
    await asyncio.sleep(0.3)  # the access log is flushed every 50 ms
    pids = {line["pid"] for line in gw.access() if line["route"] == "provider"}
    assert pids == set(gw.worker_pids()), "both workers should have served requests"
    gw.signal(signal.SIGTERM)
    assert await gw.wait_exit() == 0


async def test_a_killed_worker_is_replaced(upstream, tmp_path, procs):
    gw = Aigw(tmp_path, config_text(upstream, free_port()), workers=2)
    procs.append(gw)
    await gw.ready()
    victim, survivor = gw.worker_pids()
    os.kill(victim, signal.SIGKILL)
    await gw.wait_for("worker #3 started")
    await gw.wait_for("died with -9")
    for _ in range(100):  # bounded: up to 10 s for the replacement to come up
        pids = gw.worker_pids()
        if len(pids) == 2 and victim not in pids and sum(
                "worker serving" in m["msg"] for m in gw.messages()) >= 3:
            break
        await asyncio.sleep(0.1)
    assert survivor in pids and victim not in pids and len(pids) == 2
    assert all(s == 200 for s in await _burst(gw.base, 20))


async def test_a_hung_worker_is_killed_and_replaced(upstream, tmp_path, procs):
    gw = Aigw(tmp_path, config_text(upstream, free_port()), workers=2,
              args=("--liveness-timeout", "1.5"))
    procs.append(gw)
    await gw.ready()
    victim = gw.worker_pids()[0]
    os.kill(victim, signal.SIGSTOP)  # alive, but its loop answers no ping
    await gw.wait_for("stopped answering", timeout=10)
    await gw.wait_for("worker #3 started", timeout=10)
    assert victim not in gw.worker_pids()
    gw.signal(signal.SIGTERM)
    assert await gw.wait_exit() == 0


REQ_SERIES = 'aigw_requests_total{gateway="gw",provider="openai",status="200"}'


async def _scrape(base: str) -> float:
    async with session() as s:
        async with s.get(base + "/metrics") as r:
            assert r.status == 200
            for line in (await r.text()).splitlines():
                if line.startswith(REQ_SERIES + " "):
                    return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _scrapes(base: str, n: int, floor: float) -> list[float]:
    """`n` scrapes, each on a new connection (so both workers answer), never going down."""
    seen = []
    for _ in range(n):
        v = await _scrape(base)
        assert v >= floor, (seen, v)
        floor = v
        seen.append(v)
    return seen


async def test_metrics_are_totals_over_all_workers(upstream, tmp_path, procs):
    upstream.script("/v1/chat", Reply(delay=0.01))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    gw = Aigw(tmp_path, config_text(upstream, free_port()), workers=2,
              env={"TMPDIR": str(tmpdir)})
    procs.append(gw)
    await gw.ready()
    sent, last = 0, 0.0
    for _ in range(4):  # traffic and scrapes interleaved: no scrape shows less than one before
        assert all(s == 200 for s in await _burst(gw.base, 10))
        sent += 10
        seen = await _scrapes(gw.base, 4, last)
        last = seen[-1]
    await asyncio.sleep(1.5)  # the snapshot interval (1 s) passed: every worker shows it all
    assert await _scrapes(gw.base, 8, last) == [sent] * 8
    await asyncio.sleep(0.3)  # the access log is flushed every 50 ms
    pids = {line["pid"] for line in gw.access() if line["path"] == "/metrics"}
    assert len(pids) == 2, "both workers should have answered scrapes"

    # a worker killed (its last snapshot is up to 1 s old: wait that out) and replaced
    victim = gw.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    seen = await _scrapes(gw.base, 6, sent)  # during the replacement too
    await gw.wait_for("worker #3 started")
    for _ in range(100):
        if sum("worker serving" in m["msg"] for m in gw.messages()) >= 3:
            break
        await asyncio.sleep(0.1)
    assert all(s == 200 for s in await _burst(gw.base, 10))
    sent += 10
    seen = await _scrapes(gw.base, 6, seen[-1])
    await asyncio.sleep(1.5)
    assert await _scrapes(gw.base, 6, seen[-1]) == [sent] * 6

    # a rolling restart (SIGHUP): old and new workers overlap; nothing lost or doubled
    gw.signal(signal.SIGHUP)
    seen = await _scrapes(gw.base, 6, sent)
    await gw.wait_for("reloaded config")
    await asyncio.sleep(1.5)
    assert await _scrapes(gw.base, 6, seen[-1]) == [sent] * 6
    assert len(gw.worker_pids()) == 2

    (snapdir,) = tmpdir.iterdir()
    assert sorted(p.name for p in snapdir.glob("metrics-*.json"))[-1] == "metrics-retired.json"
    gw.signal(signal.SIGTERM)
    assert await gw.wait_exit() == 0
    assert not snapdir.exists(), "the supervisor removes its directory"
