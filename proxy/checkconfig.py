"""``python -m proxy --check-config``: the effective limits of a config, printed as TOML.

Loading the config has already checked every key; this also builds the validator as the app
would, then prints what is in force: the server's defences, every limit, the effective limits
of each per-model pattern (keys inherited from ``[limits]`` marked), admission and the upstream
time-outs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from .config import Config, pool_servers
from .models.limits import Validator

__all__ = ["describe"]

_SERVER_KEYS = ("keepalive_timeout", "body_timeout", "max_line_size", "max_field_size", "max_headers",
                "write_timeout", "accept_compressed_requests", "max_compression_ratio")


def describe(config: Config, source: str | None = None) -> str:
    """The effective limits of ``config`` as TOML, with a header naming ``source``."""
    Validator(config.limits)  # compiles every glob, as the app will at start-up
    lines = [f"# Effective limits of {source or 'the built-in defaults'}; 0 means no limit.", ""]
    lines += _table("server", {k: getattr(config.server, k) for k in _SERVER_KEYS})
    base = _fields(config.limits, skip="models")
    lines += _table("limits", base)
    for pattern, model_limits in config.limits.models.items():
        overrides = {k: v for k, v in _fields(model_limits).items() if v is not None}
        lines.append(f"# a model matching only {_value(pattern)}: this table's keys over [limits]")
        lines.append(f"[limits.models.{_value(pattern)}]")
        for key in _fields(model_limits):
            value = overrides.get(key, base[key])
            lines.append(f"{key} = {_value(value)}" + ("" if key in overrides else "  # from [limits]"))
        lines.append("")
    lines += _table("admission", _fields(config.admission, skip="models"))
    if config.admission.models:
        lines += _table("admission.models", {_value(k): v for k, v in config.admission.models.items()})
    lines += _table("upstream.timeouts", _fields(config.upstream.timeouts))
    lines += _models(config)
    lines += _pool(config)
    return "\n".join(lines)


def _models(config: Config) -> list[str]:
    """``[models.aliases]`` and each ``[models.defaults]`` table, when there are any."""
    lines = []
    if config.models.aliases:
        lines.append("# exact names over globs, then the first glob that matches")
        lines += _table("models.aliases", {_value(k): v for k, v in config.models.aliases.items()})
    for pattern, defaults in config.models.defaults.items():
        values = {f"options.{k}": v for k, v in defaults.options.items()}
        values.update({k: v for k, v in _fields(defaults, skip="options").items() if v is not None})
        lines += _table(f"models.defaults.{_value(pattern)}", values)
    return lines


def _pool(config: Config) -> list[str]:
    """The servers requests go to (each named), and how they are placed on them."""
    servers = pool_servers(config)
    lines = [f"# The pool: {len(servers)} Ollama server{'s' if len(servers) > 1 else ''}"
             + ("" if len(servers) > 1 else " (used directly: no probes, no discovery)"), ""]
    for server in servers:
        lines.append("[[upstreams]]")
        lines += [f"{k} = {_value(v)}" for k, v in _fields(server).items()]
        lines.append("")
    if len(servers) > 1:
        lines += _table("routing", _fields(config.routing))
    return lines


def _fields(section: Any, skip: str = "") -> dict[str, Any]:
    return {f.name: getattr(section, f.name) for f in dataclasses.fields(section) if f.name != skip}


def _table(name: str, values: dict[str, Any]) -> list[str]:
    return [f"[{name}]", *(f"{k} = {_value(v)}" for k, v in values.items()), ""]


def _value(value: Any) -> str:
    """A TOML literal; JSON spells strings, numbers and arrays the same way."""
    return orjson.dumps(list(value) if isinstance(value, tuple) else value).decode()
