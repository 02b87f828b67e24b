"""CPU time and RSS of a process tree read straight from /proc (psutil is not installed).

CPU comes from /proc/PID/task/*/schedstat (nanosecond run time per thread) when the kernel
exposes it, else from utime+stime in /proc/PID/stat (10 ms ticks).  A process tree is the
root PID plus every descendant, so ``--workers N`` proxies are measured as a whole.
"""

from __future__ import annotations

import os

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _ppid_map() -> dict[int, int]:
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        # comm may contain spaces/parens: fields after the last ')' are fixed.
        rest = data[data.rindex(b")") + 2 :].split()
        out[int(name)] = int(rest[1])
    return out


def tree(root: int) -> list[int]:
    """Root PID plus all live descendants."""
    parents = _ppid_map()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in parents or pid == root:
            out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _schedstat_ns(pid: int) -> int | None:
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def _stat_ns(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    rest = data[data.rindex(b")") + 2 :].split()
    # utime, stime are fields 14, 15 (1-based) → index 11, 12 after "state".
    return (int(rest[11]) + int(rest[12])) * 1_000_000_000 // _TICK


_USE_SCHEDSTAT = os.path.exists("/proc/self/schedstat") and (_schedstat_ns(os.getpid()) or 0) > 0


def cpu_ns(pids: list[int]) -> int:
    """Total CPU time consumed so far by the given processes, in ns."""
    total = 0
    for pid in pids:
        v = _schedstat_ns(pid) if _USE_SCHEDSTAT else None
        total += v if v is not None else _stat_ns(pid)
    return total


def rss_bytes(pids: list[int]) -> int:
    """Sum of VmRSS (over-counts pages shared between forked workers; documented)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total


def cpu_source() -> str:
    return "schedstat" if _USE_SCHEDSTAT else "stat-ticks"


def cpu_ticks() -> dict[int, tuple[int, int]]:
    """Per-CPU (busy, total) jiffies from /proc/stat; busy = user+nice+system.

    Used to spot *other* load on our cores (e.g. someone else's test run): busy time on a
    core that our own processes do not account for.
    """
    out: dict[int, tuple[int, int]] = {}
    with open("/proc/stat", "rb") as f:
        for line in f:
            if not line.startswith(b"cpu") or line[3:4] == b" ":
                continue
            parts = line.split()
            vals = [int(x) for x in parts[1:]]
            out[int(parts[0][3:])] = (vals[0] + vals[1] + vals[2], sum(vals[:8]))
    return out


def busy_between(a: dict[int, tuple[int, int]], b: dict[int, tuple[int, int]]) -> dict[str, float]:
    """Busy fraction of each CPU between two cpu_ticks() snapshots."""
    out: dict[str, float] = {}
    for cpu, (busy1, tot1) in b.items():
        busy0, tot0 = a.get(cpu, (0, 0))
        out[str(cpu)] = (busy1 - busy0) / (tot1 - tot0) if tot1 > tot0 else 0.0
    return out
