"""Probes for load balancers and orchestrators: readiness, liveness, and the probe's lifetime.

``GET``/``HEAD`` ``/v1/health`` and ``/readyz``: readiness, 200 while Ollama answers
``GET /api/version`` and 503 with the reason while it does not, from the shared ``HealthProbe``
(one upstream call per interval, however many probes). ``/livez``: liveness, 200 while this
process serves requests, never touching Ollama (a slow Ollama must not get the proxy
restarted). The bodies are bytes made once, so a probe costs almost nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from ..appkeys import CLIENT, CONFIG, PROBE, STORE_SERVICE
from ..gates.drain import DRAIN
from ..translate.keys import camelize
from ..upstream.pool import Pool
from ..upstream.probe import HealthProbe, ProbeResult, ollama_loaded, ollama_version

__all__ = ["PROBE_PATHS", "health_probe_ctx", "liveness", "readiness"]

# Paths that later auth and rate-limit middlewares let through untouched.
PROBE_PATHS = frozenset({"/v1/health", "/livez", "/readyz"})

_NO_STORE = {"Cache-Control": "no-store"}
_LIVE = b'{"status":"ok"}'


_DRAINING = b'{"status":"draining","reason":"This process is stopping; send requests elsewhere."}'


async def readiness(request: web.Request) -> web.Response:
    if request.app[DRAIN].on:  # before a stop (proxy/gates/drain.py): out of rotation, still serving
        return web.Response(status=503, body=_DRAINING, content_type="application/json", headers=_NO_STORE)
    result = await request.app[PROBE].check()
    body = result.body
    service = request.app.get(STORE_SERVICE)
    if service is not None:  # [store] on: what waits to be written and what was dropped
        status = service.status()
        if request.app[CONFIG].response.keys == "camel":
            status = camelize(status)
        body = orjson.dumps({**orjson.loads(body), "store": status})
    return web.Response(
        status=result.status, body=body, content_type="application/json", headers=_NO_STORE
    )


async def liveness(request: web.Request) -> web.Response:
    return web.Response(body=_LIVE, content_type="application/json", headers=_NO_STORE)


async def health_probe_ctx(app: web.Application) -> AsyncIterator[None]:
    """The shared probe for the app's life (after the Ollama client; closed before it)."""
    config = app[CONFIG]
    health = config.health
    pool = app[CLIENT]
    probe = PoolProbe(pool, camel=config.response.keys == "camel") if pool.single is None else HealthProbe(
        ollama_version(app[CLIENT], health.timeout),
        interval=health.interval,
        timeout=health.timeout,
        camel=config.response.keys == "camel",
        loaded=ollama_loaded(app[CLIENT], health.timeout),
    )
    app[PROBE] = probe
    yield
    await probe.close()


class PoolProbe(HealthProbe):
    """Readiness of a pool of servers, from what its background probes last saw.

    Ready (200) while at least one server answers ``/api/version``; the body lists every
    server: reachable, version, probe latency, whether it takes requests now (not ejected),
    requests in flight, and its loaded models with ``size_vram``/``size`` and ``expires_at``.
    No probe of the proxy calls Ollama: the pool probes each server on its own clock.
    """

    def __init__(self, pool: Pool, *, camel: bool) -> None:
        routing = pool.routing
        super().__init__(ollama_version(pool, routing.probe_timeout), interval=0,
                         timeout=routing.probe_timeout, camel=camel)
        self._pool = pool

    async def check(self) -> ProbeResult:
        pool = self._pool
        await pool.first_probes(pool.routing.probe_timeout + 1)  # at start-up only
        ready, servers = pool.report()
        body: dict[str, object] = {"status": "ok" if ready else "unavailable"}
        if not ready:
            body["reason"] = "No Ollama server of the pool answers."
        body["upstreams"] = servers
        raw = orjson.dumps(camelize(body) if self._camel else body)
        return ProbeResult(ready, 200 if ready else 503, raw, 0.0)
