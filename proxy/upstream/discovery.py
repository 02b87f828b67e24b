"""What each server has and has loaded: ``/api/tags`` and ``/api/ps``, read in the background.

Routing must never wait on an inventory call, so each server of a pool is read every
``discovery_interval`` seconds by its own task, and at once when the pool asks (right after a
request made it load a model, or after it came back). The parsers are pure: model names are
keyed in Ollama's canonical form (``llama3.2`` is ``llama3.2:latest``), so a request names a
model however Ollama would accept it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import ProxyError, UpstreamError
from ..modelglob import canonical
from ..translate.openai.models import model_id, tag_entries
from .routing import Residency

__all__ = ["Snapshot", "discovery_loop", "inventory", "residency"]

log = logging.getLogger("proxy.pool")

Snapshot = tuple[dict[str, str], dict[str, Residency]]  # inventory, residency


def inventory(tags: Any) -> dict[str, str]:
    """Canonical name → the name the server reports, from an ``/api/tags`` answer."""
    return {canonical(name): name for name in map(model_id, tag_entries(tags))}


def residency(ps: Any) -> dict[str, Residency]:
    """Canonical name → ``Residency``, from an ``/api/ps`` answer (malformed entries skipped)."""
    models = ps.get("models") if isinstance(ps, dict) else None
    if not isinstance(models, list):
        raise UpstreamError("Ollama sent a loaded-model list without 'models'.")
    out: dict[str, Residency] = {}
    for entry in models:
        if not isinstance(entry, dict):
            continue
        name = model_id(entry)
        size, vram = _count(entry.get("size")), _count(entry.get("size_vram"))
        if not name or size is None or vram is None:
            continue
        expires = entry.get("expires_at")
        out[canonical(name)] = Residency(name, size, vram, expires if isinstance(expires, str) else None)
    return out


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


Read = Callable[[], Awaitable[Snapshot]]


async def discovery_loop(read: Read, wake: asyncio.Event, *, interval: float, timeout: float,
                         on_result: Callable[[Snapshot | None], None]) -> None:
    """Read one server every ``interval`` (or when ``wake`` is set) until cancelled."""
    while True:
        wake.clear()
        snapshot: Snapshot | None = None
        try:
            async with asyncio.timeout(timeout):
                snapshot = await read()
        except (TimeoutError, ProxyError) as exc:
            log.debug("discovery failed: %s", exc)
        on_result(snapshot)
        try:
            async with asyncio.timeout(interval):
                await wake.wait()
        except TimeoutError:
            pass  # the regular poll
