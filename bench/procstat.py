"""CPU time and peak memory of a process tree, read from /proc (Linux only).

The gateway may fork workers, so every figure covers the process and its descendants.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name in parentheses may contain spaces; fields start after the last ')'
    return raw[raw.rfind(")") + 2:].split()


def tree(pid: int) -> list[int]:
    """pid and all its live descendants."""
    parents: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        f = _stat_fields(int(entry.name))
        if f is not None:
            parents.setdefault(int(f[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 10_000:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the tree rooted at pid, in seconds."""
    total = 0
    for p in tree(pid):
        f = _stat_fields(p)
        if f is not None:
            # fields 14 and 15 of stat(5) are utime and stime; index 11/12 after the name
            total += int(f[11]) + int(f[12])
    return total / CLK_TCK


def main_thread_seconds(pid: int) -> float:
    """utime + stime of the main thread of each process in the tree (the event loop's thread
    in aigw), in seconds: what the request path costs without the helper threads."""
    total = 0
    for p in tree(pid):
        try:
            raw = (PROC / str(p) / "task" / str(p) / "stat").read_text()
        except OSError:
            continue
        f = raw[raw.rfind(")") + 2:].split()
        total += int(f[11]) + int(f[12])
    return total / CLK_TCK


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def peak_rss_kb(pid: int) -> int:
    """Sum of VmHWM (peak resident set) over the tree, in KiB: an upper bound of the peak."""
    return sum(_status_kb(p, "VmHWM") for p in tree(pid))


def rss_kb(pid: int) -> int:
    """Sum of current VmRSS over the tree, in KiB."""
    return sum(_status_kb(p, "VmRSS") for p in tree(pid))


def helper_threads(pid: int) -> list[int]:
    """Thread ids of every process in the tree but each process's main thread (in aigw: the
    SQLite writer, the access log, executor threads)."""
    out: list[int] = []
    for p in tree(pid):
        try:
            tids = [int(t.name) for t in (PROC / str(p) / "task").iterdir()]
        except OSError:
            continue
        out.extend(t for t in tids if t != p)
    return out
