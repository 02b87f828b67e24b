"""OpenAI chat messages → Ollama's, as pure functions.

Roles (``developer`` becomes ``system``), content as a string or parts (text parts joined with
newlines, ``data:`` images to Ollama's base64 ``images``; remote image URLs are never fetched),
assistant tool calls (``arguments`` decoded from a JSON string to an object) and tool results
(``tool_name`` resolved from the matching earlier call). Each refusal names the path of the
part at fault (``messages[2].content[1].image_url.url``).
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from typing import Any

import orjson

from ..errors import InvalidRequest, UnsupportedParameter
from .fields import name_field, obj, require, string, type_name

__all__ = ["to_messages"]

_IMAGE_PREFIXES = tuple(
    f"data:image/{kind};base64," for kind in ("png", "jpeg", "jpg", "webp", "gif")
) + ("data:;base64,",)
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
          "tool": "tool"}  # fmt: skip


def to_messages(messages: Any) -> list[dict[str, Any]]:
    """OpenAI messages → Ollama messages (roles, content parts, images, tool calls)."""
    if messages is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list):
        raise InvalidRequest(f"'messages' must be an array, got {type_name(messages)}.", param="messages")
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages")
    call_names: dict[str, str] = {}
    out = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"'{param}' must be an object.", param=param)
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:  # a list or object is unhashable
            raise InvalidRequest(
                f"'{param}.role' must be one of 'system', 'developer', 'user', 'assistant', 'tool'.",
                param=f"{param}.role",
            )
        text, images = _content(message.get("content"), role, param)
        converted: dict[str, Any] = {"role": _ROLES[role], "content": text}
        if images:
            converted["images"] = images
        if role == "assistant":
            calls = _assistant_tool_calls(message.get("tool_calls"), param, call_names)
            if calls:
                converted["tool_calls"] = calls
            thinking = message.get("reasoning") or message.get("reasoning_content")
            if isinstance(thinking, str) and thinking:
                converted["thinking"] = thinking
        elif role == "tool":
            call_id = require(string(message, "tool_call_id", f"{param}.tool_call_id"), f"{param}.tool_call_id")
            if call_id not in call_names:
                raise InvalidRequest(
                    f"'{param}.tool_call_id' does not match a tool call of an earlier assistant message.",
                    param=f"{param}.tool_call_id",
                )
            converted["tool_name"] = call_names[call_id]
            converted["tool_call_id"] = call_id
        out.append(converted)
    return out


def _content(content: Any, role: str, param: str) -> tuple[str, list[str]]:
    """A message's content as Ollama's text plus base64 images; text parts join with newlines."""
    if content is None:
        if role == "assistant":  # an assistant turn that only called tools
            return "", []
        raise InvalidRequest(f"Missing required parameter: '{param}.content'.", param=f"{param}.content")
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise InvalidRequest(
            f"'{param}.content' must be a string or an array of content parts.", param=f"{param}.content"
        )
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        part_param = f"{param}.content[{j}]"
        if not isinstance(part, dict):
            raise InvalidRequest(f"'{part_param}' must be an object.", param=part_param)
        kind = part.get("type")
        if kind == "text" or (kind == "refusal" and role == "assistant"):
            key = "text" if kind == "text" else "refusal"
            texts.append(require(string(part, key, f"{part_param}.{key}"), f"{part_param}.{key}"))
        elif kind == "image_url" and role == "user":
            images.append(_image(part, part_param))
        elif kind in ("input_audio", "file", "image_url"):
            raise UnsupportedParameter(
                f"Content parts of type '{kind}' are not supported in {role} messages.", param=f"{part_param}.type"
            )
        else:
            raise InvalidRequest(f"'{part_param}.type' is not a known content part type.", param=f"{part_param}.type")
    return "\n".join(texts), images


def _image(part: dict[str, Any], param: str) -> str:
    """A ``data:`` image URL → the bare base64 Ollama takes. Remote URLs are never fetched."""
    image_url = require(obj(part, "image_url", f"{param}.image_url"), f"{param}.image_url")
    url = require(string(image_url, "url", f"{param}.image_url.url"), f"{param}.image_url.url")
    if url.startswith(("http://", "https://")):
        raise UnsupportedParameter(
            "Image URLs are not fetched by the proxy; send the image as a base64 data: URL.",
            param=f"{param}.image_url.url",
        )
    prefix = next((p for p in _IMAGE_PREFIXES if url.startswith(p)), None)
    if prefix is None:
        raise InvalidRequest(
            "Images must be data: URLs of PNG, JPEG, WebP or GIF, base64-encoded.", param=f"{param}.image_url.url"
        )
    data: str = url[len(prefix) :]
    try:
        b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("The image is not valid base64.", param=f"{param}.image_url.url") from None
    return data


def _assistant_tool_calls(calls: Any, param: str, call_names: dict[str, str]) -> list[dict[str, Any]]:
    """Assistant ``tool_calls`` → Ollama's, with ``arguments`` decoded to an object."""
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise InvalidRequest(f"'{param}.tool_calls' must be an array.", param=f"{param}.tool_calls")
    out = []
    for k, call in enumerate(calls):
        call_param = f"{param}.tool_calls[{k}]"
        if not isinstance(call, dict):
            raise InvalidRequest(f"'{call_param}' must be an object.", param=call_param)
        function = require(obj(call, "function", f"{call_param}.function"), f"{call_param}.function")
        name = name_field(function, "name", f"{call_param}.function.name")
        raw_args = string(function, "arguments", f"{call_param}.function.arguments") or "{}"
        try:
            arguments = orjson.loads(raw_args)
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise InvalidRequest(
                f"'{call_param}.function.arguments' must be a JSON object encoded as a string.",
                param=f"{call_param}.function.arguments",
            )
        converted: dict[str, Any] = {"function": {"name": name, "arguments": arguments}}
        call_id = string(call, "id", f"{call_param}.id")
        if call_id:
            converted["id"] = call_id
            call_names[call_id] = name
        out.append(converted)
    return out
