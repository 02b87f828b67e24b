"""Model details from Ollama's ``/api/show``, fetched with a bound and cached by digest.

``/api/tags`` is cheap and lists every model with its digest; ``/api/show`` is one call per
model (Ollama reads the GGUF header for it). ``ModelCatalog`` keeps each model's ``ShowInfo``
under its digest, so a warm ``/v1/models`` costs one ``/api/tags`` call, and a model that was
re-pulled (new digest) is asked again. Cold calls run concurrently, at most
``show_concurrency`` at once; concurrent requests for the same digest share one call. A failed
call is not cached and leaves its model without details, never the listing without the model.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..config import ModelsConfig
from ..errors import ProxyError
from ..translate.openai.models import ShowInfo, find_tag, from_show, tag_entries
from .client import OllamaClient
from .pool import Pool

__all__ = ["ModelCatalog"]

log = logging.getLogger("proxy.models")


class ModelCatalog:
    """The models Ollama has, each with its (cached) ``/api/show`` details."""

    def __init__(self, client: OllamaClient | Pool, config: ModelsConfig) -> None:
        self._client = client
        self._timeout = config.show_timeout
        self._limit = asyncio.Semaphore(config.show_concurrency)
        self._cache: dict[str, ShowInfo] = {}
        self._inflight: dict[str, asyncio.Task[ShowInfo | None]] = {}

    async def tags(self) -> list[dict[str, Any]]:
        """Ollama's ``/api/tags`` entries (the caller's errors: unreachable, time-out…)."""
        return tag_entries(await self._client.request_json("GET", "/api/tags"))

    async def context_length(self, model: str) -> int | None:
        """``model``'s context length, or ``None`` when Ollama cannot tell (for ``num_ctx``)."""
        try:
            entry = find_tag(await self.tags(), model)
        except ProxyError as exc:
            log.info("/api/tags failed while checking num_ctx: %s", exc.log_text)
            return None
        info = await self.details(entry) if entry is not None else None
        return info.context_length if info is not None else None

    async def capabilities(self, model: str) -> tuple[str, ...] | None:
        """``model``'s capabilities (``thinking``, ``tools``…), or ``None`` when Ollama cannot tell."""
        try:
            entry = find_tag(await self.tags(), model)
        except ProxyError as exc:
            log.info("/api/tags failed while checking capabilities: %s", exc.log_text)
            return None
        info = await self.details(entry) if entry is not None else None
        return info.capabilities if info is not None else None

    async def with_details(
        self, entries: list[dict[str, Any]], *, prune: bool = False
    ) -> list[tuple[dict[str, Any], ShowInfo | None]]:
        """Each entry with its details, fetched concurrently where not cached.

        ``prune`` (for a full listing) forgets digests Ollama no longer lists, so the cache
        never outgrows the models on disk.
        """
        infos = await asyncio.gather(*(self.details(entry) for entry in entries))
        if prune:
            listed = {entry.get("digest") for entry in entries}
            for digest in [d for d in self._cache if d not in listed]:
                del self._cache[digest]
        return list(zip(entries, infos))

    async def details(self, entry: dict[str, Any]) -> ShowInfo | None:
        """One model's details: cached by digest, else one shared ``/api/show`` call."""
        name = entry.get("model") or entry.get("name")
        digest = entry.get("digest")
        if not isinstance(digest, str) or not digest:
            return await self._show(str(name))  # nothing to key a cache on
        cached = self._cache.get(digest)
        if cached is not None:
            return cached
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.create_task(self._show_and_cache(str(name), digest), name=f"show {name}")
            self._inflight[digest] = task
            task.add_done_callback(lambda done: self._forget(digest, done))
        # Shielded: one client going away must not cancel the call others (and the cache) await.
        return await asyncio.shield(task)

    def _forget(self, digest: str, task: asyncio.Task[ShowInfo | None]) -> None:
        if self._inflight.get(digest) is task:
            del self._inflight[digest]

    async def _show_and_cache(self, name: str, digest: str) -> ShowInfo | None:
        info = await self._show(name)
        if info is not None:
            self._cache[digest] = info
        return info

    async def _show(self, name: str) -> ShowInfo | None:
        async with self._limit:
            try:
                async with asyncio.timeout(self._timeout):
                    show = await self._client.request_json(
                        "POST", "/api/show", {"model": name}, first_byte=self._timeout
                    )
                return from_show(show)
            except TimeoutError:
                log.warning(
                    "/api/show %s: no answer within %g s; listed without details",
                    name,
                    self._timeout,
                )
            except ProxyError as exc:
                log.warning("/api/show %s failed: %s; listed without details", name, exc.message)
        return None

    async def close(self) -> None:
        """Cancel calls still in flight (on shutdown)."""
        tasks = list(self._inflight.values())
        self._inflight.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
