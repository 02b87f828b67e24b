"""Typed readers for fields of a client's JSON body, raising ``InvalidRequest`` with ``param``.

Kept apart from the translation rules so each rule reads as one line: ``number(body,
"temperature")`` either returns a checked value (or ``None`` when absent) or refuses the
request naming the parameter path.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest

__all__ = ["boolean", "integer", "number", "obj", "string", "type_name"]

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
