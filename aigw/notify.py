"""systemd's notify protocol: one datagram of `KEY=value` lines to `$NOTIFY_SOCKET`.

No dependency on libsystemd: the protocol is an AF_UNIX datagram (sd_notify(3)); a name
starting with `@` is an abstract socket. Outside systemd (no `$NOTIFY_SOCKET`) every call
is a no-op, so the serving code calls it unconditionally.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

logger = logging.getLogger("aigw.notify")

# Variables systemd sets for the main process only; workers must not inherit them.
ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
SEND_TRIES = 50


class Notifier:
    """Sends state changes to systemd, and watchdog pings when `WatchdogSec=` is set."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if addr.startswith("@"):
            self.address = "\0" + addr[1:]
        elif addr.startswith("/"):
            self.address = addr
        self.watchdog_usec = 0
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_usec = int(usec)
        self._sock: socket.socket | None = None

    def __repr__(self) -> str:
        return f"<Notifier {self.address!r} watchdog={self.watchdog_usec}us>"

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens."""
        return self.address is not None

    def send(self, *lines: str, tries: int = SEND_TRIES) -> bool:
        """Send one message; False (and a debug line) if it could not be delivered.

        The socket is non-blocking: a receiver that stops reading fills its queue (10
        datagrams by default), and a blocking send would then stall the event loop. A
        state change is retried for up to `tries` x 10 ms; a watchdog ping is tried once.
        """
        if self.address is None:
            return False
        data = "\n".join(lines).encode()
        for attempt in range(1, tries + 1):
            try:
                if self._sock is None:
                    self._sock = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
                self._sock.sendto(data, self.address)
                return True
            except BlockingIOError:
                if attempt < tries:
                    time.sleep(0.01)
            except OSError as exc:
                logger.debug("sd_notify failed: %s", exc)
                return False
        logger.warning("sd_notify: %s not delivered (the service manager is not reading)",
                       lines[0])
        return False

    def ready(self, status: str = "") -> bool:
        """READY=1: the service accepts requests."""
        return self.send("READY=1", *((f"STATUS={status}",) if status else ()))

    def reloading(self) -> bool:
        """RELOADING=1 with the monotonic timestamp `Type=notify-reload` asks for."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """STOPPING=1: draining, about to exit."""
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        """A free-form line `systemctl status` shows."""
        return self.send(f"STATUS={text}")

    async def watchdog(self) -> None:
        """Ping `WATCHDOG=1` at half the interval systemd asked for, until cancelled."""
        if not self.watchdog_usec or self.address is None:
            return
        interval = self.watchdog_usec / 2e6
        while True:
            self.send("WATCHDOG=1", tries=1)
            await asyncio.sleep(interval)

    def close(self) -> None:
        """Close the datagram socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the notify variables (workers never talk to systemd directly)."""
    return {k: v for k, v in env.items() if k not in ENV_VARS}
