"""The readiness check of Ollama, shared by every probe: one upstream call per interval.

Load balancers and orchestrators probe often and from many places at once. ``HealthProbe``
answers them all from one ``GET /api/version``: a result is kept for ``interval`` seconds, and
probes that arrive while the call is in flight await that same call (single flight) instead of
queueing behind a lock or starting their own. The call is bounded by ``timeout``, so no probe
waits longer than that. Each result carries its response body, serialised once, so a probe
costs no JSON work. The clock and the upstream call are passed in, so the sharing rules are
tested without a network or a sleep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import ProxyError
from ..translate.keys import camelize
from .client import OllamaClient
from .discovery import residency  # the pool's own parser of /api/ps
from .pool import Pool

__all__ = ["HealthProbe", "ProbeResult", "ollama_loaded", "ollama_version"]

log = logging.getLogger("proxy.health")

Fetch = Callable[[], Awaitable[str]]
Loaded = Callable[[], Awaitable[list[dict[str, Any]]]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class ProbeResult:
    """One upstream check: its HTTP status and the JSON body every probe gets until it expires."""

    ok: bool
    status: int
    body: bytes
    checked_at: float


class HealthProbe:
    """Ollama's readiness, checked at most once per ``interval`` and never twice at once."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        interval: float,
        timeout: float,
        camel: bool = False,
        clock: Clock = time.monotonic,
        loaded: Loaded | None = None,
    ) -> None:
        self._fetch = fetch
        self._loaded = loaded
        self._interval = interval
        self._timeout = timeout
        self._camel = camel
        self._clock = clock
        self._result: ProbeResult | None = None
        self._inflight: asyncio.Task[ProbeResult] | None = None
        self.upstream_calls = 0  # for tests and metrics: how often Ollama was asked

    async def check(self) -> ProbeResult:
        """The current result: the shared one while fresh, else the (one) call in flight."""
        result = self._result
        if result is not None and self._clock() - result.checked_at < self._interval:
            return result
        task = self._inflight
        if task is None:
            task = asyncio.create_task(self._run(), name="ollama-health-probe")
            self._inflight = task
            task.add_done_callback(self._finished)
        # Shielded: a probe whose client goes away must not cancel the call the others await.
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[ProbeResult]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled() and task.exception() is None:
            self._result = task.result()

    async def _run(self) -> ProbeResult:
        self.upstream_calls += 1
        started = self._clock()
        try:
            async with asyncio.timeout(self._timeout):
                version = await self._fetch()
        except TimeoutError:
            return self._unavailable(f"Ollama did not answer within {self._timeout:g} s.", started)
        except ProxyError as exc:
            return self._unavailable(exc.message, started)
        latency_ms = round((self._clock() - started) * 1000, 1)
        ollama: dict[str, Any] = {"reachable": True, "version": version, "latency_ms": latency_ms}
        if self._loaded is not None:
            ollama["loaded"] = await self._models_loaded()
        return ProbeResult(True, 200, self._dump({"status": "ok", "ollama": ollama}), self._clock())

    async def _models_loaded(self) -> list[dict[str, Any]] | None:
        """What Ollama has in memory (``/api/ps``), for people looking; readiness never waits
        on it: a failure or a slow answer leaves it out (``null``)."""
        assert self._loaded is not None
        try:
            async with asyncio.timeout(self._timeout):
                return await self._loaded()
        except (TimeoutError, ProxyError) as exc:
            log.info("health: Ollama's loaded models unknown: %s", getattr(exc, "message", "time-out"))
            return None

    def _unavailable(self, reason: str, started: float) -> ProbeResult:
        log.warning("readiness: ollama unavailable: %s", reason)
        latency_ms = round((self._clock() - started) * 1000, 1)
        body = {
            "status": "unavailable",
            "reason": reason,
            "ollama": {"reachable": False, "latency_ms": latency_ms},
        }
        return ProbeResult(False, 503, self._dump(body), self._clock())

    def _dump(self, body: dict[str, Any]) -> bytes:
        return orjson.dumps(camelize(body) if self._camel else body)

    async def close(self) -> None:
        """Cancel a call still in flight (on shutdown)."""
        task, self._inflight = self._inflight, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass  # the cancellation we asked for


def ollama_version(client: OllamaClient | Pool, timeout: float) -> Fetch:
    """The upstream check: Ollama's ``GET /api/version``, its ``version`` string."""

    async def fetch() -> str:
        data = await client.request_json("GET", "/api/version", first_byte=timeout)
        version = data.get("version") if isinstance(data, dict) else None
        return version if isinstance(version, str) else "unknown"

    return fetch


def ollama_loaded(client: OllamaClient | Pool, timeout: float) -> Loaded:
    """Ollama's ``GET /api/ps``: each loaded model with its size, share in VRAM and expiry."""
    async def fetch() -> list[dict[str, Any]]:
        data = await client.request_json("GET", "/api/ps", first_byte=timeout)
        return [{"model": r.name, "size": r.size, "size_vram": r.size_vram, "expires_at": r.expires_at}
                for r in residency(data).values()]

    return fetch
