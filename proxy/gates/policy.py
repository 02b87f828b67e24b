"""Which gates a route passes: one table of exceptions, and a default by method.

Every route gets the Host and Origin checks. By default a route needs a key; a ``POST``
carries a JSON body (415 otherwise) that names a model, and is metered against the key's
limits. The table lists only what differs, so a route added later is gated by default. A route
registered with its kind (``pipeline.route``) has its policy in ``POLICIES``, read by
``policy_of`` without looking at the path; the table decides for the rest (the pass-through's
``/api/*``, an unknown URL, a route added without a kind).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

__all__ = ["EXCEPTIONS", "POLICIES", "Policy", "policy_for", "policy_of"]


@dataclass(frozen=True, slots=True)
class Policy:
    key: bool = True  # needs an API key (when keys are configured)
    json: bool = False  # a body must be declared JSON (415)
    metered: bool = False  # counted against the key's rpm / tpm / max_concurrent
    completion: bool = True  # reserves answer tokens besides the prompt (embeddings do not)


PUBLIC = Policy(key=False)  # probes: orchestrators carry no key
READ = Policy()
INFERENCE = Policy(json=True, metered=True)
EMBEDDING = Policy(json=True, metered=True, completion=False)
JSON_ONLY = Policy(json=True)  # a JSON body that costs Ollama no inference

EXCEPTIONS: dict[str, Policy] = {
    "/livez": PUBLIC,
    "/readyz": PUBLIC,
    "/v1/health": PUBLIC,
    "/v1/embeddings": EMBEDDING,
    "/v1/messages/count_tokens": EMBEDDING,  # a prompt evaluation: no answer tokens to reserve
    # Ollama's native API, when [passthrough] relays it
    "/api/embed": EMBEDDING,
    "/api/embeddings": EMBEDDING,
    "/api/show": JSON_ONLY,
}


# Routes known by name rather than path: the console's static files (its path is configurable)
# hold no data, and the page asks for a key itself when the API answers 401.
NAMED: dict[str, Policy] = {
    "console.file": PUBLIC,
    "console.redirect": PUBLIC,
}


def policy_for(method: str, path: str, route_name: str | None = None) -> Policy:
    found = EXCEPTIONS.get(path) or (NAMED.get(route_name) if route_name else None)
    if found is not None:
        return found
    if method == "POST":
        if path.startswith("/api/blobs/"):
            return READ  # blobs are binary uploads
        if path.startswith("/v1/chat/completions/"):
            return JSON_ONLY  # a stored completion's metadata: no inference
        if path == "/v1/files":
            return READ  # a multipart upload: no JSON, no inference
        if path == "/v1/batches" or path.startswith("/v1/batches/"):
            return JSON_ONLY  # create and cancel: its lines are metered one by one when they run
        return INFERENCE
    return READ


# Each declared route's policy, filled by ``pipeline.route`` as routes are registered.
POLICIES = web.AppKey("route_policies", dict[web.AbstractRoute, Policy])


def policy_of(request: web.Request) -> Policy:
    """The policy of the request's route: its declared one, else by method and path."""
    found = request.match_info.route
    try:
        policy = request.app[POLICIES].get(found)  # not app.get(): a Python-level ABC method
    except KeyError:  # an app without the pipeline
        policy = None
    return policy if policy is not None else policy_for(request.method, request.path, found.name)
