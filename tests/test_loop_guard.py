"""A gateway never calls itself: a provider at its own address is a start-up error, and at
run time the `x-aigw-hop` chain stops loops through other names or other gateways."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from aigw import _json
from aigw import config as config_mod
from aigw.errors import ConfigError, LoopDetected
from aigw.guard import MAX_HOPS, HopGuard
from aigw.server import Server

from conftest import base_config, free_port


class Forwarder:
    """A TCP relay: another address that leads back to the gateway (what DNS could do)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(r, uw), pipe(ur, w))

    def close(self) -> None:
        assert self.server is not None
        self.server.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_provider_at_the_gateways_own_address_is_refused_at_start(upstream, host):
    port = free_port()
    raw = base_config(upstream, {"server": {"port": port}})
    raw["providers"]["custom-self"] = {"base_url": f"http://{host}:{port}/v1/a/g/openai"}
    srv = Server(config_mod.from_dict(raw))
    with pytest.raises(ConfigError) as info:
        await srv.start("127.0.0.1", port)
    assert info.value.path == "providers.custom-self.base_url"
    assert "loop" in str(info.value)


async def test_other_ports_and_hosts_pass_the_start_up_check(make_gateway, upstream):
    gw = await make_gateway()  # every provider at the mock's port, not ours
    async with gw.post("/v1/acct/gw/openai/chat/completions", data=b"{}") as r:
        assert r.status == 200


async def test_a_name_that_leads_back_is_refused_with_508_after_one_hop(make_gateway,
                                                                         upstream):
    gw = await make_gateway()
    fwd = Forwarder(gw.server.port)
    await fwd.start()
    try:
        raw = base_config(upstream)
        raw["providers"]["custom-loop"] = {
            "base_url": f"http://127.0.0.1:{fwd.port}/v1/acct/gw/custom-loop"}
        gw2 = await make_gateway(raw=raw)  # same shape, now really pointing at itself
        fwd.target_port = gw2.server.port
        async with asyncio.timeout(5):
            async with gw2.post("/v1/acct/gw/custom-loop/x", data=b"{}") as r:
                env = _json.loads(await r.read())
        assert r.status == 508 and env["error"][0]["code"] == 2912
        assert fwd.connections == 1  # one hop, then refused
    finally:
        fwd.close()


async def test_two_gateways_pointing_at_each_other_stop(upstream):
    a_port, b_port = free_port(), free_port()

    def cfg(own: int, peer: int) -> config_mod.Config:
        raw = base_config(upstream, {"server": {"port": own}})
        raw["providers"]["custom-peer"] = {
            "base_url": f"http://127.0.0.1:{peer}/v1/acct/gw/custom-peer"}
        return config_mod.from_dict(raw)

    a, b = Server(cfg(a_port, b_port)), Server(cfg(b_port, a_port))
    await a.start("127.0.0.1", a_port)
    await b.start("127.0.0.1", b_port)
    session = aiohttp.ClientSession()
    try:
        async with asyncio.timeout(5):
            url = f"http://127.0.0.1:{a_port}/v1/acct/gw"
            async with session.post(url + "/custom-peer/x", data=b"{}") as r:
                env = _json.loads(await r.read())
            assert r.status == 508 and env["error"][0]["code"] == 2912
            step = [{"provider": "custom-peer", "endpoint": "x", "query": {}}]
            async with session.post(url, data=_json.dumps(step)) as r:
                assert r.status == 508
    finally:
        await session.close()
        await a.stop()
        await b.stop()
    assert upstream.seen == []


async def test_hop_header_is_rebuilt_not_copied(make_gateway, upstream):
    gw = await make_gateway()
    me = gw.server.gateway.hop.instance
    async with gw.post("/v1/acct/gw/openai/chat/completions", data=b"{}",
                       headers={"x-aigw-hop": "peer1"}) as r:
        assert r.status == 200
    async with gw.post("/v1/acct/gw/openai/chat/completions", data=b"{}") as r:
        assert r.status == 200
    step = [{"provider": "openai", "endpoint": "chat/completions", "query": {},
             "headers": {"x-aigw-hop": "forged"}}]
    async with gw.post("/v1/acct/gw", data=_json.dumps(step)) as r:
        assert r.status == 200
    hops = [[v for k, v in s.raw_headers if k.lower() == "x-aigw-hop"] for s in upstream.seen]
    assert hops == [[f"peer1,{me}"], [me], [me]]


def test_hop_guard_rules():
    g = HopGuard("abc123")
    assert g.outgoing(None) == b"x-aigw-hop: abc123\r\n"
    assert g.outgoing("p1, p2") == b"x-aigw-hop: p1,p2,abc123\r\n"
    assert g.outgoing("p1,bad value!,\r\nX: y") == b"x-aigw-hop: p1,abc123\r\n"
    with pytest.raises(LoopDetected):
        g.outgoing("p1,abc123")
    with pytest.raises(LoopDetected):
        g.outgoing(",".join(f"p{i}" for i in range(MAX_HOPS)))
    assert "abc123" in repr(g)


def test_each_config_load_gets_its_own_instance_id():
    a, b = config_mod.from_dict({}), config_mod.from_dict({})
    assert a.instance != b.instance and len(a.instance) == 16
