"""`aigw serve --workers N`: a parent that binds once and keeps N worker processes serving.

The parent owns the listening sockets, the config file and the conversation with systemd.
It binds one `SO_REUSEPORT` socket per worker slot, so the kernel spreads new connections
evenly (one shared socket lets whichever worker wakes first take a whole burst: in a test,
one of two workers took all 40 connections). A slot's socket outlives its workers: a
replacement inherits the same socket, so connections queued while it starts are kept, not
reset. Each worker also gets a control socketpair over which it says `ready` and answers
`ping`, and the snapshot directory, where it also shares its metrics with the others (and
where its last counts are kept once it exits: `aigw.metrics.retire_snapshot`, so the
totals any worker's /metrics shows never go down). Signals are queued and handled
in the parent's loop:

- a worker that exits unasked is replaced at once; one that misses pings for
  `liveness_timeout` seconds is killed, and then replaced;
- SIGTERM/SIGINT: STOPPING=1, SIGTERM to every worker, wait for them to drain;
- SIGHUP: validate the new file here first (refuse it with a logged reason, keep serving),
  then roll: start one new worker, wait for its `ready`, send SIGTERM to one old one, and so
  on, so there are never fewer than N workers accepting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from aigw import config as config_mod
from aigw.config import Config
from aigw.errors import ConfigError
from aigw.metrics import retire_snapshot
from aigw.notify import Notifier, child_env
from aigw.server import restart_only_changes

logger = logging.getLogger("aigw.supervisor")

READY_TIMEOUT = 30.0  # a new worker must say ready within this, or the reload is aborted
MIN_LIFETIME = 1.0  # a worker that dies younger than this is replaced after a pause


class Worker:
    """One child process and its control channel."""

    __slots__ = ("n", "slot", "proc", "reader", "writer", "ready", "last_pong", "stopping",
                 "started")

    def __init__(self, n: int, slot: int, proc: asyncio.subprocess.Process,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.n = n
        self.slot = slot
        self.proc = proc
        self.reader = reader
        self.writer = writer
        self.ready = asyncio.Event()
        self.started = self.last_pong = time.monotonic()
        self.stopping = False

    def __repr__(self) -> str:
        state = "stopping" if self.stopping else "ready" if self.ready.is_set() else "starting"
        return f"<Worker #{self.n} slot={self.slot} pid={self.proc.pid} {state}>"

    def signal(self, sig: int) -> None:
        """Send `sig` unless the process is already gone."""
        if self.proc.returncode is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass


def bind(host: str, port: int) -> socket.socket:
    """One slot's listening socket (`SO_REUSEPORT`: every slot binds the same port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024, reuse_port=True)
    sock.set_inheritable(True)
    return sock


def cpu_count() -> int:
    """Cores this process may run on (`--workers auto`)."""
    return len(os.sched_getaffinity(0)) or 1


class Supervisor:
    """The parent process of `serve --workers N`."""

    def __init__(self, config: Config, config_path: str | None, workers: int,
                 host: str | None = None, port: int | None = None,
                 liveness_timeout: float = 30.0) -> None:
        self.config = config
        self.config_path = config_path
        self.size = workers
        self.host = host or config.server.host
        self.port = config.server.port if port is None else port
        self.liveness_timeout = liveness_timeout
        self.ping_interval = min(5.0, liveness_timeout / 3)
        self.notifier = Notifier()
        self.workers: list[Worker] = []  # serving (or starting) workers, at most `size`
        self.draining: list[Worker] = []  # told to stop, not yet exited
        self.socks: list[socket.socket] = []  # one per slot
        self.snapshot_dir = Path(tempfile.mkdtemp(prefix="aigw-"))
        self.snapshot: Path | None = None
        self.shutting_down = False
        self._spawned = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._signals: asyncio.Queue[int] = asyncio.Queue()

    def __repr__(self) -> str:
        return (f"<Supervisor {self.host}:{self.port} [workers {len(self.workers)}/{self.size} | "
                f"draining {len(self.draining)}]>")

    # ------------------------------------------------------------ config

    def _take_snapshot(self, data: bytes | None) -> None:
        """Workers read the bytes the parent validated, not a file that may change later."""
        if data is None:
            self.snapshot = None
            return
        path = self.snapshot_dir / f"config-{self._spawned}.toml"
        path.write_bytes(data)
        path.chmod(0o600)
        old, self.snapshot = self.snapshot, path
        if old is not None:
            old.unlink(missing_ok=True)

    def _load(self) -> tuple[Config, bytes | None]:
        """Read and validate the config file once; the bytes go to the workers as validated."""
        if self.config_path is None:
            return config_mod.load(None), None
        try:
            data = Path(self.config_path).read_bytes()
            raw = tomllib.loads(data.decode())
        except OSError as exc:
            raise ConfigError("", f"cannot read {self.config_path}: {exc.strerror}") from exc
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("", f"{self.config_path}: not valid TOML: {exc}") from exc
        return config_mod.from_dict(raw, None, self.config_path), data

    # ------------------------------------------------------------ workers

    async def spawn(self, slot: int) -> Worker:
        """Start one worker on a slot's socket."""
        sock = self.socks[slot]
        self._spawned += 1
        ours, theirs = socket.socketpair()
        cmd = [sys.executable, "-m", "aigw", "worker", "--fd", str(sock.fileno()),
               "--control-fd", str(theirs.fileno()), "--metrics-dir", str(self.snapshot_dir),
               "--worker-id", str(self._spawned)]
        if self.snapshot is not None:
            cmd += ["--config", str(self.snapshot), "--source", str(self.config_path)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, pass_fds=(sock.fileno(), theirs.fileno()), env=child_env(os.environ))
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        w = Worker(self._spawned, slot, proc, reader, writer)
        self.workers.append(w)
        self._track(self._watch(w))
        logger.info("worker #%d started (pid %d)", w.n, proc.pid)
        return w

    def _track(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, w: Worker) -> None:
        """Read the worker's control lines until EOF, then reap it (and replace it)."""
        try:
            while True:
                line = await w.reader.readline()
                if not line:
                    break
                if line == b"pong\n":
                    w.last_pong = time.monotonic()
                elif line == b"ready\n":
                    w.last_pong = time.monotonic()
                    w.ready.set()
        except ConnectionError:
            pass
        code = await w.proc.wait()
        w.writer.close()
        # its counts stay in every worker's /metrics (aigw.metrics: workers: one shared view)
        retire_snapshot(self.snapshot_dir, w.n)
        if w in self.workers:
            self.workers.remove(w)
        if w in self.draining:
            self.draining.remove(w)
        if w.stopping:
            logger.info("worker #%d (pid %d) exited with %d", w.n, w.proc.pid, code)
            return
        logger.warning("worker #%d (pid %d) died with %d; replacing it", w.n, w.proc.pid, code)
        if self.shutting_down:
            return
        if time.monotonic() - w.started < MIN_LIFETIME:
            await asyncio.sleep(MIN_LIFETIME)  # no tight respawn loop on a crash at start-up
        if not self.shutting_down and all(x.slot != w.slot for x in self.workers):
            await self.spawn(w.slot)

    def retire(self, w: Worker) -> None:
        """Ask a worker to drain and exit."""
        if w in self.workers:
            self.workers.remove(w)
        w.stopping = True
        self.draining.append(w)
        w.signal(signal.SIGTERM)

    async def _liveness(self) -> None:
        """Ping every worker; kill one silent for `liveness_timeout` (its watcher replaces it)."""
        while True:
            await asyncio.sleep(self.ping_interval)
            now = time.monotonic()
            for w in list(self.workers):
                if now - w.last_pong > self.liveness_timeout:
                    logger.error("worker #%d (pid %d) stopped answering for %.0f s; killing it",
                                 w.n, w.proc.pid, now - w.last_pong)
                    w.signal(signal.SIGKILL)
                    continue
                try:
                    w.writer.write(b"ping\n")
                except (ConnectionError, RuntimeError):
                    pass

    async def _wait_ready(self, w: Worker) -> bool:
        exited = asyncio.create_task(w.proc.wait())
        ready = asyncio.create_task(w.ready.wait())
        await asyncio.wait((exited, ready), timeout=READY_TIMEOUT,
                           return_when=asyncio.FIRST_COMPLETED)
        exited.cancel()
        ready.cancel()
        return w.ready.is_set() and w.proc.returncode is None

    # ------------------------------------------------------------ signals

    async def reload(self) -> None:
        """SIGHUP: validate, then a rolling restart onto the new config."""
        self.notifier.reloading()
        try:
            new, data = self._load()
        except ConfigError as exc:
            logger.error("reload refused, still serving %s: %s", self.config.source, exc)
            self.notifier.ready("serving (reload refused: invalid config)")
            return
        for key in restart_only_changes(self.config, new):
            logger.warning("reload: %s changed; it takes effect at the next restart", key)
        self._take_snapshot(data)
        for old in list(self.workers):
            if self.shutting_down:
                return
            w = await self.spawn(old.slot)
            if not await self._wait_ready(w):
                logger.error("reload aborted: worker #%d did not become ready", w.n)
                self.retire(w)
                w.signal(signal.SIGKILL)
                self.notifier.ready("serving (reload aborted)")
                return
            if old in self.workers:
                self.retire(old)
        self.config = new
        logger.info("reloaded config %s onto %d workers", new.source, len(self.workers))
        self.notifier.ready(f"serving with {len(self.workers)} workers")

    async def shutdown(self, sig: int) -> None:
        """SIGTERM/SIGINT: every worker drains; bounded by shutdown_timeout plus a margin."""
        self.shutting_down = True
        self.notifier.stopping()
        logger.info("draining on %s (up to %.0f s)", signal.Signals(sig).name,
                    self.config.server.shutdown_timeout)
        for w in list(self.workers):
            self.retire(w)
        procs = [w.proc.wait() for w in self.draining]
        try:
            async with asyncio.timeout(self.config.server.shutdown_timeout + 10):
                await asyncio.gather(*procs)
        except TimeoutError:
            for w in self.draining:
                logger.error("worker #%d did not exit; killing it", w.n)
                w.signal(signal.SIGKILL)

    async def run(self) -> int:
        """Bind, start the workers, handle signals until told to stop."""
        try:
            config, data = self._load()
        except ConfigError as exc:
            logger.error("config error: %s", exc)
            return 2
        self.config = config
        self._take_snapshot(data)
        self.socks.append(bind(self.host, self.port))
        self.port = self.socks[0].getsockname()[1]  # port 0: every slot binds the one picked
        self.socks.extend(bind(self.host, self.port) for _ in range(self.size - 1))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, self._signals.put_nowait, signum)
        try:
            for slot in range(self.size):
                await self.spawn(slot)
            for w in list(self.workers):
                await self._wait_ready(w)
            logger.info("aigw serving on http://%s:%d with %d workers (config %s)",
                        self.host, self.port, len(self.workers), self.config.source)
            self.notifier.ready(f"serving with {len(self.workers)} workers")
            self._track(self._liveness())
            self._track(self.notifier.watchdog())
            while True:
                sig = await self._signals.get()
                if sig == signal.SIGHUP:
                    await self.reload()
                else:
                    await self.shutdown(sig)
                    break
        finally:
            self.shutting_down = True
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for sock in self.socks:
                sock.close()
            shutil.rmtree(self.snapshot_dir, ignore_errors=True)
            self.notifier.close()
        logger.info("stopped")
        return 0
