"""OpenAI's stored chat completions, as pure functions: ``metadata`` rules, the objects and the
list envelopes the routes answer with.

Shapes follow OpenAI's API reference for ``GET /v1/chat/completions`` (a ``list`` with
``first_id``, ``last_id``, ``has_more``), ``…/{id}`` (the ``chat.completion`` as answered, with
its ``metadata``), ``…/{id}/messages`` (``chat.completion.message`` objects whose ids are
``<completion id>-<index>``, with ``content_parts`` for array content) and the delete answer
(``chat.completion.deleted``).
"""

from __future__ import annotations

from typing import Any

from ...errors import InvalidRequest
from ..fields import type_name

__all__ = ["deleted", "list_page", "message_objects", "retrieved", "to_metadata"]

# OpenAI: "Set of 16 key-value pairs … Keys are strings with a maximum length of 64
# characters. Values are strings with a maximum length of 512 characters."
MAX_PAIRS, MAX_KEY, MAX_VALUE = 16, 64, 512


def to_metadata(value: Any, param: str = "metadata") -> dict[str, str] | None:
    """``metadata`` checked against OpenAI's rules; None when absent."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{param}' must be an object, got {type_name(value)}.", param=param)
    if len(value) > MAX_PAIRS:
        raise InvalidRequest(f"'{param}' may hold at most {MAX_PAIRS} pairs, got {len(value)}.", param=param)
    for key, item in value.items():
        if "\x00" in key or (isinstance(item, str) and "\x00" in item):  # no database stores NUL in text
            raise InvalidRequest(f"'{param}' may not contain NUL characters.", param=param)
        if len(key) > MAX_KEY:
            raise InvalidRequest(f"'{param}' keys may be at most {MAX_KEY} characters.", param=param)
        if not isinstance(item, str):
            raise InvalidRequest(f"'{param}' values must be strings, got {type_name(item)}.", param=f"{param}.{key}")
        if len(item) > MAX_VALUE:
            raise InvalidRequest(f"'{param}' values may be at most {MAX_VALUE} characters.", param=f"{param}.{key}")
    return dict(value)


def retrieved(completion: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
    """The stored ``chat.completion`` as OpenAI returns it: the answer plus its ``metadata``."""
    return {**completion, "metadata": metadata}


def message_objects(chat_id: str, messages: list[Any]) -> list[dict[str, Any]]:
    """The request's messages as OpenAI lists them: an id each, text ``content``, and the parts
    in ``content_parts`` when the client sent an array."""
    out = []
    for index, message in enumerate(messages):
        message = message if isinstance(message, dict) else {}
        content = message.get("content")
        parts = None
        if isinstance(content, list):
            parts = content
            texts: list[str] = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
            content = "".join(texts) if texts else None
        obj = {"id": f"{chat_id}-{index}", **message, "content": content,
               "name": message.get("name"), "content_parts": parts}
        out.append(obj)
    return out


def list_page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """OpenAI's list envelope for ``items`` (fetched ``limit + 1``, the extra one saying more)."""
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }


def deleted(chat_id: str) -> dict[str, Any]:
    return {"object": "chat.completion.deleted", "id": chat_id, "deleted": True}
