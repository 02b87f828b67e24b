"""Who is asking: the caller a request was authenticated as, for every gate and account.

The access layer (API keys) sets it once per request, before any handler runs; everything
else (model lists, rate limits, usage, stored history, metrics labels) reads it through
``caller(request)``. With no keys configured every request is the anonymous caller: the proxy
then serves loopback only (protected mode), where the operator is the one asking, so it has
the admin role.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiohttp import web

__all__ = ["ANONYMOUS", "CALLER", "Caller", "caller"]

Role = Literal["user", "admin"]


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity a request acts as; ``key_id`` is safe to log and label (never the key)."""

    key_id: str
    role: Role = "user"
    authenticated: bool = False
    batch: bool = False  # a line of a batch, run by the proxy for this key (usage marks it)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


ANONYMOUS = Caller("anonymous", "admin", authenticated=False)
CALLER = web.RequestKey("caller", Caller)


def caller(request: web.Request) -> Caller:
    """The request's caller; the anonymous one until the access layer says otherwise."""
    found: Caller | None = request.get(CALLER)
    return ANONYMOUS if found is None else found
