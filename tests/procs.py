"""Helpers for tests that run real `aigw serve` processes (workers, signals, notify)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from aigw import _json
from tests.conftest import MockUpstream, free_port

ROOT = Path(__file__).resolve().parent.parent


def config_text(upstream: MockUpstream, port: int, openai_path: str = "/v1",
                shutdown_timeout: float = 10, extra: str = "") -> str:
    """A TOML config pointing openai at the mock upstream under `openai_path`."""
    return (f'[server]\nhost = "127.0.0.1"\nport = {port}\nshutdown_timeout = {shutdown_timeout}\n'
            f'[providers.openai]\nbase_url = "{upstream.url(openai_path)}"\n'
            f'[logs]\nbackend = "off"\n{extra}')


class Aigw:
    """One `aigw serve` process; stdout (access log) and stderr (messages) go to files."""

    def __init__(self, tmp: Path, text: str, workers: int = 1, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.config = tmp / "aigw.toml"
        self.config.write_text(text)
        self.port = int(re.search(r"port = (\d+)", text).group(1))  # type: ignore[union-attr]
        self.out = tmp / "stdout.log"
        self.err = tmp / "stderr.log"
        e = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        e.update(env or {})
        cmd = [sys.executable, "-m", "aigw", "serve", "--config", str(self.config),
               "--workers", str(workers), *args]
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=e, cwd=tmp)
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def messages(self) -> list[dict[str, Any]]:
        """The process's JSON log messages so far."""
        return [_json.loads(line) for line in self.err.read_bytes().splitlines()
                if line.startswith(b"{")]

    def access(self) -> list[dict[str, Any]]:
        """The access log lines so far."""
        return [_json.loads(line) for line in self.out.read_bytes().splitlines()
                if line.startswith(b"{")]

    def logged(self, text: str) -> bool:
        return any(text in m["msg"] for m in self.messages())

    async def wait_for(self, text: str, timeout: float = 15) -> None:
        """Until a log message contains `text`."""
        deadline = time.monotonic() + timeout
        while not self.logged(text):
            assert self.proc.poll() is None, self.err.read_text()
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.err.read_text()}"
            await asyncio.sleep(0.05)

    async def ready(self, timeout: float = 20) -> None:
        """Until the process logs that it serves."""
        await self.wait_for("aigw serving on", timeout)

    def worker_pids(self) -> list[int]:
        """Live children of the supervisor."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, "aigw did not exit"
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            for pid in self.worker_pids_safe():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait(10)

    def worker_pids_safe(self) -> list[int]:
        try:
            return self.worker_pids()
        except OSError:
            return []


def session() -> aiohttp.ClientSession:
    """A client with a fresh connection per request (so every request hits accept())."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                 timeout=aiohttp.ClientTimeout(total=30))


__all__ = ["Aigw", "config_text", "free_port", "session"]
