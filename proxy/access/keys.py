"""API keys: the table built from ``[[auth.keys]]``, and how a request's key is found in it.

Only the SHA-256 of each key is configured. A presented key is hashed once and looked up by
its hash; the stored hash is then compared with ``hmac.compare_digest`` so nothing about a
near miss shows in the timing. A key is ``sk-`` + 32 random bytes in base64url (OpenAI's
prefix, so tools that sniff for ``sk-`` treat it as a secret). The key itself is never kept,
logged or sent on: what the rest of the proxy sees is the key's ``id`` (``Caller.key_id``)
and, in a refusal, the key masked as ``sk-ab…yz``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ..config import AuthConfig, KeyConfig, rfc3339_epoch
from ..errors import Unauthorized
from ..modelglob import Globs
from ..upstream.fairqueue import priority_index

__all__ = ["Key", "KeyTable", "Limits", "hash_key", "mask", "new_key", "presented_key"]

# OpenAI's words for a request without a key, so users find the fix they already know.
_MISSING = ("You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")


def new_key() -> str:
    """A fresh key: ``sk-`` + 32 random bytes, base64url without padding (43 characters)."""
    return "sk-" + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def hash_key(key: str) -> str:
    """What ``[[auth.keys]] sha256`` holds: the hex SHA-256 of the whole key."""
    return hashlib.sha256(key.encode()).hexdigest()


def mask(key: str) -> str:
    """The key as it may be shown: ``sk-ab…yz`` (too short to mask: only the ellipsis)."""
    return f"{key[:5]}…{key[-2:]}" if len(key) >= 12 else "…"


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries: ``Authorization: Bearer`` (the SDKs), ``x-api-key`` or ``api-key``."""
    auth = headers.get("Authorization")
    if auth is not None:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    return headers.get("x-api-key") or headers.get("api-key") or None


@dataclass(frozen=True, slots=True)
class Limits:
    """The rate limits one request is counted against: a bucket and its per-minute limits."""

    bucket: str  # "<key id>" or "<key id>|<model pattern>" (per-model limits count apart)
    rpm: int  # 0: no limit
    tpm: int

    @property
    def any(self) -> bool:
        return bool(self.rpm or self.tpm)


@dataclass(frozen=True, slots=True)
class Key:
    """One configured key, ready for per-request use (globs compiled, expiry as epoch seconds)."""

    id: str
    sha256: str
    role: str
    models: Globs  # empty: every model the proxy allows
    limits: Limits
    model_limits: tuple[tuple[Globs, Limits], ...]
    max_concurrent: int
    expires: float | None
    enabled: bool
    weight: float = 1.0  # fair queuing: share, default class, highest class (proxy/upstream/fairqueue.py)
    priority: int = 1
    max_priority: int = 1

    @classmethod
    def from_config(cls, k: KeyConfig) -> Key:
        per_model = tuple(
            (Globs([pattern]), Limits(f"{k.id}|{pattern}", k.rpm if m.rpm is None else m.rpm,
                                      k.tpm if m.tpm is None else m.tpm))
            for pattern, m in k.model_limits.items())
        expires = rfc3339_epoch(k.expires_at) if k.expires_at is not None else None
        return cls(k.id, k.sha256, k.role, Globs(k.models), Limits(k.id, k.rpm, k.tpm), per_model,
                   k.max_concurrent, expires, k.enabled, k.weight, priority_index(k.priority),
                   priority_index(k.max_priority))

    def allows(self, model: str) -> bool:
        """Whether this key may use ``model`` (the proxy's own gates apply besides)."""
        return not self.models or model in self.models

    def limits_for(self, model: str) -> Limits:
        """The first ``model_limits`` pattern matching ``model``, else the key's own limits."""
        for globs, limits in self.model_limits:
            if model in globs:
                return limits
        return self.limits

    @property
    def limited(self) -> bool:
        return self.limits.any or self.max_concurrent > 0 or any(lim.any for _, lim in self.model_limits)


class KeyTable:
    """Every configured key by hash; rebuilt whole on reload (a request keeps the key it found)."""

    def __init__(self, config: AuthConfig) -> None:
        self.by_hash = {k.sha256: Key.from_config(k) for k in config.keys}

    def __bool__(self) -> bool:
        return bool(self.by_hash)

    def __len__(self) -> int:
        return len(self.by_hash)

    def authenticate(self, presented: str | None, now: float | None = None) -> Key:
        """The key ``presented`` is, or ``Unauthorized`` saying why (the key shown masked)."""
        if presented is None:
            raise Unauthorized(_MISSING)
        digest = hash_key(presented)
        key = self.by_hash.get(digest)
        if key is None or not hmac.compare_digest(key.sha256, digest):
            raise Unauthorized(f"Incorrect API key provided: {mask(presented)}.")
        if not key.enabled:
            raise Unauthorized(f"The API key {mask(presented)} is disabled.")
        if key.expires is not None and (time.time() if now is None else now) >= key.expires:
            raise Unauthorized(f"The API key {mask(presented)} has expired.")
        return key
