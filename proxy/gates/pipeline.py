"""The one gate pipeline: every request passes the same ordered chain, declared in one place.

A route is registered with its kind (``route(app, "POST", "/v1/x", handler, INFERENCE)``), and
the kind says what the route is: the access policy it is checked against (key, JSON body,
metered) and whether it takes a body. The gates themselves register by name (``add_gate``:
the app factory adds the core ones, ``observe/`` adds tracing and metrics when they are on) and
``ORDER`` puts them in sequence:

    errors    the error envelope and the request id          (``middleware.error_middleware``)
    tracing   the SERVER span                                 (``observe/tracing``, when on)
    observe   metrics and the access record                   (``observe/web``, when on)
    access    Origin/CORS preflight, Host, API key, type      (``access.gate.access_guard``)
    body      size, time, encoding, JSON shape                (``inbound.body_guard``)
    meter     the key's models and rate limits                (``access.gate.meter``)
    affinity  X-Session-Id for the pool                       (``pool.session_affinity``, sticky)

At start-up (and again when SIGHUP reloads the keys) each route's chain is composed once from
the gates its kind takes and the app needs, so a request pays one dictionary look-up and the
gates themselves, not one aiohttp layer each: ``pipeline`` is the app's only middleware and it
adds no frame of its own. Admission (the bound on requests at Ollama) is taken by the handlers
where they call Ollama, since a stream holds its slot until its last chunk.

The response hook is one too: ``respond`` runs the registered decorators (CORS and rate-limit
headers, ``X-Upstream``) in order on every answer, streams included, as its headers go out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from .body import expect_guard
from .policy import EMBEDDING, INFERENCE, JSON_ONLY, POLICIES, PUBLIC, READ, Policy

__all__ = ["EMBED", "GENERATE", "KEYED", "ORDER", "PASSTHROUGH", "PIPELINE", "PROBE", "STATIC", "UPDATE", "UPLOAD",
           "Gate", "Kind", "Pipeline", "add_gate", "add_hook", "chain_of", "declare", "install", "pipeline",
           "rebuild", "respond", "route", "undeclared"]

GateFn = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
Hook = Callable[[web.Request, web.StreamResponse], None]  # plain functions: no coroutine each

ORDER = ("errors", "tracing", "observe", "access", "body", "meter", "affinity", "aliases")


@dataclass(frozen=True, slots=True)
class Kind:
    """What a route is. ``policy`` None: chosen per request by path (the ``/api/*`` pass-through,
    whose one route relays Ollama's whole API)."""

    name: str
    policy: Policy | None
    body: bool = False  # takes a request body: "Expect: 100-continue" is answered by expect_guard

    def json(self) -> bool:
        """Whether requests of this kind may carry a JSON body that names a model."""
        return self.policy is None or self.policy.json


PROBE = Kind("probe", PUBLIC)  # orchestrators' probes: no key
KEYED = Kind("keyed", READ)  # reads and deletes: a key, no body
GENERATE = Kind("generate", INFERENCE, body=True)  # a JSON body, inference: metered
EMBED = Kind("embed", EMBEDDING, body=True)  # metered without answer tokens
UPDATE = Kind("update", JSON_ONLY, body=True)  # a JSON body that costs Ollama nothing
UPLOAD = Kind("upload", READ, body=True)  # a key and a body that is not JSON (multipart files)
STATIC = Kind("static", PUBLIC)  # the console's files: no data, no key
PASSTHROUGH = Kind("passthrough", None, body=True)  # Ollama's own API, per path (access/policy.py)


def _every(kind: Kind) -> bool:
    return True


def _always(app: web.Application) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Gate:
    """One gate: an aiohttp-style ``(request, handler)`` function, the kinds that take it and
    whether the app needs it at all (read at start-up and on reload, never per request)."""

    name: str
    run: GateFn
    takes: Callable[[Kind], bool] = _every
    needed: Callable[[web.Application], bool] = _always


@dataclass(slots=True)
class _Chain:
    handler: Handler  # the route's own handler, which the chain ends in
    names: tuple[str, ...]
    run: Handler


@dataclass(slots=True)
class Pipeline:
    """An app's gates, hooks, declared routes and the chains composed from them."""

    gates: dict[str, Gate] = field(default_factory=dict)
    hooks: list[Hook] = field(default_factory=list)
    kinds: dict[web.AbstractRoute, Kind] = field(default_factory=dict)
    chains: dict[web.AbstractRoute, _Chain] = field(default_factory=dict)


PIPELINE = web.AppKey("pipeline", Pipeline)


def install(app: web.Application) -> Pipeline:
    """The pipeline of ``app``: its one middleware, its one response hook, its start-up build."""
    line = Pipeline()
    app[PIPELINE] = line
    app[POLICIES] = {}
    app.middlewares.append(pipeline)
    app.on_response_prepare.append(respond)
    app.on_startup.append(_build)
    return line


def add_gate(app: web.Application, gate: Gate) -> None:
    if gate.name not in ORDER:
        raise ValueError(f"gate {gate.name!r} has no place in pipeline.ORDER")
    app[PIPELINE].gates[gate.name] = gate


def add_hook(app: web.Application, hook: Hook) -> None:
    """A response decorator, run in the order added."""
    app[PIPELINE].hooks.append(hook)


def route(app: web.Application, method: str, path: str, handler: Handler, kind: Kind,
          *, name: str | None = None) -> web.AbstractRoute:
    """Register ``method path`` (``GET`` also answers ``HEAD``, ``*`` any method) as a ``kind``."""
    expect = expect_guard if kind.body else None
    resource = app.router.add_resource(path, name=name)
    added = resource.add_route(method, handler, expect_handler=expect)
    declare(app, added, kind)
    if method == "GET":
        declare(app, resource.add_route("HEAD", handler), kind)
    return added


def declare(app: web.Application, added: web.AbstractRoute, kind: Kind) -> None:
    """Give a route registered elsewhere (the console's) its kind."""
    app[PIPELINE].kinds[added] = kind
    if kind.policy is not None:
        app[POLICIES][added] = kind.policy


def undeclared(app: web.Application) -> list[web.AbstractRoute]:
    """Routes that were added without a kind (``app.router.add_*`` instead of ``route``)."""
    kinds = app[PIPELINE].kinds
    return [r for r in app.router.routes() if r not in kinds]


def kind_of(app: web.Application, found: web.AbstractRoute | None) -> Kind:
    """A route's declared kind; an undeclared one (and an unknown URL) is gated by method, as
    ``access/policy.py`` does for any path."""
    kind = app[PIPELINE].kinds.get(found) if found is not None else None
    return kind if kind is not None else PASSTHROUGH


def chain_of(app: web.Application, kind: Kind) -> tuple[str, ...]:
    """The gates, in order, a request of ``kind`` passes in ``app`` as it is configured now."""
    gates = app[PIPELINE].gates
    return tuple(n for n in ORDER if (g := gates.get(n)) is not None and g.takes(kind) and g.needed(app))


def _bind(run: GateFn, handler: Handler) -> Handler:
    """``run`` with its next step fixed: calling it starts the gate's coroutine, no frame between."""
    return lambda request: run(request, handler)


def _compose(app: web.Application, names: Iterable[str], handler: Handler) -> Handler:
    for name in reversed(tuple(names)):
        handler = _bind(app[PIPELINE].gates[name].run, handler)
    return handler


def rebuild(app: web.Application) -> None:
    """Compose every route's chain for the app as it is now (start-up; SIGHUP's new keys)."""
    line = app[PIPELINE]
    chains: dict[web.AbstractRoute, _Chain] = {}
    for found in app.router.routes():
        names = chain_of(app, kind_of(app, found))
        chains[found] = _Chain(found.handler, names, _compose(app, names, found.handler))
    line.chains = chains  # swapped whole: a request in flight keeps the chain it started with


async def _build(app: web.Application) -> None:
    rebuild(app)


@web.middleware
def pipeline(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """The app's one middleware: the route's composed chain, started without a frame of its own.

    An unknown URL (its 404/405 comes from the chain's end), a route added after start-up, or
    another middleware inside this one get a chain composed for the request."""
    found = request.match_info.route
    chain = request.app[PIPELINE].chains.get(found)
    if chain is not None and chain.handler is handler:
        return chain.run(request)
    app = request.app
    return _compose(app, chain_of(app, kind_of(app, found)), handler)(request)


async def respond(request: web.Request, response: web.StreamResponse) -> None:
    """The app's one ``on_response_prepare`` hook: the decorators in the order added."""
    for hook in request.app[PIPELINE].hooks:
        hook(request, response)
