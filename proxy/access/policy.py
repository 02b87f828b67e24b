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
    # Ollama's native API, when [passthrough] relays it
    "/api/embed": EMBEDDING,
    "/api/embeddings": EMBEDDING,
    "/api/show": JSON_ONLY,
}


def policy_for(method: str, path: str) -> Policy:
    found = EXCEPTIONS.get(path)
    if found is not None:
        return found
    if method == "POST":
        return READ if path.startswith("/api/blobs/") else INFERENCE  # blobs are binary uploads
    return READ
