"""Running the gateway: uvloop, the low-level aiohttp server, signals, reload, draining.

One `Server` is one serving process. `serve()` runs it alone (`--workers 1`) or as a
worker under `aigw.supervisor` (then it reports to the supervisor over a control socket
instead of to systemd, and leaves SIGHUP to the supervisor's rolling restart).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass

import uvloop
from aiohttp import web

from aigw import config as config_mod
from aigw.accesslog import AccessLog, TimedRequest, set_level
from aigw.app import Gateway
from aigw.config import Config
from aigw.errors import ConfigError
from aigw.metrics import MetricsShare
from aigw.notify import Notifier
from aigw.policy.auth import warn_exposed
from aigw.guard import self_pointing
from aigw.logsafe import http_logger

logger = logging.getLogger("aigw.server")

ACCEPT_GRACE = 0.25  # s between closing the listener and closing idle connections

# Changing these needs a restart: they shape the listening socket and the process tree.
RESTART_ONLY = ("host", "port", "workers", "shutdown_timeout", "max_line_size",
                "max_field_size", "max_headers")


class _Live:
    """A gateway generation and its in-flight request count (reload closes it at zero)."""

    __slots__ = ("gateway", "active", "idle")

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.active = 0
        self.idle: asyncio.Event | None = None


class Server:
    """One serving process: a Gateway behind aiohttp's low-level server on one socket."""

    def __init__(self, config: Config, access: AccessLog | None = None) -> None:
        self.config = config
        self.live = _Live(Gateway(config))
        self.access = access
        self.runner: web.ServerRunner | None = None
        self.site: web.BaseSite | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return (f"<Server {self.config.source} [active {self.live.active} | "
                f"retiring {len(self._retiring)}]>")

    @property
    def gateway(self) -> Gateway:
        """The gateway new requests go to."""
        return self.live.gateway

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        # A handler returns once its response (streams included) has been written, so
        # `active` counts exactly the requests that still need this generation's pools.
        live = self.live
        live.active += 1
        try:
            return await live.gateway.handle(request)
        finally:
            live.active -= 1
            if live.idle is not None and not live.active:
                live.idle.set()

    def _make_request(self, message, payload, protocol, writer, task):  # type: ignore[no-untyped-def]
        return TimedRequest(message, payload, protocol, writer, task, asyncio.get_running_loop())

    async def start(self, host: str | None = None, port: int | None = None,
                    sock: socket.socket | None = None) -> None:
        """Open pools, then start listening (on `sock` if given)."""
        s = self.config.server
        warn_exposed(self.config, host or s.host)
        await self.gateway.start()
        # aiohttp's own access log costs ~15 µs a request (its formatter); aigw's queues a
        # tuple and formats it in a thread.
        kw: dict[str, object] = {"access_log": None}
        if self.access is not None:
            kw = {"access_log_class": self.access.logger_class(), "access_log": logger,
                  "request_factory": self._make_request}
        server = web.Server(
            self._handle,
            handler_cancellation=True,  # a client that goes away cancels its upstream call
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
            **kw,  # type: ignore[arg-type]
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

    async def reload(self, config: Config) -> None:
        """Serve new requests from a gateway built on `config`; the old one finishes its
        in-flight requests and streams, then closes its pools."""
        new = Gateway(config)
        new.runtime.inherit(self.live.gateway.runtime)  # cache and rate limits survive
        await new.start()
        old, self.live, self.config = self.live, _Live(new), config
        task = asyncio.create_task(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, old: _Live) -> None:
        if old.active:
            old.idle = asyncio.Event()
            await old.idle.wait()
        await old.gateway.close()

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish (bounded), close the pools."""
        self.gateway.draining = True
        if self.site is not None:
            await self.site.stop()  # stop accepting
            self.site = None
            # The runner's cleanup closes idle connections at once, and a connection accepted
            # a moment ago is idle until its request arrives: without this pause a rolling
            # restart under load reset 2 new connections in 1 run of 4 (test_signals.py).
            await asyncio.sleep(ACCEPT_GRACE)
        if self.runner is not None:
            await self.runner.cleanup()  # bounded by server.shutdown_timeout
            self.runner = None
        for task in list(self._retiring):
            task.cancel()  # the runner has already ended every request they waited for
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.gateway.close()


@dataclass
class ServeOptions:
    """How `serve()` runs: where it listens and whom it reports to."""

    config_path: str | None = None
    host: str | None = None
    port: int | None = None
    sock: socket.socket | None = None  # a worker: the supervisor's listening socket
    control: socket.socket | None = None  # a worker: its end of the control socketpair
    metrics_dir: str | None = None  # a worker: where the workers share metric snapshots
    worker_id: int = 0  # a worker: its number (names its snapshot file)
    on_ready: Callable[[Server], None] | None = None


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """The `server.*` keys that changed but only take effect at restart."""
    return [f"server.{k}" for k in RESTART_ONLY
            if getattr(old.server, k) != getattr(new.server, k)]


async def reload_in_process(srv: Server, path: str | None, notifier: Notifier) -> None:
    """SIGHUP without workers: validate the file, then swap the gateway in place."""
    notifier.reloading()
    try:
        new = config_mod.load(path)
    except ConfigError as exc:
        logger.error("reload refused, still serving %s: %s", srv.config.source, exc)
        notifier.ready("serving (reload refused: invalid config)")
        return
    for key in restart_only_changes(srv.config, new):
        logger.warning("reload: %s changed; it takes effect at the next restart", key)
    await srv.reload(new)
    set_level(new.log)
    logger.info("reloaded config %s", new.source)
    notifier.ready("serving")


async def _control(sock: socket.socket, signals: asyncio.Queue[int]) -> None:
    """Talk to the supervisor: say ready, answer pings; its going away means drain."""
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    writer.write(b"ready\n")
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            if line == b"ping\n":
                writer.write(b"pong\n")
    except ConnectionError:
        pass
    signals.put_nowait(signal.SIGTERM)


# Young objects allocated but not yet freed before the collector runs. Python's default
# (700) ran a collection every ~14 ms under load, ~5% of a request's CPU (bench/README.md);
# a request frees nearly all it allocates by reference counting, so a larger threshold only
# delays the collection of the rare reference cycles (a few MB at most).
GC_THRESHOLD = (20_000, 20, 20)


def tune_gc() -> None:
    """Once serving: move everything built at start-up out of the collector's way and make
    young-generation collections rare."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


async def _serve(config: Config, opts: ServeOptions) -> None:
    worker = opts.control is not None
    notifier = Notifier({} if worker else None)
    access = AccessLog(config.log.format) if config.log.access_log else None
    if access is not None:
        access.start()
    srv = Server(config, access)
    share = None
    if opts.metrics_dir is not None:
        share = srv.gateway.share = MetricsShare(opts.metrics_dir, opts.worker_id,
                                                 srv.gateway.metrics)
    await srv.start(opts.host, opts.port, opts.sock)
    loop = asyncio.get_running_loop()
    signals: asyncio.Queue[int] = asyncio.Queue()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, signals.put_nowait, signum)
    tasks = [asyncio.create_task(notifier.watchdog())]
    if share is not None:
        tasks.append(asyncio.create_task(share.run()))
    if opts.control is not None:
        tasks.append(asyncio.create_task(_control(opts.control, signals)))
        logger.info("worker serving (config %s)", config.source)
    else:
        logger.info("aigw serving on http://%s:%d (config %s)",
                    opts.host or config.server.host, srv.port, config.source)
    tune_gc()
    notifier.ready("serving")
    if opts.on_ready is not None:
        opts.on_ready(srv)
    while True:
        sig = await signals.get()
        if sig != signal.SIGHUP:
            break
        if not worker:  # a worker's HUP belongs to the supervisor's rolling restart
            await reload_in_process(srv, opts.config_path, notifier)
    notifier.stopping()
    logger.info("draining on %s (up to %.0f s)", signal.Signals(sig).name,
                srv.config.server.shutdown_timeout)
    await srv.stop()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if share is not None:
        share.write()  # the final counts, for the supervisor to keep in the totals
    notifier.close()
    if access is not None:
        access.close()
    logger.info("stopped")


def serve(config: Config, opts: ServeOptions | None = None) -> None:
    """Run until SIGTERM/SIGINT, on uvloop; SIGHUP reloads the config file."""
    uvloop.run(_serve(config, opts or ServeOptions()))
