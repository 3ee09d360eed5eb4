"""Running the gateway: uvloop, the low-level aiohttp server, signals, draining."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable

import uvloop
from aiohttp import web

from aigw.app import Gateway
from aigw.config import Config
from aigw.errors import ConfigError
from aigw.guard import self_pointing
from aigw.logsafe import http_logger

logger = logging.getLogger("aigw.server")


class Server:
    """One serving process: a Gateway behind aiohttp's low-level server on one socket."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.gateway = Gateway(config)
        self.runner: web.ServerRunner | None = None
        self.site: web.BaseSite | None = None

    async def start(self, host: str | None = None, port: int | None = None,
                    sock: socket.socket | None = None) -> None:
        """Open pools, then start listening (on `sock` if given)."""
        s = self.config.server
        await self.gateway.start()
        server = web.Server(
            self.gateway.handle,
            handler_cancellation=True,  # a client that goes away cancels its upstream call
            access_log=None,  # aiohttp's formatter costs ~15 µs a request; aigw logs its own
            logger=http_logger(),  # parse errors logged without the request line (secrets)
            # aiohttp arms this timer at connect and after each response, and closes a
            # connection that has not delivered a whole request head by then: with
            # client_timeout it bounds slow headers (slowloris) as well as idle keep-alive.
            keepalive_timeout=s.client_timeout or 75,
            # after a 408/413 aiohttp reads and drops the unread body for this long before
            # closing (so the client sees the answer, not a reset): bounded the same way
            lingering_time=min(s.client_timeout or 10.0, 10.0),
            max_line_size=s.max_line_size,
            max_field_size=s.max_field_size,
            max_headers=s.max_headers,
        )
        self.runner = web.ServerRunner(server, shutdown_timeout=s.shutdown_timeout)
        await self.runner.setup()
        if sock is not None:
            self.site = web.SockSite(self.runner, sock)
        else:
            self.site = web.TCPSite(self.runner, host or s.host, s.port if port is None else port,
                                    backlog=1024)
        await self.site.start()
        loops = await self_pointing(self.config, host or s.host, self.port)
        if loops:
            await self.stop()
            raise ConfigError(f"providers.{loops[0]}.base_url",
                              "points at this gateway's own address (a request loop)")

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self.runner is not None
        addrs = self.runner.addresses
        return int(addrs[0][1])

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish (bounded), close the pools."""
        self.gateway.draining = True
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        await self.gateway.close()


async def _serve(config: Config, host: str | None, port: int | None,
                 on_ready: Callable[[Server], None] | None) -> None:
    srv = Server(config)
    await srv.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logger.info("aigw serving on http://%s:%d (config %s)", host or config.server.host,
                srv.port, config.source)
    if on_ready is not None:
        on_ready(srv)
    await stop.wait()
    logger.info("draining (up to %.0f s)", config.server.shutdown_timeout)
    await srv.stop()


def serve(config: Config, host: str | None = None, port: int | None = None,
          on_ready: Callable[[Server], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT, on uvloop."""
    uvloop.run(_serve(config, host, port, on_ready))
