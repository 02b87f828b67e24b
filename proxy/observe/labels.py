"""Bounded label values: what a metric may be labelled with, whatever a client sends.

Every distinct label value is a new time series in Prometheus, so no value a client chooses
may become one. A model is labelled by Ollama's canonical name only when Ollama lists it
(``/api/tags``, re-read every ``[metrics] model_refresh`` seconds and soon after a miss);
anything else is ``other``. An endpoint is the outcome's fixed name (``chat.completions``) or,
for a request that never reached Ollama, the name of the route it matched, derived the same
way from the route's pattern (never from the path sent). Upstream faults are one of a few kinds.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from ..modelglob import canonical

__all__ = [
    "NO_MODEL", "OTHER", "UNKNOWN_ROUTE", "UPSTREAM_KINDS", "ModelLabels", "endpoint_of", "route_name",
    "upstream_kind",
]

OTHER = "other"  # a model Ollama does not list
NO_MODEL = "none"  # a request that named no model, or failed before its model was known
UNKNOWN_ROUTE = "unknown"  # a path no route matched
_CACHE_MAX = 4096

# The proxy's error codes for upstream failures → the kind counted in upstream_errors_total.
_KIND_OF_CODE = {
    "upstream_unreachable": "refused",
    "upstream_timeout": "timeout",
    "upstream_busy": "5xx",
    "upstream_error": "5xx",  # an error status or body from Ollama, or its connection broke
    "upstream_malformed": "malformed",
    "mid_stream": "mid_stream",  # a stream that had started, ended by a fault
}
UPSTREAM_KINDS = tuple(dict.fromkeys(_KIND_OF_CODE.values()))


def upstream_kind(code: str | None) -> str | None:
    """The upstream fault kind of an error code, or None when Ollama is not at fault."""
    return None if code is None else _KIND_OF_CODE.get(code)


class ModelLabels:
    """The models Ollama has, as label values; every other name is ``other``.

    A name is known when Ollama lists it (``update``, from ``/api/tags`` every ``model_refresh``
    seconds) or has just served a request for it (``learn``): Ollama answered, so the model
    exists, and a model pulled a minute ago is labelled at once without the proxy asking Ollama
    for its list on the request path. Each ``update`` replaces the set, so removed models age
    out. ``label`` runs once per finished request: a dict hit for a name seen before.
    """

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._cache: dict[str, str] = {}  # the names clients used, for known models only

    def update(self, names: Iterable[str]) -> None:
        self._known = {canonical(name) for name in names}
        self._cache.clear()

    @property
    def known(self) -> frozenset[str]:
        return frozenset(self._known)

    def label(self, model: str) -> str:
        hit = self._cache.get(model)
        if hit is not None:
            return hit
        name = canonical(model)
        if name in self._known:
            if len(self._cache) < _CACHE_MAX:
                self._cache[model] = name
            return name
        return OTHER

    def learn(self, model: str) -> str:
        """Ollama served ``model``: it is one of its models from now on; its label."""
        if len(self._known) < _CACHE_MAX:
            self._known.add(canonical(model))
        return self.label(model)


_RENAMED = {"/api/{path}": "passthrough"}  # routes whose outcome name is not their path's


def endpoint_of(request: web.Request) -> str:
    """The endpoint label of a request's route: ``/v1/chat/completions`` → ``chat.completions``,
    ``/v1/models/{id}`` → ``models``, ``/readyz`` → ``readyz``; no match → ``unknown``."""
    info = request.match_info
    resource = info.route.resource
    if info.http_exception is not None or resource is None:
        return UNKNOWN_ROUTE
    return route_name(resource.canonical)


def route_name(pattern: str) -> str:
    """A route pattern's endpoint name, the way ``Outcome.endpoint`` names them."""
    renamed = _RENAMED.get(pattern)
    if renamed is not None:
        return renamed
    parts = [p for p in pattern.removeprefix("/v1/").split("/") if p and "{" not in p]
    return ".".join(parts) or UNKNOWN_ROUTE
