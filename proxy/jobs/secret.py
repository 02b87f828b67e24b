"""How the batch runner's own requests are told apart: a header only this proxy can write.

The runner sends each line of a batch to its own app over loopback, so the line passes every
gate a live request does (validation, the key's models, rate limits, aliases, usage). The
header carries a random secret made when the process starts (shared with the workers of one
``--workers N`` supervisor through the environment, as a worker may receive another's request),
the batch id and the owner's key id; the access gate turns it into "the owner's key, class low"
and answers 401 to any other value. The secret never leaves the machine: the runner sends it
to loopback only, and nothing logs headers.
"""

from __future__ import annotations

import hmac
import os
import secrets

__all__ = ["BATCH_HEADER", "SECRET_ENV", "line_header", "process_secret", "read_line_header"]

BATCH_HEADER = "X-Proxy-Batch-Line"
SECRET_ENV = "OLLAMA_PROXY_BATCH_SECRET"
_OWN = secrets.token_urlsafe(32)


def process_secret() -> str:
    return os.environ.get(SECRET_ENV) or _OWN


def line_header(secret: str, batch_id: str, key_id: str) -> str:
    return f"{secret} {batch_id} {key_id}"


def read_line_header(value: str, secret: str) -> tuple[str, str] | None:
    """(batch id, owner key id) of a genuine header; None for anything else."""
    given, _, rest = value.partition(" ")
    batch_id, _, key_id = rest.partition(" ")
    if not batch_id or not key_id or not hmac.compare_digest(given.encode(), secret.encode()):
        return None
    return batch_id, key_id
