"""The compiled aliases and defaults of one app, and what resolving one name gives (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelsConfig
from .aliases import Alias, Aliases
from .defaults import NO_DEFAULTS, Defaults, DefaultsTable

__all__ = ["ModelTable", "Resolved"]

_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Resolved:
    """One request's model: the name the client asked for and the Ollama model that serves it."""

    requested: str
    served: str
    alias: Alias | None = None  # the entry of [models.aliases] that matched, if any
    defaults: Defaults = NO_DEFAULTS

    @property
    def names(self) -> tuple[str, ...]:
        """Both names once (one when no alias applied): what a model gate or glob may name."""
        return (self.served,) if self.served == self.requested else (self.served, self.requested)


class ModelTable:
    """``[models]`` aliases and defaults, compiled at start and swapped whole on SIGHUP."""

    def __init__(self, config: ModelsConfig) -> None:
        self.reload(config)

    def reload(self, config: ModelsConfig) -> None:
        """Take the aliases and defaults of ``config``, swapped in one assignment; requests in
        flight keep the names they resolved."""
        self._state: tuple[Aliases, DefaultsTable, dict[str, Resolved]] = (
            Aliases(config.aliases), DefaultsTable(config.defaults), {})

    @property
    def aliases(self) -> Aliases:
        return self._state[0]

    def resolve(self, name: str) -> Resolved:
        """What ``name`` is: one dict hit for a name seen before (names come from clients, so
        the cache is bounded), else the aliases' match and the defaults' merge."""
        aliases, defaults, cache = self._state
        hit = cache.get(name)
        if hit is not None:
            return hit
        alias = aliases.match(name) if aliases else None
        served = name if alias is None else alias.target
        resolved = Resolved(name, served, alias, defaults.for_model(served, name))
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[name] = resolved
        return resolved
