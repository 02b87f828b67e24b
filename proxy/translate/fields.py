"""Typed readers for fields of a client's JSON body, raising ``InvalidRequest`` with ``param``.

Kept apart from the translation rules so each rule reads as one line: ``number(body,
"temperature")`` either returns a checked value (or ``None`` when absent) or refuses the
request naming the parameter path.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import InvalidRequest

__all__ = [
    "boolean", "include_usage", "integer", "keep_alive", "log_unknown", "model_name", "number", "obj",
    "require", "string", "type_name",
]  # fmt: skip

log = logging.getLogger("proxy.translate")

_MISSING = object()


def type_name(value: Any) -> str:
    """The JSON name of ``value``'s type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _wrong(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {type_name(value)}.",
        param=param,
    )


def number(body: dict[str, Any], key: str, param: str | None = None) -> float | None:
    """A JSON number (not a boolean); ``None`` when absent or null."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong(param or key, "a number", value)
    return value


def integer(body: dict[str, Any], key: str, param: str | None = None) -> int | None:
    """A JSON integer; ``2.0`` is accepted as OpenAI does, ``2.5`` is not."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(param or key, "an integer", value)
    return value


def boolean(body: dict[str, Any], key: str, param: str | None = None) -> bool | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _wrong(param or key, "a boolean", value)
    return value


def string(body: dict[str, Any], key: str, param: str | None = None) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _wrong(param or key, "a string", value)
    return value


def obj(body: dict[str, Any], key: str, param: str | None = None) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _wrong(param or key, "an object", value)
    return value


def require(value: Any, param: str) -> Any:
    """Refuse a required parameter that is absent."""
    if value is None:
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    return value


def name_field(body: dict[str, Any], key: str, param: str) -> str:
    """A required name that reaches Ollama as a name (a tool's, a function's, a model's): a
    string without NUL, which Go keeps but Ollama's C side (the runner, its templates and
    grammars) reads as the name's end."""
    name: str = require(string(body, key, param), param)
    if "\x00" in name:
        raise InvalidRequest(f"'{param}' must not contain NUL characters.", param=param, code="invalid_value")
    return name


def model_name(body: dict[str, Any]) -> str:
    """The required, non-empty ``model``."""
    model = name_field(body, "model", "model")
    if not model:
        raise InvalidRequest("'model' must not be empty.", param="model")
    return model


def include_usage(body: dict[str, Any]) -> bool:
    """``stream_options.include_usage``: a usage chunk at the end of a stream."""
    options = obj(body, "stream_options")
    return bool(options and boolean(options, "include_usage", "stream_options.include_usage"))


def keep_alive(body: dict[str, Any]) -> str | int | float | None:
    """Ollama's ``keep_alive``: a duration string ("5m") or seconds."""
    value = body.get("keep_alive")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
        raise InvalidRequest("'keep_alive' must be a duration string or seconds.", param="keep_alive")
    return value


def log_unknown(body: dict[str, Any], known: frozenset[str]) -> None:
    """Fields no table names are ignored, as OpenAI-compatible servers do; said at debug."""
    unknown = [key for key in body if key not in known]
    if unknown:
        log.debug("ignoring unknown request fields: %s", ", ".join(unknown))
