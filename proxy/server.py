"""Running the app: one process, or several sharing the port, with graceful shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import secrets
import signal
import sys
from multiprocessing.connection import wait

from aiohttp import web, web_response

from .app import create_app
from .config import Config
from .gates.drain import DRAIN_SIGNAL, drain_on_signal
from .gates.errors import SERVER_NAME
from .gates.reload import reload_on_sighup
from .jobs.secret import SECRET_ENV
from .logs import setup_logging
from .observe import structured_access
from .observe.multiproc import MultiprocDir

__all__ = ["hide_server_version", "install_uvloop", "serve", "settle_heap", "supervise"]

log = logging.getLogger("proxy")

# Signals the parent of --workers N passes on to every worker.
FORWARDED = frozenset({signal.SIGHUP, DRAIN_SIGNAL})

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs rid=%{X-Request-Id}o'

# The cyclic collector's first threshold once serving (CPython's default is 700). A collection of
# the youngest generation walks every young object still alive, and those are mostly the state of
# the requests in flight, so at 700 it ran every couple of requests and cost 25-40 µs per request
# (measured with gc.callbacks, 16 connections); at 7,000 it runs a tenth as often, each run no
# dearer. Garbage without cycles is freed by reference counting either way.
YOUNG_THRESHOLD = 7_000


def install_uvloop() -> bool:
    """Use uvloop when it is installed (the optional ``uvloop`` extra)."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def hide_server_version() -> None:
    """No versions in ``Server``, even on the 400s aiohttp sends on its own.

    A request aiohttp cannot parse (two ``Host`` headers, a broken request line) is answered by
    its protocol handler before any proxy code runs, with ``Server: Python/3.x aiohttp/3.y.z``;
    aiohttp has no setting for that header, so the serving process replaces the default it
    falls back to (what the app sends names itself anyway: ``middleware.SERVER_NAME``).
    """
    web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]  # not re-exported, but read from here


def serve(config: Config, source: str | None = None) -> None:
    """Run one server process until SIGINT/SIGTERM, then shut down gracefully (requests in
    flight get ``server.shutdown_timeout``); SIGHUP reloads the API keys from ``source`` (the
    config file); SIGUSR1 starts draining (``proxy/gates/drain.py``)."""
    setup_logging(config.log)  # text (control characters escaped) or one JSON object per line
    hide_server_version()
    uvloop = config.server.uvloop and install_uvloop()
    log.info(
        "serving on http://%s:%d, upstream %s%s",
        config.server.host, config.server.port, config.upstream.base_url, " (uvloop)" if uvloop else "",
    )
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the reload handler is in place
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # a worker: blocked since its spawn
    # A drain asked for before the handler is in place waits for it (drain_on_signal unblocks).
    signal.pthread_sigmask(signal.SIG_BLOCK, {DRAIN_SIGNAL})
    app = create_app(config)
    app.on_startup.append(reload_on_sighup(source))
    app.on_startup.append(drain_on_signal)
    app.on_startup.append(settle_heap)  # last: after every start-up hook has built its state
    web.run_app(
        app,
        host=config.server.host,
        port=config.server.port,
        reuse_port=config.server.workers > 1,
        handler_cancellation=True,
        # After SIGTERM: the listener closes, then requests in flight (streams) get this long.
        shutdown_timeout=config.server.shutdown_timeout,
        # The JSON access record is written by the observe middleware, with its fields.
        access_log=logging.getLogger("aiohttp.access") if config.log.access and not structured_access(config) else None,
        access_log_format=ACCESS_LOG_FORMAT,
        print=None,
    )


async def settle_heap(app: web.Application) -> None:
    """Once started: move what start-up built (modules, config, tables, pools) out of the cyclic
    collector's sight with ``gc.freeze`` (it lives as long as the process, and an old-generation
    collection would walk it again and again), and raise the young threshold (above)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def supervise(config: Config, source: str | None = None) -> int:
    """Run ``server.workers`` processes on one port (SO_REUSEPORT; the kernel spreads the
    connections) and stop them all together: a signal to the parent is passed to every worker,
    and one worker dying takes the others down so a supervisor can restart the whole set.
    SIGHUP is passed on too (every worker reloads its keys), and SIGUSR1 (every worker drains)."""
    # Before the workers start: they pick prometheus-client's multiprocess store at import.
    metrics_dir = MultiprocDir() if config.metrics.enabled else None
    try:
        return _run_workers(config, source, metrics_dir)
    finally:
        if metrics_dir is not None:
            metrics_dir.close()


def _run_workers(config: Config, source: str | None, metrics_dir: MultiprocDir | None) -> int:
    spawn = multiprocessing.get_context("spawn")
    # One batch-runner secret for every worker: a runner's loopback request may reach any of them.
    os.environ.setdefault(SECRET_ENV, secrets.token_urlsafe(32))
    workers = [spawn.Process(target=serve, args=(config, source), name=f"worker-{i}")
               for i in range(config.server.workers)]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                worker.terminate()  # SIGTERM: each worker shuts down gracefully

    def forward(signum: int, _frame: object) -> None:  # SIGHUP (reload keys), SIGUSR1 (drain)
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, forward)
    signal.signal(DRAIN_SIGNAL, forward)
    # A worker inherits the mask: a signal passed on before it can take it waits, instead of
    # ending it with the default action.
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        for worker in workers:
            worker.start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    status = 0

    pending = {worker.sentinel: worker for worker in workers}
    while pending:
        for sentinel in wait(list(pending)):
            worker = pending.pop(sentinel)  # type: ignore[arg-type]  # wait() returns what it was given
            worker.join()
            if metrics_dir is not None and worker.pid is not None:
                metrics_dir.worker_exited(worker.pid)
            if not stopping:
                print(f"ollama-openai-proxy: {worker.name} exited with {worker.exitcode}; stopping", file=sys.stderr)
                status = 1
                stop(signal.SIGTERM, None)
    return status


