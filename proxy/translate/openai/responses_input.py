"""OpenAI Responses ``input`` items → Ollama chat messages, as pure functions.

Message items (roles, ``input_text``/``output_text`` parts, ``data:`` images), ``function_call``
and ``custom_tool_call`` items (a namespaced one as its flat function name, see
``responses_tools``) with their outputs (an output finds its function's name through the call's
id, in this input or the stored history) and ``reasoning`` items (their text, or the thinking
their ``encrypted_content`` seals, becomes the ``thinking`` of the assistant turn after them)
become the messages Ollama's ``/api/chat`` takes. The same conversion turns a finished response's output into the history the next
``previous_response_id`` continues, so both directions agree by construction. Each item is also
kept as ``input_items`` lists it. Each refusal names the path of the part at fault.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Callable
from typing import Any

import orjson

from ...errors import InvalidRequest, UnsupportedParameter
from ..fields import name_field, require, string, type_name
from .responses_tools import flat_name
from .sealed import Sealer

__all__ = ["SEALED", "item_ids", "references", "response_of", "to_history", "to_input"]

NewId = Callable[[str], str]  # prefix → a fresh id

# Item ids carry their response's id ("msg_" + the response's 24 hex digits + a counter), so an
# ``item_reference`` (Codex, the Vercel AI SDK) can be looked up by the response that made it,
# with nothing but the store's lookup by response id.
_RESPONSE_HEX = 24


def item_ids(response_id: str) -> NewId:
    """Ids for the items of ``response_id`` (``resp_<hex>``): unique, and naming it."""
    hex_part = response_id.removeprefix("resp_")
    counter = iter(range(1 << 62))
    return lambda prefix: f"{prefix}{hex_part}{next(counter):x}"


def response_of(item_id: str) -> str | None:
    """The id of the response an item id was made for, or None for an id not made here."""
    _, sep, rest = item_id.partition("_")
    hex_part = rest[:_RESPONSE_HEX]
    if not sep or len(rest) <= _RESPONSE_HEX or any(c not in "0123456789abcdef" for c in rest):
        return None
    return "resp_" + hex_part


def references(value: Any) -> list[tuple[int, str]]:
    """The ``item_reference`` items of ``input``: (index, the id they name)."""
    if not isinstance(value, list):
        return []
    found = []
    for i, item in enumerate(value):
        if isinstance(item, dict) and item.get("type") == "item_reference":
            found.append((i, require(string(item, "id", f"input[{i}].id"), f"input[{i}].id")))
    return found

# Input items that only OpenAI's hosted tools produce.
_HOSTED_ITEMS = (
    "computer_call", "computer_call_output", "web_search_call", "file_search_call",
    "image_generation_call", "code_interpreter_call", "local_shell_call", "local_shell_call_output",
    "shell_call", "shell_call_output", "apply_patch_call", "apply_patch_call_output", "mcp_list_tools",
    "mcp_approval_request", "mcp_approval_response", "mcp_call", "tool_search_call", "tool_search_output", "compaction",
    "compaction_trigger", "additional_tools", "program", "program_output",
)  # fmt: skip
_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_IMAGE_PREFIXES = tuple(f"data:image/{kind};base64," for kind in ("png", "jpeg", "jpg", "webp", "gif"))
# ``include: ["reasoning.encrypted_content"]`` asks for the reasoning in a form the client can
# hand back when the server keeps nothing (``store: false``; Codex does this): see ``sealed``.
SEALED = "reasoning.encrypted_content"


# ---- input items → Ollama messages -----------------------------------------------------------


def to_input(value: Any, new_id: NewId, history: list[dict[str, Any]],
             sealer: Sealer | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``input`` → (its items with ids, the Ollama conversation: ``history`` then the input).

    ``sealer`` opens the ``encrypted_content`` of reasoning items (the caller's own tokens only).
    """
    if value is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    if isinstance(value, str):
        items = [{"id": new_id("msg_"), "type": "message", "role": "user", "status": "completed",
                  "content": [{"type": "input_text", "text": value}]}]
        return items, [*history, {"role": "user", "content": value}]
    if not isinstance(value, list):
        raise InvalidRequest(f"'input' must be a string or an array, got {type_name(value)}.", param="input")
    if not value and not history:
        raise InvalidRequest("'input' must contain at least one item.", param="input")
    return _items(value, "input", new_id, history, sealer)


def to_history(output: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation after a response: ``history`` followed by its output items as messages."""
    return _items(output, "output", None, history)[1]


def _items(items: list[Any], where: str, new_id: NewId | None, history: list[dict[str, Any]],
           sealer: Sealer | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    out = list(history)
    call_names = {call["id"]: call["function"]["name"]
                  for message in history for call in message.get("tool_calls") or () if "id" in call}
    kept: list[dict[str, Any]] = []
    thinking: list[str] = []  # a reasoning item's text, for the assistant turn that follows it
    for i, item in enumerate(items):
        param = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{param}' must be an object.", param=param)
        kind = item.get("type", "message")
        if kind == "message":
            message, normal = _message(item, param)
            if message["role"] == "assistant" and thinking:
                message["thinking"] = "\n".join(thinking)
                thinking = []
            out.append(message)
        elif kind in ("function_call", "custom_tool_call"):
            call, normal = _function_call(item, param) if kind == "function_call" else _custom_call(item, param)
            call_names[call["id"]] = call["function"]["name"]
            last = out[-1] if out else None
            if last is None or last["role"] != "assistant" or (thinking and last.get("content")):
                last = {"role": "assistant", "content": ""}
                out.append(last)
            else:  # joins the turn before it, as a copy: that may be a stored message
                last = out[-1] = {**last, "tool_calls": list(last.get("tool_calls") or ())}
            if thinking:
                last["thinking"] = "\n".join(thinking)
                thinking = []
            last.setdefault("tool_calls", []).append(call)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            message, normal = _call_output(item, param, call_names)
            out.append(message)
        elif kind == "reasoning":
            text, normal = _reasoning_item(item, param, sealer)
            if text:
                thinking.append(text)
        elif kind == "item_reference":  # the handler puts the stored items in their place first
            raise InvalidRequest(f"'{param}' refers to an item that was not found.", param=f"{param}.id")
        elif isinstance(kind, str) and kind in _HOSTED_ITEMS:
            raise UnsupportedParameter(f"Input items of type '{kind}' belong to OpenAI's built-in tools, "
                                       "which Ollama does not run.", param=f"{param}.type")
        else:
            raise InvalidRequest(f"'{param}.type' is not a known input item type.", param=f"{param}.type")
        if new_id is not None:
            kept.append(normal if "id" in normal else {"id": new_id(_ID_PREFIX[kind]), **normal})
    if thinking:  # reasoning with no turn after it: kept as a turn of its own
        out.append({"role": "assistant", "content": "", "thinking": "\n".join(thinking)})
    return kept, out


_ID_PREFIX = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_",
              "custom_tool_call": "ctc_", "custom_tool_call_output": "ctco_"}


def _message(item: dict[str, Any], param: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A message item → an Ollama message, and the item as input_items lists it."""
    role = item.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise InvalidRequest(f"'{param}.role' must be one of 'user', 'system', 'developer', 'assistant'.",
                             param=f"{param}.role")
    content = item.get("content")
    text_type = "output_text" if role == "assistant" else "input_text"  # how input_items lists it
    if isinstance(content, str):
        parts: list[dict[str, Any]] = [{"type": text_type, "text": content}]
    elif isinstance(content, list):
        parts = content
    else:
        raise InvalidRequest(f"'{param}.content' must be a string or an array of content parts.",
                             param=f"{param}.content")
    texts, images, normal_parts = [], [], []
    for j, part in enumerate(parts):
        part_param = f"{param}.content[{j}]"
        if not isinstance(part, dict):
            raise InvalidRequest(f"'{part_param}' must be an object.", param=part_param)
        kind = part.get("type")
        # Either text type in any role: clients replay output messages as input and vice versa.
        if kind in ("input_text", "output_text") or (kind == "refusal" and role == "assistant"):
            key = "refusal" if kind == "refusal" else "text"
            texts.append(require(string(part, key, f"{part_param}.{key}"), f"{part_param}.{key}"))
            normal_parts.append({"type": kind, key: texts[-1], **({"annotations": []} if kind == "output_text" else {})})
        elif kind == "input_image" and role == "user":
            images.append(_image(part, part_param))
            normal_parts.append({"type": "input_image", "image_url": part["image_url"],
                                 "detail": part.get("detail") or "auto"})
        elif kind in ("input_image", "input_file", "input_audio", "refusal"):
            raise UnsupportedParameter(f"Content parts of type '{kind}' are not supported in {role} messages.",
                                       param=f"{part_param}.type")
        else:
            raise InvalidRequest(f"'{part_param}.type' is not a known content part type.", param=f"{part_param}.type")
    message: dict[str, Any] = {"role": _ROLES[role], "content": "\n".join(texts)}
    if images:
        message["images"] = images
    normal = {"type": "message", "role": role, "content": normal_parts, "status": "completed"}
    if isinstance(item.get("id"), str):
        normal = {"id": item["id"], **normal}
    return message, normal


def _image(part: dict[str, Any], param: str) -> str:
    """An ``input_image`` data URL → the bare base64 Ollama takes. Nothing is fetched."""
    if part.get("file_id") is not None:
        raise UnsupportedParameter("Uploaded files are not supported; send the image as a data: URL.",
                                   param=f"{param}.file_id")
    url: str = require(string(part, "image_url", f"{param}.image_url"), f"{param}.image_url")
    if url.startswith(("http://", "https://")):
        raise UnsupportedParameter("Image URLs are not fetched by the proxy; send the image as a base64 data: URL.",
                                   param=f"{param}.image_url")
    prefix = next((p for p in _IMAGE_PREFIXES if url.startswith(p)), None)
    if prefix is None:
        raise InvalidRequest("Images must be data: URLs of PNG, JPEG, WebP or GIF, base64-encoded.",
                             param=f"{param}.image_url")
    data = url[len(prefix):]
    try:
        b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("The image is not valid base64.", param=f"{param}.image_url") from None
    return data


def _function_call(item: dict[str, Any], param: str) -> tuple[dict[str, Any], dict[str, Any]]:
    call_id = require(string(item, "call_id", f"{param}.call_id"), f"{param}.call_id")
    name = name_field(item, "name", f"{param}.name")
    raw = require(string(item, "arguments", f"{param}.arguments"), f"{param}.arguments")
    try:
        arguments = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"'{param}.arguments' must be a JSON object encoded as a string.",
                             param=f"{param}.arguments")
    namespace = _namespace(item, param)
    normal = {"type": "function_call", "status": "completed", "arguments": raw, "call_id": call_id, "name": name}
    if namespace is not None:
        normal["namespace"] = namespace
    if isinstance(item.get("id"), str):
        normal = {"id": item["id"], **normal}
    return {"id": call_id, "function": {"name": flat_name(namespace, name), "arguments": arguments}}, normal


def _namespace(item: dict[str, Any], param: str) -> str | None:
    """A call's ``namespace``, part of the name Ollama sees (so no NUL either)."""
    return name_field(item, "namespace", f"{param}.namespace") if item.get("namespace") else None


def _custom_call(item: dict[str, Any], param: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ``custom_tool_call`` → the call of its function, the text as its one argument."""
    call_id = require(string(item, "call_id", f"{param}.call_id"), f"{param}.call_id")
    name = name_field(item, "name", f"{param}.name")
    text = require(string(item, "input", f"{param}.input"), f"{param}.input")
    namespace = _namespace(item, param)
    normal = {"type": "custom_tool_call", "status": "completed", "call_id": call_id, "name": name, "input": text}
    if namespace is not None:
        normal["namespace"] = namespace
    if isinstance(item.get("id"), str):
        normal = {"id": item["id"], **normal}
    return {"id": call_id, "function": {"name": flat_name(namespace, name), "arguments": {"input": text}}}, normal


def _call_output(item: dict[str, Any], param: str,
                 call_names: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    call_id = require(string(item, "call_id", f"{param}.call_id"), f"{param}.call_id")
    if call_id not in call_names:
        raise InvalidRequest(f"'{param}.call_id' does not match a function call earlier in the conversation.",
                             param=f"{param}.call_id")
    output = item.get("output")
    if isinstance(output, list):
        texts = []
        for j, part in enumerate(output):
            part_param = f"{param}.output[{j}]"
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text"):
                raise UnsupportedParameter("Tool call outputs may hold text parts only.", param=part_param)
            texts.append(require(string(part, "text", f"{part_param}.text"), f"{part_param}.text"))
        text = "\n".join(texts)
    elif isinstance(output, str):
        text = output
    else:
        raise InvalidRequest(f"'{param}.output' must be a string or an array of text parts.", param=f"{param}.output")
    normal = {"type": item["type"], "call_id": call_id, "output": output, "status": "completed"}
    if isinstance(item.get("id"), str):
        normal = {"id": item["id"], **normal}
    message = {"role": "tool", "content": text, "tool_name": call_names[call_id], "tool_call_id": call_id}
    return message, normal


def _reasoning_item(item: dict[str, Any], param: str, sealer: Sealer | None) -> tuple[str, dict[str, Any]]:
    """A reasoning item's text: its sealed content, its ``content`` (raw reasoning) or its summary.

    Without a ``sealer`` (the proxy's own output, turned into history) the summary is the text:
    it holds the same thinking the token seals.
    """
    sealed = string(item, "encrypted_content", f"{param}.encrypted_content")
    texts: dict[str, list[str]] = {"content": [], "summary": []}
    for key, part_type in (("content", "reasoning_text"), ("summary", "summary_text")):
        parts = item.get(key) or []
        if not isinstance(parts, list):
            raise InvalidRequest(f"'{param}.{key}' must be an array.", param=f"{param}.{key}")
        for j, part in enumerate(parts):
            if not isinstance(part, dict) or part.get("type") != part_type:
                raise InvalidRequest(f"'{param}.{key}[{j}]' must be a {part_type} part.", param=f"{param}.{key}[{j}]")
            texts[key].append(require(string(part, "text", f"{param}.{key}[{j}].text"), f"{param}.{key}[{j}].text"))
    if sealed and sealer is not None:
        text = sealer.open(sealed, f"{param}.encrypted_content")
    elif sealed and _is_input(param):
        raise InvalidRequest("The encrypted reasoning could not be verified.", param=f"{param}.encrypted_content",
                             code="invalid_encrypted_content")
    else:
        text = "\n".join(texts["content"] or texts["summary"])
    normal: dict[str, Any] = {"type": "reasoning",
                              "summary": [{"type": "summary_text", "text": t} for t in texts["summary"]]}
    if isinstance(item.get("id"), str):
        normal = {"id": item["id"], **normal}
    return text, normal


def _is_input(param: str) -> bool:
    return param.startswith("input[")
