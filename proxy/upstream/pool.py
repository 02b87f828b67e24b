"""The pool of Ollama servers, a drop-in for one ``OllamaClient``.

``Pool`` has the methods the handlers call on a client (``open``, ``send``, ``request_json``,
``idle_timer``, ``close``) and picks a server for each call by the model it names (the body's
``model``, or ``name`` for ``/api/show``). Each server keeps its own ``OllamaClient``.

A pool of one server is today's proxy: every call goes straight to its client, with no
background calls and no per-request bookkeeping. With two or more, each call is ranked
(``routing.rank``) over the servers that may serve it, counted in flight (+1 when sent, -1 in
``finally`` however it ends), and failed over: a refused or reset connection, a connect
time-out, or a 5xx/503 before the answer started goes to the next candidate, at most
``max_failovers`` more. Once the answer's head is in, the call is the client's: a fault in a
stream ends it with the SSE error frame (``handlers/common.py``), never a silent re-send.

Which server answered is told to the response through a context variable: aiohttp runs every
request in a task of its own with a copy of the context (aiohttp#3406), so what the pool sets
while the handler runs is seen by ``expose_upstream`` when the response is prepared (for a
stream that is when its headers go out), and by no other request.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from ..config import Config, UpstreamServer, pool_servers
from ..errors import ModelNotFound, ProxyError, RateLimited, UpstreamError, UpstreamTimeout
from ..modelglob import Globs, canonical
from ..translate.openai.models import model_id
from .client import Call, IdleTimer, OllamaClient
from .discovery import Snapshot, discovery_loop, inventory, residency
from .health import Health, Policy, eligible, probe_loop
from .routing import Affinity, Candidate, Residency, Tier, affinity_key, rank

__all__ = ["SERVED_BY", "Pool", "PoolCall", "Server", "expose_upstream", "session_affinity"]

log = logging.getLogger("proxy.pool")

SERVED_BY: contextvars.ContextVar[str | None] = contextvars.ContextVar("served_by", default=None)
SESSION: contextvars.ContextVar[str | None] = contextvars.ContextVar("session_id", default=None)
UPSTREAM_HEADER = "X-Upstream"
SESSION_HEADER = "X-Session-Id"
CODEX_SESSION_HEADER = "session-id"  # what Codex sends on every request of one session


class Server:
    """One Ollama server of the pool: its client and what is known of it."""

    def __init__(self, spec: UpstreamServer, client: OllamaClient) -> None:
        self.spec = spec
        self.name = spec.name
        self.client = client
        self.globs = Globs(spec.models) if spec.models else None
        self.in_flight = 0
        self.health = Health()
        self.models: dict[str, str] | None = None  # canonical → reported name; None: not read yet
        self.loaded: dict[str, Residency] = {}
        self.wake = asyncio.Event()  # read /api/tags and /api/ps now

    def tier(self, key: str) -> int | None:
        """This server's ``Tier`` for the model ``key`` (canonical); None: it cannot serve it."""
        if self.globs is not None and key not in self.globs:
            return None
        loaded = self.loaded.get(key)
        if loaded is not None:
            return loaded.tier
        if self.models is None:
            return Tier.UNKNOWN
        return Tier.ON_DISK if key in self.models else None

    @property
    def full(self) -> bool:
        return bool(self.spec.max_concurrent) and self.in_flight >= self.spec.max_concurrent


class Pool:
    """Several Ollama servers behind one client interface (see the module docstring)."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic,
                 trace_configs: list[aiohttp.TraceConfig] | None = None) -> None:
        upstream = config.upstream
        self.servers = [Server(spec, OllamaClient(dataclasses.replace(upstream, base_url=spec.base_url),
                                                trace_configs=trace_configs))
                        for spec in pool_servers(config)]
        self.by_name = {s.name: s for s in self.servers}
        self.single = self.servers[0] if len(self.servers) == 1 else None
        self.config = self.servers[0].client.config  # as OllamaClient.config: time-outs, limits
        self.routing = config.routing
        self.policy = Policy.of(config.routing)
        self._admission = config.admission
        self._clock = clock
        self._turn = 0
        self._canonical: dict[str, str] = {}
        self._affinity = (Affinity(config.routing.sticky_max_entries, config.routing.sticky_idle_ttl, clock)
                          if config.routing.sticky else None)
        self._changed = asyncio.Event()
        self._freed = asyncio.Event()
        self._probed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------------- life
    @property
    def session(self) -> aiohttp.ClientSession:
        """The first server's connection pool (with one server: the only one)."""
        return self.servers[0].client.session

    def start(self) -> None:
        """Watch every server (two or more); one server is not watched."""
        if self.single is not None or self._tasks:
            return
        routing = self.routing
        for server in self.servers:
            self._tasks.append(asyncio.create_task(probe_loop(
                server.name, server.health, _version_of(server.client, routing.probe_timeout),
                interval=routing.probe_interval, timeout=routing.probe_timeout,
                on_change=lambda changed, s=server: self._probe_done(s, changed),  # type: ignore[misc]
            ), name=f"probe {server.name}"))
            self._tasks.append(asyncio.create_task(discovery_loop(
                _reader(server.client, routing.discovery_timeout), server.wake,
                interval=routing.discovery_interval, timeout=routing.discovery_timeout,
                on_result=lambda snapshot, s=server: self._discovered(s, snapshot),  # type: ignore[misc]
            ), name=f"discovery {server.name}"))

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(s.client.close() for s in self.servers))

    def _probe_done(self, server: Server, changed: bool) -> None:
        if changed and server.health.reachable:
            server.wake.set()  # back (or first seen): read what it has now
        if all(s.health.reachable is not None for s in self.servers):
            self._probed.set()
        self._notify()

    def _discovered(self, server: Server, snapshot: Snapshot | None) -> None:
        if snapshot is not None:
            server.models, server.loaded = snapshot
        self._notify()

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Until ``predicate()`` holds, re-checked after every probe and discovery (for tests
        and start-up); ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    async def first_probes(self, timeout: float) -> None:
        """Until every server was probed once (at most ``timeout`` seconds)."""
        if self.single is None and not self._probed.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self._probed.wait()
            except TimeoutError:
                pass

    # ---------------------------------------------------------------- the client interface
    def open(self, method: str, path: str, body: dict[str, Any] | None = None,
             *, first_byte: float | None = None) -> Call | PoolCall:
        """As ``OllamaClient.open``, on the server chosen for ``body``'s model."""
        if self.single is not None:
            SERVED_BY.set(self.single.name)
            return self.single.client.open(method, path, body, first_byte=first_byte)
        return PoolCall(self, method, path, body, None, None, first_byte, True, check=True)

    def send(self, method: str, path: str, *, data: bytes | None = None, headers: dict[str, str] | None = None,
             first_byte: float | None = None, auto_decompress: bool = True, encoded: bool = False) -> Call | PoolCall:
        """As ``OllamaClient.send`` (the pass-through), on the server chosen for the model in ``data``.
        ``encoded``: ``path`` is canonical and escaped already, sent exactly as it is."""
        if self.single is not None:
            SERVED_BY.set(self.single.name)
            return self.single.client.send(method, path, data=data, headers=headers, first_byte=first_byte,
                                           auto_decompress=auto_decompress, encoded=encoded)
        return PoolCall(self, method, path, None, data, headers, first_byte, auto_decompress, check=False,
                        encoded=encoded)

    async def error_text(self, response: aiohttp.ClientResponse) -> str:
        """Ollama's ``{"error": ...}`` message of ``response`` (any server's client reads it alike)."""
        return await self.servers[0].client.error_text(response)

    async def request_json(self, method: str, path: str, body: dict[str, Any] | None = None,
                           *, first_byte: float | None = None) -> Any:
        """As ``OllamaClient.request_json``. With a pool, ``GET /api/tags`` is the union of the
        servers' models, each once, and a call naming a model goes to a server that has it."""
        single = self.single
        if single is not None:
            SERVED_BY.set(single.name)
            return await single.client.request_json(method, path, body, first_byte=first_byte)
        if method == "GET" and path == "/api/tags":
            return await self._tags_union()
        model = _model_in(path, body)
        key = self._affinity_key(path, body)
        loop = asyncio.get_running_loop()
        limit = first_byte if first_byte is not None else self.config.timeouts.first_byte
        last: ProxyError | None = None
        servers, wanted = await self._choose(model, key)
        for server in servers:
            loads = self._dispatch(server, wanted)
            started = loop.time()
            try:
                data = await server.client.request_json(method, path, body, first_byte=first_byte)
            except ProxyError as exc:
                if not self._judge(server, exc, loop.time() - started, limit):
                    raise
                last = exc
                continue
            finally:
                self._release(server)
            self._served(server, loads, key)
            return data
        assert last is not None  # _choose never returns an empty list
        raise last

    def idle_timer(self) -> IdleTimer:
        return IdleTimer(self.config.timeouts.idle)

    # ------------------------------------------------------------------------ routing
    def _affinity_key(self, path: str, body: dict[str, Any] | None) -> str | None:
        if self._affinity is None:
            return None
        return affinity_key(path, body, SESSION.get())

    def _key(self, model: str | None) -> str | None:
        """``model`` in canonical form, remembered (a client sends few distinct names)."""
        if model is None:
            return None
        key = self._canonical.get(model)
        if key is None:
            if len(self._canonical) >= 4096:
                self._canonical.clear()
            key = self._canonical[model] = canonical(model)
        return key

    def _rank(self, wanted: str | None, key: str | None) -> tuple[list[Server], bool, bool]:
        """The servers to try (at most 1 + max_failovers), whether some were left out for
        being at their bound, and whether any server has the model at all."""
        now = self._clock()
        serving: list[tuple[Server, int]] = []
        usable: list[tuple[Server, int]] = []
        for s in self.servers:
            tier = s.tier(wanted) if wanted is not None else Tier.ON_DISK
            if tier is not None:
                serving.append((s, tier))
                health = s.health
                if health.reachable is not False and now >= health.ejected_until:  # Health.available
                    usable.append((s, tier))
        if not serving:
            return [], False, False
        if not usable:  # every server with the model is out: the one due back first stays
            usable = [serving[i] for i in eligible([s.health for s, _ in serving], now)]
        candidates = [Candidate(s.name, t, s.in_flight, s.spec.weight, s.full) for s, t in usable]
        preferred = self._affinity.get(key) if self._affinity is not None and key else None
        self._turn += 1
        names = rank(candidates, self._turn, preferred)[: 1 + self.routing.max_failovers]
        if names:
            return [self.by_name[n] for n in names], False, True
        return [], any(c.full for c in candidates), True

    async def _choose(self, model: str | None, key: str | None) -> tuple[list[Server], str | None]:
        """The servers to try for ``model`` and its canonical name; waits (bounded) while all
        that have it are at their bound."""
        wanted = self._key(model)
        servers, full, known = self._rank(wanted, key)
        if servers:
            return servers, wanted
        if not known:
            raise ModelNotFound(f"The model '{model}' does not exist.", param="model")
        admission = self._admission
        try:
            async with asyncio.timeout(admission.queue_timeout):
                while not servers:
                    await self._freed.wait()
                    servers, full, known = self._rank(wanted, key)
                    if not servers and not full:
                        raise ModelNotFound(f"The model '{model}' does not exist.", param="model")
        except TimeoutError:
            raise RateLimited(
                f"Every server with the model is at its max_concurrent and none freed up within "
                f"{admission.queue_timeout:g} s; retry after the indicated time.",
                retry_after=admission.retry_after) from None
        return servers, wanted

    def _dispatch(self, server: Server, wanted: str | None) -> bool:
        """Count the request in flight; True when it will make the server load the model."""
        server.in_flight += 1
        SERVED_BY.set(server.name)
        return wanted is not None and wanted not in server.loaded

    def _release(self, server: Server) -> None:
        server.in_flight -= 1
        if server.spec.max_concurrent:
            event, self._freed = self._freed, asyncio.Event()
            event.set()

    def _served(self, server: Server, loads: bool, key: str | None) -> None:
        health = server.health
        if health.failures or health.ejections:
            health.success()
        if loads:
            server.wake.set()  # the model is loaded now: read /api/ps instead of waiting
        if key is not None and self._affinity is not None:
            self._affinity.put(key, server.name)

    def _judge(self, server: Server, exc: ProxyError, elapsed: float, first_byte: float) -> bool:
        """Whether to try the next server after ``exc``; counts the server's failures."""
        if isinstance(exc, ModelNotFound):
            server.wake.set()  # what it has changed since it was last read
            return True
        if exc.status < 500 or not isinstance(exc, UpstreamError):
            return False  # the client's fault (never ejects), or the proxy's own refusal
        self._failed(server)
        # The first-byte deadline fires at ``first_byte`` seconds; a time-out before it can only
        # be the connect time-out, which is worth another server. A slow model is not.
        moves_on = not isinstance(exc, UpstreamTimeout) or elapsed < first_byte
        if moves_on:
            log.info("upstream %s failed before answering (%s); trying the next server", server.name, exc.message)
        return moves_on

    def _failed(self, server: Server) -> None:
        if server.health.failure(self._clock(), self.policy):
            log.warning("upstream %s ejected for %g s after %d consecutive failures", server.name,
                        self.policy.backoff(server.health.ejections), self.policy.eject_after)
            self._notify()

    async def _tags_union(self) -> dict[str, Any]:
        """Every server's ``/api/tags``, merged: each model once (the first server's entry)."""
        # Every server that answers its probe, ejected or not: ejection is about traffic, and
        # a model whose only server is ejected is still routed to it (the one due back first).
        servers = [s for s in self.servers if s.health.reachable is not False] or self.servers
        results = await asyncio.gather(*(s.client.request_json("GET", "/api/tags") for s in servers),
                                       return_exceptions=True)
        merged: dict[str, dict[str, Any]] = {}
        errors: list[ProxyError] = []
        for server, result in zip(servers, results):
            if isinstance(result, ProxyError):
                errors.append(result)
                continue
            if isinstance(result, BaseException):
                raise result
            try:
                server.models = inventory(result)
            except ProxyError as exc:
                errors.append(exc)
                continue
            for entry in result["models"]:
                name = model_id(entry) if isinstance(entry, dict) else ""
                if name and server.tier(canonical(name)) is not None:
                    merged.setdefault(canonical(name), entry)
        if errors and len(errors) == len(servers):
            raise errors[0]
        return {"models": list(merged.values())}

    # --------------------------------------------------------------------- reporting
    def placement(self, model: str) -> dict[str, list[str]] | None:
        """Which servers have ``model`` and which have it loaded (None for a single server)."""
        if self.single is not None:
            return None
        key = canonical(model)
        return {
            "available": [s.name for s in self.servers if s.tier(key) not in (None, Tier.UNKNOWN)],
            "loaded": [s.name for s in self.servers if key in s.loaded and s.tier(key) is not None],
        }

    def report(self) -> tuple[bool, list[dict[str, Any]]]:
        """Whether any server is reachable, and every server's state for ``/v1/health``."""
        now = self._clock()
        chosen = set(eligible([s.health for s in self.servers], now))
        out = []
        for i, s in enumerate(self.servers):
            h = s.health
            out.append({
                "name": s.name,
                "reachable": h.reachable,
                "eligible": i in chosen,
                "version": h.version,
                "latency_ms": h.latency_ms,
                "error": h.error,
                "in_flight": s.in_flight,
                "consecutive_failures": h.failures,
                "ejected_for_s": round(h.ejected_until - now, 3) if h.ejected(now) else None,
                "models": None if s.models is None else len(s.models),
                "loaded": [{"model": r.name, "size": r.size, "size_vram": r.size_vram, "expires_at": r.expires_at}
                           for r in s.loaded.values()],
            })
        return any(s.health.reachable for s in self.servers), out


class PoolCall:
    """``async with``: the chosen server's response (as ``OllamaClient.open``/``send``), failed
    over before the answer started; the request stays counted in flight until the exit."""

    __slots__ = ("_auto_decompress", "_body", "_call", "_check", "_data", "_encoded", "_first_byte",
                 "_headers", "_method", "_path", "_pool", "_server")

    def __init__(self, pool: Pool, method: str, path: str, body: dict[str, Any] | None, data: bytes | None,
                 headers: dict[str, str] | None, first_byte: float | None, auto_decompress: bool,
                 *, check: bool, encoded: bool = False) -> None:
        self._pool, self._method, self._path = pool, method, path
        self._encoded = encoded
        self._body, self._data, self._headers = body, data, headers
        self._first_byte, self._auto_decompress, self._check = first_byte, auto_decompress, check
        self._call: Call | None = None
        self._server: Server | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        pool, body = self._pool, self._body
        model = _model_in(self._path, body) if self._check else _model_in_bytes(self._path, self._data)
        key = pool._affinity_key(self._path, body)
        loop = asyncio.get_running_loop()
        limit = self._first_byte if self._first_byte is not None else pool.config.timeouts.first_byte
        servers, wanted = await pool._choose(model, key)
        last: ProxyError | None = None
        for i, server in enumerate(servers):
            loads = pool._dispatch(server, wanted)
            client = server.client
            call = (client.open(self._method, self._path, body, first_byte=self._first_byte) if self._check else
                    client.send(self._method, self._path, data=self._data, headers=self._headers,
                                first_byte=self._first_byte, auto_decompress=self._auto_decompress,
                                encoded=self._encoded))
            started = loop.time()
            try:
                response = await call.__aenter__()
            except ProxyError as exc:
                pool._release(server)
                if not pool._judge(server, exc, loop.time() - started, limit):
                    raise
                last = exc
                continue
            except BaseException:
                pool._release(server)
                raise
            if response.status >= 500:  # only unchecked calls (the pass-through) get here
                pool._failed(server)
                if i + 1 < len(servers):
                    await call.__aexit__(None, None, None)
                    pool._release(server)
                    continue
            else:
                pool._served(server, loads, key)
            self._call, self._server = call, server
            self._body = self._data = None  # sent: not held for the life of a stream
            return response
        assert last is not None
        raise last

    async def __aexit__(self, *exc_info: object) -> None:
        call, server = self._call, self._server
        if call is None or server is None:
            return
        self._call = self._server = None
        try:
            await call.__aexit__(*exc_info)
        finally:
            self._pool._release(server)


def _model_in(path: str, body: dict[str, Any] | None) -> str | None:
    """The model a call to Ollama names: ``model``, or ``name`` (``/api/show``'s older field)."""
    if body is None:
        return None
    model = body.get("model")
    if model is None and path == "/api/show":
        model = body.get("name")
    return model if isinstance(model, str) and model else None


def _model_in_bytes(path: str, data: bytes | None) -> str | None:
    """The model a pass-through body names, if it is a JSON object naming one."""
    if not data or (b'"model"' not in data and b'"name"' not in data):
        return None
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None  # not ours to judge: Ollama answers it in its own words
    return _model_in(path.partition("?")[0], body) if isinstance(body, dict) else None


def _version_of(client: OllamaClient, timeout: float) -> Callable[[], Any]:
    async def fetch() -> str:
        data = await client.request_json("GET", "/api/version", first_byte=timeout)
        version = data.get("version") if isinstance(data, dict) else None
        return version if isinstance(version, str) else "unknown"

    return fetch


def _reader(client: OllamaClient, timeout: float) -> Callable[[], Any]:
    async def read() -> Snapshot:
        tags, ps = await asyncio.gather(client.request_json("GET", "/api/tags", first_byte=timeout),
                                        client.request_json("GET", "/api/ps", first_byte=timeout))
        return inventory(tags), residency(ps)

    return read


def expose_upstream(config: Config) -> Callable[[web.Request, web.StreamResponse], None]:
    """A response hook (the pipeline's ``on_response_prepare``; ``routing.expose_upstream``): name
    the server that answered, in ``X-Upstream``, by the ``name`` the operator gave it. A server
    without one is named by its ``host:port`` inside the proxy (logs, ``/v1/health``), which no
    answer header carries."""
    named = frozenset(server.name for server in config.upstreams if server.name)

    def hook(request: web.Request, response: web.StreamResponse) -> None:
        name = SERVED_BY.get()
        if name is not None and name in named:
            response.headers[UPSTREAM_HEADER] = name

    return hook


@web.middleware
async def session_affinity(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With ``[routing] sticky``: the client's ``X-Session-Id`` (or Codex's ``session-id``) for
    the pool to key on."""
    session = request.headers.get(SESSION_HEADER) or request.headers.get(CODEX_SESSION_HEADER)
    if session:
        SESSION.set(session[:256])
    return await handler(request)
