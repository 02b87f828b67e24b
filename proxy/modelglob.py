"""Model-name glob patterns (``llama3*``, ``*:70b``), matched the way Ollama names models.

Ollama treats ``llama3``, ``llama3:latest``, ``LLaMA3`` and ``registry.ollama.ai/library/llama3``
as one model. A name is therefore tried in two forms, as sent (lower-cased) and in Ollama's
shortest canonical form, so ``denied_models = ["llama3:latest"]`` also stops ``llama3`` and
``registry.ollama.ai/library/llama3``. A pattern without glob characters names one model and is
canonicalised the same way (``"llama3"`` matches ``llama3:latest``); a pattern with glob
characters is used as written, case-insensitively.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

__all__ = ["Globs", "canonical", "name_forms"]

_DEFAULT_HOST = "registry.ollama.ai/"
_DEFAULT_NAMESPACE = "library/"
_GLOB_CHARS = frozenset("*?[")


def canonical(name: str) -> str:
    """Ollama's shortest form of a model name: default host and namespace dropped, tag added."""
    name = name.strip().lower().removeprefix(_DEFAULT_HOST)
    if name.count("/") == 1:
        name = name.removeprefix(_DEFAULT_NAMESPACE)
    last = name.rpartition("/")[2]
    if last and ":" not in last and "@" not in last:
        name += ":latest"
    return name


def name_forms(name: str) -> tuple[str, ...]:
    """The forms a pattern is tried against: the name as sent (lower-cased) and canonical."""
    raw = name.lower()
    short = canonical(name)
    return (raw,) if short == raw else (raw, short)


class Globs:
    """An ordered list of patterns, compiled once; matching never allocates per pattern."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._compiled = tuple(re.compile(fnmatch.translate(_pattern(p))) for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matching(self, name: str) -> list[int]:
        """Indexes of every pattern that matches ``name``, in order."""
        forms = name_forms(name)
        return [i for i, rx in enumerate(self._compiled) if any(rx.match(f) for f in forms)]

    def first(self, name: str) -> int | None:
        """Index of the first pattern that matches ``name``."""
        forms = name_forms(name)
        for i, rx in enumerate(self._compiled):
            if any(rx.match(f) for f in forms):
                return i
        return None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.first(name) is not None


def _pattern(pattern: str) -> str:
    if _GLOB_CHARS.isdisjoint(pattern):
        return canonical(pattern)
    return pattern.strip().lower()
