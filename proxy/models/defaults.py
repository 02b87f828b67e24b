"""``[models.defaults."<glob>"]``: what the proxy adds to Ollama's request when the client did
not send it (pure).

Every table whose glob matches the model (the served name, or the name the client asked for)
applies, in file order, a later table's key over an earlier one's, as ``[limits.models]`` do.
The client's own value always wins: a default only fills what the request left out. Defaults
are checked against ``[limits]`` when the config loads (``config.check_defaults_within_limits``);
a ``[limits.models]`` table for another pattern may still hold a model to less, so ``fill``
holds each default to the limits in force for the request as well (a default is never a 400).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import ModelDefaults
from ..durations import parse_duration
from ..modelglob import Globs
from .limits import Limits

__all__ = ["NO_DEFAULTS", "Defaults", "DefaultsTable"]

_CACHE_SIZE = 1024  # model names come from clients: the per-name cache stays bounded
_RANGES = ("temperature", "top_p", "frequency_penalty", "presence_penalty")


@dataclass(frozen=True, slots=True)
class Defaults:
    """The merged defaults for one model."""

    options: Mapping[str, Any] = field(default_factory=dict)
    keep_alive: float | str | None = None
    think: bool | str | None = None
    max_tokens: int | None = None
    system: str | None = None

    def __bool__(self) -> bool:
        return bool(self.options) or any(v is not None for v in (self.keep_alive, self.think, self.max_tokens,
                                                                 self.system))

    @property
    def wants_context_length(self) -> bool:
        """``num_ctx = "max"``: the model's own context length, from ``/api/show``."""
        return self.options.get("num_ctx") == "max"

    def fill(self, body: dict[str, Any], limits: Limits, context_length: int | None = None) -> dict[str, Any]:
        """Ollama's request ``body`` with these defaults where it has no value of its own.

        A new dict when anything is added (the caller's is not changed); ``body`` itself when not.
        ``context_length`` is the model's, for ``num_ctx = "max"`` (left out when unknown).
        """
        if not self:
            return body
        generating = "messages" in body or "prompt" in body  # not an embedding: a budget, think, system
        out = dict(body)
        options = out.get("options")
        options = dict(options) if isinstance(options, dict) else {}
        for name, value in self.options.items():
            if name not in options:
                value = _bounded(name, value, limits, context_length)
                if value is not None:
                    options[name] = list(value) if isinstance(value, tuple) else value
        if generating and self.max_tokens is not None and "num_predict" not in options:
            cap = limits["max_tokens"]
            options["num_predict"] = min(self.max_tokens, cap) if cap else self.max_tokens
        if options:
            out["options"] = options
        if self.keep_alive is not None and "keep_alive" not in out:
            seconds = parse_duration(self.keep_alive)
            out["keep_alive"] = self.keep_alive if seconds is None or seconds <= limits["max_keep_alive"] \
                else limits["max_keep_alive"]
        if generating and self.think is not None and "think" not in out:
            out["think"] = self.think
        if generating and self.system is not None:
            _add_system(out, self.system)
        return out


NO_DEFAULTS = Defaults()


def _bounded(name: str, value: Any, limits: Limits, context_length: int | None) -> Any:
    """A default option held to the request's limits (None: left out)."""
    if name == "num_ctx":
        if value == "max":
            value = context_length
        cap = limits["max_num_ctx"]
        return min(value, cap) if value is not None and cap else value
    if name == "num_predict" and isinstance(value, int) and limits["max_tokens"]:
        return min(value, limits["max_tokens"])
    if name in _RANGES and isinstance(value, int | float) and not isinstance(value, bool):
        low, high = limits[name]
        return min(max(value, low), high)
    return value


def _add_system(body: dict[str, Any], system: str) -> None:
    """The operator's system prompt, when the client sent none: the first message of a chat,
    ``system`` of a generate request."""
    messages = body.get("messages")
    if isinstance(messages, list):
        if not any(isinstance(m, dict) and m.get("role") == "system" for m in messages):
            body["messages"] = [{"role": "system", "content": system}, *messages]
    elif "prompt" in body and not body.get("system"):
        body["system"] = system


class DefaultsTable:
    """The compiled ``[models.defaults]``; ``for_model`` is cached per name pair."""

    def __init__(self, table: Mapping[str, ModelDefaults]) -> None:
        self._tables = tuple(table.values())
        self._globs = Globs(table)
        self._cache: dict[tuple[str, str], Defaults] = {}

    def __bool__(self) -> bool:
        return bool(self._tables)

    def for_model(self, served: str, requested: str) -> Defaults:
        """The defaults for a request for ``requested``, served by ``served``."""
        if not self._tables:
            return NO_DEFAULTS
        key = (served, requested)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._merge(served, requested)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _merge(self, served: str, requested: str) -> Defaults:
        matching = set(self._globs.matching(served))
        if requested != served:
            matching.update(self._globs.matching(requested))
        if not matching:
            return NO_DEFAULTS
        options: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for i in sorted(matching):  # file order: a later table's key wins
            table = self._tables[i]
            options.update(table.options)
            merged.update({f.name: v for f in dataclasses.fields(table)
                           if f.name != "options" and (v := getattr(table, f.name)) is not None})
        return Defaults(options=options, **merged)
