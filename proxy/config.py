"""Configuration: one frozen dataclass tree, read once at start-up from TOML.

Every section is a dataclass whose fields carry their defaults, so ``Config()`` is the
configuration with no file at all. ``load_config`` checks each key of the file against the
tree: an unknown key, a wrong type or a value out of range raises ``ConfigError`` naming the
dotted key (``upstream.idle_timeout``), which the CLI prints as one line before exiting.
Adding a setting is adding a field (with ``check`` metadata when it has a range).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "Config",
    "ConfigError",
    "LimitsConfig",
    "LogConfig",
    "ResponseConfig",
    "ServerConfig",
    "Timeouts",
    "UpstreamConfig",
    "load_config",
]


class ConfigError(ValueError):
    """A configuration problem, its message naming the offending key."""


def checked(default: Any, check: Callable[[Any], bool], why: str) -> Any:
    """A dataclass field whose value must satisfy ``check``; ``why`` completes "must be …"."""
    return field(default=default, metadata={"check": check, "why": why})


def _positive(value: float) -> bool:
    return value > 0


@dataclass(frozen=True)
class ServerConfig:
    """Where the proxy listens and how it treats its own clients."""

    host: str = "127.0.0.1"
    port: int = checked(8080, lambda v: 0 <= v <= 65535, "a port number (0-65535)")
    workers: int = checked(1, lambda v: 1 <= v <= 256, "between 1 and 256")


@dataclass(frozen=True)
class Timeouts:
    """Upstream time-outs in seconds, passed down as one value.

    ``connect``: opening the TCP connection to Ollama.
    ``first_byte``: from sending the request to Ollama's response headers; for a stream this
    covers model loading and prompt evaluation, so it is long by default.
    ``idle``: the longest gap allowed between two reads of the response body; a stalled
    stream ends with an error frame after it.
    """

    connect: float = checked(5.0, _positive, "> 0")
    first_byte: float = checked(300.0, _positive, "> 0")
    idle: float = checked(60.0, _positive, "> 0")


@dataclass(frozen=True)
class UpstreamConfig:
    """The Ollama server behind the proxy."""

    base_url: str = "http://localhost:11434"
    timeouts: Timeouts = Timeouts()
    max_connections: int = checked(0, lambda v: v >= 0, ">= 0 (0 means no limit)")
    max_line_bytes: int = checked(16 * 1024 * 1024, _positive, "> 0")


@dataclass(frozen=True)
class LimitsConfig:
    """What a client may send; enforced before anything reaches Ollama."""

    max_body_bytes: int = checked(20 * 1024 * 1024, _positive, "> 0")


@dataclass(frozen=True)
class ResponseConfig:
    """Shape of the JSON the proxy answers with."""

    keys: Literal["snake", "camel"] = "snake"


@dataclass(frozen=True)
class LogConfig:
    """Logging of the proxy process."""

    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``Config()`` is the default with no file."""

    server: ServerConfig = ServerConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    limits: LimitsConfig = LimitsConfig()
    response: ResponseConfig = ResponseConfig()
    log: LogConfig = LogConfig()


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (None: defaults only) and apply ``OLLAMA_BASE_URL`` from ``env``."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    config = build(Config, data, "")
    base_url = env.get("OLLAMA_BASE_URL")
    if base_url:
        upstream = dataclasses.replace(config.upstream, base_url=base_url)
        config = dataclasses.replace(config, upstream=upstream)
    _check_url(config.upstream.base_url, "upstream.base_url (or OLLAMA_BASE_URL)")
    return config


def _check_url(url: str, key: str) -> None:
    if not url.startswith(("http://", "https://")) or len(url) < 8:
        raise ConfigError(f"{key}: must be an http:// or https:// URL, got {url!r}")


T = typing.TypeVar("T")


def build(cls: type[T], data: Mapping[str, Any], prefix: str) -> T:
    """Build dataclass ``cls`` from a TOML table, checking every key against its fields."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, raw in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"{name}: unknown key (known: {', '.join(sorted(fields))})")
        value = convert(hints[key], raw, name)
        meta = fields[key].metadata
        if "check" in meta and not meta["check"](value):
            raise ConfigError(f"{name}: must be {meta['why']}, got {raw!r}")
        values[key] = value
    return cls(**values)


def convert(hint: Any, raw: Any, name: str) -> Any:
    """Check ``raw`` against the type hint ``hint``; tables become nested dataclasses."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, raw, f"{name}.")  # type: ignore[type-var]
    if origin is Literal:
        allowed = typing.get_args(hint)
        if raw not in allowed:
            raise ConfigError(f"{name}: must be one of {', '.join(map(repr, allowed))}, got {raw!r}")
        return raw
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if raw is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(arg, raw, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(raw, list):
            raise ConfigError(f"{name}: must be a list, got {type(raw).__name__}")
        return tuple(convert(item, v, f"{name}[{i}]") for i, v in enumerate(raw))
    if origin is dict:
        _, value_hint = typing.get_args(hint)
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{name}: must be a table")
        return {str(k): convert(value_hint, v, f'{name}."{k}"') for k, v in raw.items()}
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(f"{name}: must be a number, got {type(raw).__name__}")
        return float(raw)
    if hint in (int, str, bool):
        if isinstance(raw, bool) != (hint is bool) or not isinstance(raw, hint):
            raise ConfigError(f"{name}: must be {_TYPE_WORDS[hint]}, got {type(raw).__name__}")
        return raw
    raise TypeError(f"unsupported config type for {name}: {hint!r}")  # a bug in this module


_TYPE_WORDS = {int: "an integer", str: "a string", bool: "true or false"}
