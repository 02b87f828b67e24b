"""Small helpers shared by every bench process (loop choice, fd limits, ports).

Kept dependency-free so that each server/loadgen process imports as little as possible.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import time

LOOPBACK = "127.0.0.1"


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE soft limit to the hard limit: 5,000 held streams need >10k fds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def install_uvloop(enabled: bool = True) -> bool:
    """Use uvloop when importable (and wanted); return whether it is active."""
    if not enabled:
        return False
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def run_loop(coro: object, use_uvloop: bool = True) -> object:
    """Run a coroutine on uvloop if available, else the default asyncio loop."""
    if use_uvloop:
        try:
            import uvloop

            return uvloop.run(coro)  # type: ignore[arg-type]
        except ImportError:
            pass
    return asyncio.run(coro)  # type: ignore[arg-type]


def free_port() -> int:
    """Ask the kernel for a free loopback port (tiny race window; fine on a quiet box)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, host: str = LOOPBACK) -> bool:
    """Poll until something accepts TCP connections on host:port, or give up after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def check_loopback(host: str) -> str:
    """Refuse anything but loopback: the harness must never generate load elsewhere."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"bench: refusing non-loopback host {host!r}")
    return "127.0.0.1" if host == "localhost" else host


async def wait_for_stop(lifetime: float) -> None:
    """Return on SIGTERM/SIGINT, when the parent (the runner) is gone, or after lifetime s.

    Servers started by the runner must never outlive it, even if it is SIGKILLed.
    """
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def set_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, set_stop)
    parent = os.getppid()

    async def watch_parent() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        set_stop()

    watcher = asyncio.ensure_future(watch_parent())
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop, timeout=lifetime)
    finally:
        watcher.cancel()
