"""Draining before a stop: SIGUSR1 turns ``/readyz`` to 503 ``draining`` while everything else
is still served, so a load balancer (or Kubernetes' ``preStop``) can take the process out of
rotation before SIGTERM closes its listener.

SIGTERM alone already stops gracefully (aiohttp closes the listener and idle connections, waits
``server.shutdown_timeout`` for requests in flight, then the store's last flush runs); what it
cannot do is keep accepting while the balancer still sends new connections, hence this step.
While draining every answer also says ``Connection: close``, so clients holding a keep-alive
connection open their next one elsewhere instead of racing the listener's close.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

__all__ = ["DRAIN", "DRAIN_SIGNAL", "Drain", "close_while_draining", "drain_on_signal"]

log = logging.getLogger("proxy")

DRAIN_SIGNAL = signal.SIGUSR1


class Drain:
    """One process's draining flag: set once, never cleared (a stop follows)."""

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = False

    def start(self) -> None:
        if not self.on:
            self.on = True
            log.info("draining: /readyz answers 503 and connections close after their answer")


DRAIN = web.AppKey("drain", Drain)


def close_while_draining(request: web.Request, response: web.StreamResponse) -> None:
    """A response hook (the pipeline's ``on_response_prepare``): ``Connection: close`` on every
    answer once draining."""
    if request.app[DRAIN].on:
        response.force_close()  # the server closes the connection after this answer
        response.headers["Connection"] = "close"  # the headers are already made: say it too


async def drain_on_signal(app: web.Application) -> None:
    """An ``on_startup`` hook: ``DRAIN_SIGNAL`` starts draining (instead of ending the process)."""
    asyncio.get_running_loop().add_signal_handler(DRAIN_SIGNAL, app[DRAIN].start)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {DRAIN_SIGNAL})  # one that came early is taken now
