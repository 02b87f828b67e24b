"""The response key style: OpenAI's snake_case by default, camelCase behind a config switch.

Some front ends read ``finishReason``/``promptTokens``; every SDK reads OpenAI's snake_case, so
camelCase is opt-in (``[response] keys = "camel"``). Only keys are renamed, never values, so
tool-call arguments (JSON strings) pass through untouched.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["camel_key", "camelize"]


@lru_cache(maxsize=512)
def camel_key(key: str) -> str:
    """``finish_reason`` → ``finishReason``."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camelize(value: Any) -> Any:
    """A copy of ``value`` with every dict key in camelCase."""
    if isinstance(value, dict):
        return {camel_key(k): camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value
