"""Per-server health, Envoy-style: active ``/api/version`` probes and passive ejection.

Passive (Envoy's outlier detection): every request the pool sends tells its server's ``Health``
how it went. ``eject_after`` consecutive failures (refused, reset, a 5xx or 503, a first-byte
time-out) eject the server for a back-off that doubles with each repeated ejection, from
``eject_base`` up to ``eject_max``; each success afterwards steps the multiplier back down.
A 4xx is never a failure: it is the client's fault, and the server answered. A server that
answers 503 at once looks idle (nothing stays in flight there), so without ejection it would
draw every request; with it, it draws ``eject_after`` of them and is then left alone.

Active: a probe per server every ``probe_interval`` (``GET /api/version``, bounded by
``probe_timeout``) marks it reachable or not. A server is eligible while it is reachable and
not ejected; when none is, the one that should recover first stays eligible (as Envoy's
panic threshold does), so the pool never refuses on its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ..config import RoutingConfig
from ..errors import ProxyError

__all__ = ["Health", "Policy", "eligible", "probe_loop"]

log = logging.getLogger("proxy.pool")


@dataclass(frozen=True, slots=True)
class Policy:
    """When to eject and for how long."""

    eject_after: int = 3
    base: float = 10.0
    max: float = 300.0

    @classmethod
    def of(cls, routing: RoutingConfig) -> Policy:
        return cls(routing.eject_after, routing.eject_base, routing.eject_max)

    def backoff(self, ejections: int) -> float:
        return float(min(self.max, self.base * 2 ** max(0, ejections - 1)))


@dataclass(slots=True)
class Health:
    """What is known of one server's health; every method takes the time from its caller."""

    reachable: bool | None = None  # None: not probed yet (counted as reachable)
    version: str | None = None
    latency_ms: float | None = None
    error: str | None = None  # why the last probe failed
    failures: int = 0  # consecutive request failures
    ejections: int = 0  # the back-off multiplier: ejections not yet made up for
    ejected_until: float = 0.0

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until

    def available(self, now: float) -> bool:
        return self.reachable is not False and not self.ejected(now)

    def success(self) -> None:
        self.failures = 0
        if self.ejections and self.ejected_until:
            self.ejections -= 1

    def failure(self, now: float, policy: Policy) -> bool:
        """Count a failed request; True when it ejects the server."""
        if self.ejected(now):
            return False  # requests that were already on their way: no second ejection
        self.failures += 1
        if self.failures < policy.eject_after:
            return False
        self.failures = 0
        self.ejections += 1
        self.ejected_until = now + policy.backoff(self.ejections)
        return True

    def probed(self, version: str | None, latency_ms: float, error: str | None = None) -> bool:
        """Record a probe's result; True when reachability changed."""
        reachable = error is None
        changed = self.reachable is not reachable
        self.reachable, self.latency_ms, self.error = reachable, latency_ms, error
        if reachable:
            self.version = version
        return changed


def eligible(healths: Sequence[Health], now: float) -> list[int]:
    """Indexes of the servers that may take requests; never empty while there is a server.

    With none available, the one to recover first stays: a reachable one before an
    unreachable one, then the earliest end of ejection.
    """
    ok = [i for i, h in enumerate(healths) if h.available(now)]
    if ok or not healths:
        return ok
    best = min(range(len(healths)),
               key=lambda i: (healths[i].reachable is False, healths[i].ejected_until))
    return [best]


Fetch = Callable[[], Awaitable[str]]


async def probe_loop(name: str, health: Health, fetch: Fetch, *, interval: float, timeout: float,
                     on_change: Callable[[bool], None]) -> None:
    """Probe one server every ``interval`` until cancelled; ``on_change(reachability_changed)``
    is called after each probe."""
    while True:
        started = time.monotonic()
        version: str | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(timeout):
                version = await fetch()
        except TimeoutError:
            error = f"no answer within {timeout:g} s"
        except ProxyError as exc:
            error = exc.message
        latency = round((time.monotonic() - started) * 1000, 1)
        changed = health.probed(version, latency, error)
        if changed and error is None:
            log.info("upstream %s: reachable", name)
        elif changed:
            log.warning("upstream %s: unreachable: %s", name, error)
        on_change(changed)
        await asyncio.sleep(interval)
