"""Which server gets a request: pure candidate ranking, and the stickiness table.

The pool describes each server, as far as one model is concerned, as a ``Candidate``: whether it
may take requests now, whether it has the model (``None``: its inventory is not known yet),
how much of it is resident (from Ollama's ``/api/ps``), and how many of this proxy's requests
are in flight to it. ``rank`` orders them:

1. the model loaded fully in VRAM, then partly (or on the CPU), then not loaded but on disk,
   then servers whose inventory is not known yet;
2. within a tier, the fewest requests in flight per unit of ``weight``;
3. among exact ties, weighted round-robin by a turn counter the caller advances.

A model loaded on a busy server still beats an idle server that would have to load it: a
load costs seconds to minutes and may evict another model, an extra request in Ollama's
queue costs one generation. Servers at their ``max_concurrent`` are left out (the caller
waits for one to free up). Nothing here reads a clock or does I/O except through arguments.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

__all__ = ["Affinity", "Candidate", "Residency", "Tier", "affinity_key", "rank"]


class Tier:
    """Residency tiers, best first."""

    FULL = 0  # every byte of the model in VRAM
    PARTIAL = 1  # loaded, part of it (or all of it) in system RAM
    ON_DISK = 2  # pulled, not loaded: the first request pays the load
    UNKNOWN = 3  # the server's inventory has not been read yet


@dataclass(frozen=True, slots=True)
class Residency:
    """One loaded model, from an ``/api/ps`` entry."""

    name: str
    size: int
    size_vram: int
    expires_at: str | None = None

    @property
    def tier(self) -> int:
        return Tier.FULL if self.size > 0 and self.size_vram >= self.size else Tier.PARTIAL


class Candidate(NamedTuple):
    """One server as ``rank`` sees it, for one model (a tuple: built for every request)."""

    name: str
    tier: int  # a ``Tier``; a server that cannot serve the model is left out altogether
    in_flight: int = 0
    weight: int = 1
    full: bool = False  # at its max_concurrent


def rank(candidates: Sequence[Candidate], turn: int, preferred: str | None = None) -> list[str]:
    """Names of the servers to try, best first; the servers at their bound are left out.

    ``preferred`` (the sticky server) goes first when it is among them. ``turn`` picks which
    of the best exact ties leads, each tie taking ``weight`` turns in a cycle.
    """
    usable = sorted((c for c in candidates if not c.full), key=_order)
    if not usable:
        return []
    best = _order(usable[0])
    ties = 1
    while ties < len(usable) and _order(usable[ties]) == best:
        ties += 1
    if ties > 1:
        group = usable[:ties]
        if all(c.weight == 1 for c in group):
            lead = group[turn % ties]
        else:
            lead = [c for c in group for _ in range(c.weight)][turn % sum(c.weight for c in group)]
        usable.remove(lead)
        usable.insert(0, lead)
    names = [c.name for c in usable]
    if preferred is not None and preferred in names:
        names.remove(preferred)
        names.insert(0, preferred)
    return names


def _order(c: Candidate) -> tuple[int, float]:
    return c.tier, c.in_flight / c.weight


# ---------------------------------------------------------------------------------------------
# stickiness


def affinity_key(path: str, body: dict[str, Any] | None, session: str | None) -> str | None:
    """What ties a request to the server that served its conversation, or None.

    ``X-Session-Id`` when the client sends one; else, for a chat, the model and the messages up
    to and including the first user message: that prefix stays the same on every turn of one
    conversation (turn 2 resends turn 1), and it is what Ollama's prompt cache can reuse.
    """
    if session:
        return "s:" + hashlib.blake2b(session.encode(), digest_size=16).hexdigest()
    if body is None or path != "/api/chat":
        return None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    prefix = []
    for message in messages:
        prefix.append(message)
        if isinstance(message, dict) and message.get("role") == "user":
            break
    try:
        raw = orjson.dumps([body.get("model"), prefix])
    except orjson.JSONEncodeError:
        return None
    return "c:" + hashlib.blake2b(raw, digest_size=16).hexdigest()


class Affinity:
    """Key → the server that last served it: a bounded LRU whose entries expire when idle."""

    def __init__(self, max_entries: int, idle_ttl: float, clock: Callable[[], float]) -> None:
        self._max = max_entries
        self._ttl = idle_ttl
        self._clock = clock
        self._entries: collections.OrderedDict[str, tuple[str, float]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() - entry[1] > self._ttl:
            del self._entries[key]
            return None
        return entry[0]

    def put(self, key: str, server: str) -> None:
        self._entries[key] = (server, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
