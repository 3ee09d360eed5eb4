"""sd_notify: messages reach `$NOTIFY_SOCKET` (path and abstract), in lifecycle order."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import pytest

from aigw.notify import Notifier, child_env
from tests.procs import Aigw, config_text, free_port


def _listener(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.setblocking(False)
    return s


def _drain(s: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(s.recv(4096).decode())
        except BlockingIOError:
            return out


def test_notifier_sends_to_a_path_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    with _listener(path) as s:
        n = Notifier({"NOTIFY_SOCKET": path})
        assert n.ready("serving") and n.reloading() and n.stopping()
        n.close()
        msgs = _drain(s)
    assert msgs[0] == "READY=1\nSTATUS=serving"
    assert msgs[1].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert msgs[2] == "STOPPING=1"


def test_notifier_sends_to_an_abstract_socket():
    name = f"aigw-test-{os.getpid()}-{time.monotonic_ns()}"
    with _listener("\0" + name) as s:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        n.close()
        assert _drain(s) == ["READY=1"]


def test_without_notify_socket_everything_is_a_no_op():
    n = Notifier({})
    assert not n.enabled and not n.ready() and not n.stopping()


def test_watchdog_interval_and_pid_check():
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "2000000"}).watchdog_usec == 2000000
    other = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_usec == 0  # meant for another process
    assert "NOTIFY_SOCKET" not in child_env({"NOTIFY_SOCKET": "/x", "HOME": "/h"})


async def _collect(s: socket.socket, into: list[str], stop: asyncio.Event) -> None:
    """Read like systemd does: promptly (a full queue would drop pings)."""
    while not stop.is_set():
        into.extend(_drain(s))
        await asyncio.sleep(0.02)
    into.extend(_drain(s))


def test_a_receiver_that_stops_reading_never_blocks_the_sender(tmp_path):
    path = str(tmp_path / "notify.sock")
    with _listener(path):
        n = Notifier({"NOTIFY_SOCKET": path})
        t0 = time.monotonic()
        results = [n.send("WATCHDOG=1", tries=1) for _ in range(200)]
        assert time.monotonic() - t0 < 1 and not all(results)
        n.close()


@pytest.mark.parametrize("workers", [1, 2])
async def test_lifecycle_messages_arrive_in_order(upstream, tmp_path, workers):
    path = str(tmp_path / "notify.sock")
    msgs: list[str] = []
    stop = asyncio.Event()
    with _listener(path) as s:
        collector = asyncio.create_task(_collect(s, msgs, stop))
        gw = Aigw(tmp_path, config_text(upstream, free_port()), workers=workers,
                  env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "300000"})
        try:
            await gw.ready()
            await asyncio.sleep(0.4)  # a few watchdog pings (every 150 ms)
            gw.signal(signal.SIGHUP)
            await gw.wait_for("reloaded config")
            gw.signal(signal.SIGTERM)
            assert await gw.wait_exit() == 0
        finally:
            gw.kill()
            stop.set()
            await collector
    assert msgs.count("WATCHDOG=1") >= 2
    states = [m.split("\n")[0] for m in msgs if m != "WATCHDOG=1"]
    assert states == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], msgs
