"""Which gates a route passes: one table of exceptions, and a default by method.

Every route gets the Host and Origin checks. By default a route needs a key; a ``POST``
carries a JSON body (415 otherwise) that names a model, and is metered against the key's
limits. The table lists only what differs, so a route added later is gated by default.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EXCEPTIONS", "Policy", "policy_for"]


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
    "/v1/files": READ,  # a multipart upload: no JSON, no inference
    "/v1/batches": JSON_ONLY,  # its lines are metered one by one when they run
}


# Routes known by name rather than path: the console's static files (its path is configurable)
# hold no data, and the page asks for a key itself when the API answers 401.
NAMED: dict[str, Policy] = {
    "console.file": PUBLIC,
    "console.redirect": PUBLIC,
    "batches.cancel": JSON_ONLY,
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
        return INFERENCE
    return READ
