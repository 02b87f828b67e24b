"""``[models.aliases]``: the operator's names for Ollama's models, compiled once (pure).

``"<name or glob>" = "<ollama model>"``. A name without glob characters is exact and matched the
way Ollama matches names (``llama3`` is ``llama3:latest``, case-insensitively); a glob
(``"gpt-5*"``) is matched case-insensitively as written. Exact names win over globs; among
globs the first in the file wins. A target is never resolved again (no alias of an alias): a
target is used as written, and a target
a glob happens to match (``"qwen*" = "qwen3:8b"``) is simply Ollama's model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..modelglob import Globs, canonical

__all__ = ["Alias", "Aliases", "is_glob"]

_GLOB_CHARS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(pattern)


@dataclass(frozen=True, slots=True)
class Alias:
    """One entry of the table: the key as written and the Ollama model it names."""

    pattern: str
    target: str


class Aliases:
    """The compiled table; ``match`` is one dict lookup per name form, then the globs in order."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self._exact: dict[str, Alias] = {}
        globs: list[Alias] = []
        for pattern, target in table.items():
            alias = Alias(pattern, target)
            if is_glob(pattern):
                globs.append(alias)
            else:
                self._exact.setdefault(canonical(pattern), alias)
        self._globs = tuple(globs)
        self._compiled = Globs(a.pattern for a in globs)

    def __bool__(self) -> bool:
        return bool(self._exact or self._globs)

    def match(self, name: str) -> Alias | None:
        """The alias ``name`` is, or None (then it is Ollama's own name)."""
        hit = self._exact.get(canonical(name))
        if hit is not None:
            return hit
        if self._globs:
            i = self._compiled.first(name)
            if i is not None:
                return self._globs[i]
        return None

    def exact(self) -> tuple[Alias, ...]:
        """The exact aliases, in file order: the ones ``GET /v1/models`` can list by name."""
        return tuple(self._exact.values())
