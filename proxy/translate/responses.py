"""OpenAI Responses (``POST /v1/responses``) ⇄ Ollama ``/api/chat``, as pure functions.

``from_openai`` turns a Responses request into Ollama's chat body: ``input`` items become chat
messages (after the stored conversation a ``previous_response_id`` continues, passed in as
``history``), ``instructions`` a leading system message, and the sampling, format, reasoning and
tool fields go through the chat translation's own functions, so both APIs map them alike.
``to_response`` turns Ollama's answer into a ``response`` object; the item builders it uses are
shared with the stream translation (``responses_stream``), so a streamed response ends exactly
as the non-streamed one. Every top-level field is in one table below, in the order of OpenAI's
reference: mapped, accepted without effect, or refused with a 400 naming it.
"""

from __future__ import annotations

import binascii
from base64 import b64decode, urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import InvalidRequest, UnsupportedParameter
from .chat import OLLAMA_OPTIONS, OLLAMA_TOP_LEVEL, to_format, to_options, to_think, to_tools
from .fields import (
    boolean,
    integer,
    keep_alive,
    log_unknown,
    model_name,
    obj,
    require,
    string,
    type_name,
)

__all__ = [
    "ResponsesContext",
    "ResponsesRequest",
    "finish",
    "from_openai",
    "function_call_item",
    "message_item",
    "previous_response_id",
    "reasoning_item",
    "skeleton",
    "to_history",
    "to_response",
    "to_usage",
]

# Fields OpenAI defines, in the order of its reference, and what becomes of each.
MAPPED = (
    "background", "include", "input", "instructions", "max_output_tokens", "metadata", "model",
    "parallel_tool_calls", "previous_response_id", "reasoning", "store", "stream", "stream_options",
    "temperature", "text", "tool_choice", "tools", "top_logprobs", "top_p", "truncation",
)  # fmt: skip
# Caller bookkeeping that does not change what the model generates: accepted, echoed, no effect.
NO_EFFECT = ("prompt_cache_key", "prompt_cache_retention", "safety_identifier", "service_tier", "user")
# Defined by OpenAI, impossible over Ollama: a 400 naming the field whenever it is set.
REFUSED = {
    "access_programs": "'access_programs' is not supported by Ollama",
    "background_options": "background responses are not supported by the proxy",
    "context_management": "server-side context management is not supported by the proxy",
    "conversation": "the Conversations API is not supported; use 'previous_response_id'",
    "image": "'image' options are not supported by Ollama",
    "max_tool_calls": "Ollama cannot limit the number of tool calls; leave 'max_tool_calls' unset",
    "moderation": "moderation is not supported by Ollama",
    "prompt": "stored prompt templates are not supported; send 'input' and 'instructions'",
    "prompt_cache_options": "'prompt_cache_options' is not supported by Ollama",
}
_KNOWN = frozenset((*MAPPED, *NO_EFFECT, *REFUSED, *OLLAMA_TOP_LEVEL, *OLLAMA_OPTIONS))

# OpenAI's hosted tools run on OpenAI's servers; Ollama runs only the client's functions.
BUILT_IN_TOOLS = (
    "web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11",
    "file_search", "computer", "computer_use", "computer_use_preview", "code_interpreter",
    "image_generation", "mcp", "local_shell", "shell", "custom", "apply_patch", "tool_search",
    "namespace",
)  # fmt: skip
# Input items that only OpenAI's hosted tools produce.
_HOSTED_ITEMS = (
    "computer_call", "computer_call_output", "web_search_call", "file_search_call",
    "image_generation_call", "code_interpreter_call", "local_shell_call", "local_shell_call_output",
    "shell_call", "shell_call_output", "apply_patch_call", "apply_patch_call_output", "mcp_list_tools",
    "mcp_approval_request", "mcp_approval_response", "mcp_call", "custom_tool_call",
    "custom_tool_call_output", "tool_search_call", "tool_search_output", "compaction",
    "compaction_trigger", "additional_tools", "program", "program_output",
)  # fmt: skip
_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_IMAGE_PREFIXES = tuple(f"data:image/{kind};base64," for kind in ("png", "jpeg", "jpg", "webp", "gif"))
_SUMMARIES = ("auto", "concise", "detailed")


@dataclass(frozen=True)
class ResponsesContext:
    """What the translation may not invent itself: ids and the clock."""

    id: str
    created_at: int
    new_id: Callable[[str], str]  # prefix → a fresh id ("msg_…", "fc_…", "call_…")
    now: Callable[[], int]  # for completed_at


@dataclass(frozen=True)
class ResponsesRequest:
    """A translated request: Ollama's body, and what the answer and the store need of it."""

    body: dict[str, Any]
    model: str
    stream: bool
    store: bool  # what the client asked (OpenAI's default: true); the store's mode decides
    echo: dict[str, Any]  # the request's fields a response object repeats
    input_items: list[dict[str, Any]]  # the input as items with ids (input_items listing)
    messages: list[dict[str, Any]]  # the conversation sent, without instructions (the history)
    sealed_reasoning: bool = False  # include "reasoning.encrypted_content": reasoning items carry it


def previous_response_id(body: dict[str, Any]) -> str | None:
    """The response this request continues from, read before the store is asked."""
    found = string(body, "previous_response_id")
    if found == "":
        raise InvalidRequest("'previous_response_id' must not be empty.", param="previous_response_id")
    return found


def from_openai(body: dict[str, Any], ctx: ResponsesContext,
                history: list[dict[str, Any]] | None = None) -> ResponsesRequest:
    """Translate a Responses request into Ollama's ``/api/chat`` body.

    ``history`` is the stored conversation of ``previous_response_id`` (Ollama messages, its
    instructions left out: OpenAI does not carry instructions over to the next response).
    """
    for key, why in REFUSED.items():
        if body.get(key) is not None:
            raise UnsupportedParameter(f"{why[0].upper()}{why[1:]}.", param=key)
    log_unknown(body, _KNOWN)
    model = model_name(body)
    stream = bool(boolean(body, "stream"))
    store = boolean(body, "store") is not False
    sealed = _check_refusable(body)
    instructions = string(body, "instructions")
    items, messages = to_input(body.get("input"), ctx, history or [])
    tools, echo_tools, choice = _tools(body)
    text = _text(body)
    reasoning = _reasoning(body)
    max_output = integer(body, "max_output_tokens")
    if max_output is not None and max_output < 1:
        raise InvalidRequest("'max_output_tokens' must be at least 1.", param="max_output_tokens")

    conversation = [{"role": "system", "content": instructions}] if instructions else []
    ollama: dict[str, Any] = {"model": model, "messages": conversation + messages, "stream": stream}
    if tools:
        ollama["tools"] = tools
    fmt = to_format(text.get("chat", text.get("format")))
    if fmt is not None:
        ollama["format"] = fmt
    think = to_think({"think": body.get("think"), "reasoning": reasoning})
    if think is not None:
        ollama["think"] = think
    alive = keep_alive(body)
    if alive is not None:
        ollama["keep_alive"] = alive
    sampling = {key: body.get(key) for key in ("options", "temperature", "top_p", *OLLAMA_OPTIONS)}
    options = to_options({**sampling, "max_completion_tokens": max_output})
    if options:
        ollama["options"] = options

    echo = {
        "instructions": instructions,
        "max_output_tokens": max_output,
        "metadata": _metadata(body),
        "model": model,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": string(body, "prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": string(body, "safety_identifier"),
        "temperature": body.get("temperature"),
        "text": {"format": text.get("format") or {"type": "text"}},
        "tool_choice": choice,
        "tools": echo_tools,
        "top_p": body.get("top_p"),
        "truncation": body.get("truncation") or "disabled",
        "user": string(body, "user"),
    }
    return ResponsesRequest(ollama, model, stream, store, echo, items, messages, sealed)


def _check_refusable(body: dict[str, Any]) -> bool:
    """Fields that are fine at their default and refused otherwise; whether reasoning is sealed."""
    if boolean(body, "background"):
        raise UnsupportedParameter("Background responses are not supported by the proxy.", param="background")
    include = body.get("include")
    sealed = False
    if include is not None:
        if not isinstance(include, list):
            raise InvalidRequest("'include' must be an array.", param="include")
        for i, value in enumerate(include):
            if value != SEALED:
                raise UnsupportedParameter(
                    f"'include' value {value!r} is not supported: the proxy has no logprobs or hosted-tool "
                    f"outputs to add (only {SEALED!r}).", param=f"include[{i}]")
            sealed = True
    top = integer(body, "top_logprobs")
    if top:
        raise UnsupportedParameter("Log probabilities are not supported on /v1/responses.", param="top_logprobs")
    if boolean(body, "parallel_tool_calls") is False:
        raise UnsupportedParameter(
            "Ollama cannot limit a reply to one tool call; 'parallel_tool_calls' must be true.",
            param="parallel_tool_calls")
    truncation = body.get("truncation")
    if truncation is not None and truncation not in ("auto", "disabled"):
        raise InvalidRequest("'truncation' must be 'auto' or 'disabled'.", param="truncation")
    options = obj(body, "stream_options")
    if options is not None:
        # Obfuscation pads deltas against a network side channel of OpenAI's; there is none to
        # pad here, so the flag is accepted and no "obfuscation" field is sent.
        boolean(options, "include_obfuscation", "stream_options.include_obfuscation")
    return sealed


def _metadata(body: dict[str, Any]) -> dict[str, str]:
    """OpenAI's limits: up to 16 pairs, keys ≤ 64 and values ≤ 512 characters, strings only."""
    metadata = obj(body, "metadata")
    if metadata is None:
        return {}
    if len(metadata) > 16:
        raise InvalidRequest("'metadata' may hold at most 16 pairs.", param="metadata")
    for key, value in metadata.items():
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            raise InvalidRequest(
                "'metadata' keys must be at most 64 characters and values strings of at most 512.",
                param=f"metadata.{key[:64]}")
    return metadata


def _text(body: dict[str, Any]) -> dict[str, Any]:
    """``text.format`` in chat's ``response_format`` shape, checked with Responses' paths."""
    text = obj(body, "text")
    if text is None:
        return {}
    if text.get("verbosity") is not None:
        raise UnsupportedParameter("'verbosity' is not supported by Ollama.", param="text.verbosity")
    fmt = obj(text, "format", "text.format")
    if fmt is None:
        return {}
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return {"format": {"type": kind}}
    if kind != "json_schema":
        raise InvalidRequest("'text.format.type' must be 'text', 'json_object' or 'json_schema'.",
                             param="text.format.type")
    name = require(string(fmt, "name", "text.format.name"), "text.format.name")
    schema = require(obj(fmt, "schema", "text.format.schema"), "text.format.schema")
    echo: dict[str, Any] = {"type": "json_schema", "name": name, "schema": schema,
                            "description": string(fmt, "description", "text.format.description"),
                            "strict": boolean(fmt, "strict", "text.format.strict")}
    # The chat translation's shape, so both APIs hand Ollama the schema the same way.
    return {"format": echo, "chat": {"type": "json_schema", "json_schema": {"schema": schema}}}


def _reasoning(body: dict[str, Any]) -> dict[str, Any]:
    """``reasoning``: ``effort`` becomes Ollama's ``think`` (through chat's table); Ollama's
    thinking is always returned as the reasoning item's summary text, whatever ``summary`` says."""
    reasoning = obj(body, "reasoning")
    if reasoning is None:
        return {}
    for key in ("summary", "generate_summary"):
        value = string(reasoning, key, f"reasoning.{key}")
        if value is not None and value not in _SUMMARIES:
            raise InvalidRequest(f"'reasoning.{key}' must be 'auto', 'concise' or 'detailed'.",
                                 param=f"reasoning.{key}")
    return {"effort": string(reasoning, "effort", "reasoning.effort"),
            "summary": reasoning.get("summary") or reasoning.get("generate_summary")}


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    """Function tools → Ollama's (through chat's ``to_tools``); built-in tools are refused.

    Returns Ollama's tools, the tools as the response echoes them, and the ``tool_choice``.
    """
    tools = body.get("tools")
    if tools is None:
        tools = []
    if not isinstance(tools, list):
        raise InvalidRequest(f"'tools' must be an array, got {type_name(tools)}.", param="tools")
    choice = body.get("tool_choice")
    if choice is None:
        choice = "auto"
    # Forced choices ("required", {"type": "function", "name": …}) plug in here once the chat
    # translation can force a tool call (issue 14): map them to chat's tool_choice shape and
    # hand them to to_tools below. Until then they are refused, as on chat.
    if choice not in ("auto", "none"):
        if choice == "required" or isinstance(choice, dict):
            raise UnsupportedParameter("Ollama cannot force a tool call; 'tool_choice' must be 'auto' or 'none'.",
                                       param="tool_choice")
        raise InvalidRequest("'tool_choice' must be 'none', 'auto', 'required' or an object.", param="tool_choice")
    chat_tools, echo = [], []
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"'{param}' must be an object.", param=param)
        kind = tool.get("type")
        if kind != "function":
            if isinstance(kind, str) and (kind in BUILT_IN_TOOLS or kind.startswith(("web_search", "file_search"))):
                raise UnsupportedParameter(
                    f"The built-in tool '{kind}' is not supported: Ollama runs only function tools.",
                    param=f"{param}.type")
            raise InvalidRequest(f"'{param}.type' must be 'function'.", param=f"{param}.type")
        name = require(string(tool, "name", f"{param}.name"), f"{param}.name")
        description = string(tool, "description", f"{param}.description")
        parameters = obj(tool, "parameters", f"{param}.parameters")
        # strict is echoed; Ollama does not constrain tool arguments to the schema (README).
        strict = boolean(tool, "strict", f"{param}.strict")
        function: dict[str, Any] = {"name": name, "parameters": parameters}
        if description is not None:
            function["description"] = description
        chat_tools.append({"type": "function", "function": function})
        echo.append({"type": "function", "name": name, "description": description,
                     "parameters": parameters, "strict": strict})
    return to_tools({"tools": chat_tools, "tool_choice": choice}), echo, choice


# ---- input items → Ollama messages -----------------------------------------------------------


def to_input(value: Any, ctx: ResponsesContext,
             history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``input`` → (its items with ids, the Ollama conversation: ``history`` then the input)."""
    if value is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    if isinstance(value, str):
        items = [{"id": ctx.new_id("msg_"), "type": "message", "role": "user", "status": "completed",
                  "content": [{"type": "input_text", "text": value}]}]
        return items, [*history, {"role": "user", "content": value}]
    if not isinstance(value, list):
        raise InvalidRequest(f"'input' must be a string or an array, got {type_name(value)}.", param="input")
    if not value and not history:
        raise InvalidRequest("'input' must contain at least one item.", param="input")
    return _items(value, "input", ctx, history)


def to_history(output: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation after a response: ``history`` followed by its output items as messages."""
    return _items(output, "output", None, history)[1]


def _items(items: list[Any], where: str, ctx: ResponsesContext | None,
           history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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
        elif kind == "function_call":
            call, normal = _function_call(item, param, ctx)
            call_names[call["id"]] = call["function"]["name"]
            last = out[-1] if out else None
            if last is None or last["role"] != "assistant" or (thinking and last.get("content")):
                last = {"role": "assistant", "content": ""}
                out.append(last)
            if thinking:
                last["thinking"] = "\n".join(thinking)
                thinking = []
            last.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            message, normal = _call_output(item, param, call_names)
            out.append(message)
        elif kind == "reasoning":
            text, normal = _reasoning_item(item, param)
            if text:
                thinking.append(text)
        elif kind == "item_reference":
            raise UnsupportedParameter("Item references are not supported; send the item itself, or "
                                       "continue with 'previous_response_id'.", param=f"{param}.type")
        elif isinstance(kind, str) and kind in _HOSTED_ITEMS:
            raise UnsupportedParameter(f"Input items of type '{kind}' belong to OpenAI's built-in tools, "
                                       "which Ollama does not run.", param=f"{param}.type")
        else:
            raise InvalidRequest(f"'{param}.type' is not a known input item type.", param=f"{param}.type")
        if ctx is not None:
            kept.append(normal if "id" in normal else {"id": ctx.new_id(_ID_PREFIX[kind]), **normal})
    if thinking:  # reasoning with no turn after it: kept as a turn of its own
        out.append({"role": "assistant", "content": "", "thinking": "\n".join(thinking)})
    return kept, out


_ID_PREFIX = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_"}


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


def _function_call(item: dict[str, Any], param: str,
                   ctx: ResponsesContext | None) -> tuple[dict[str, Any], dict[str, Any]]:
    call_id = require(string(item, "call_id", f"{param}.call_id"), f"{param}.call_id")
    name = require(string(item, "name", f"{param}.name"), f"{param}.name")
    raw = require(string(item, "arguments", f"{param}.arguments"), f"{param}.arguments")
    try:
        arguments = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"'{param}.arguments' must be a JSON object encoded as a string.",
                             param=f"{param}.arguments")
    normal = {"type": "function_call", "status": "completed", "arguments": raw, "call_id": call_id, "name": name}
    if isinstance(item.get("id"), str):
        normal = {"id": item["id"], **normal}
    return {"id": call_id, "function": {"name": name, "arguments": arguments}}, normal


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
            if not isinstance(part, dict) or part.get("type") != "input_text":
                raise UnsupportedParameter("Function call outputs may hold text parts only.", param=part_param)
            texts.append(require(string(part, "text", f"{part_param}.text"), f"{part_param}.text"))
        text = "\n".join(texts)
    elif isinstance(output, str):
        text = output
    else:
        raise InvalidRequest(f"'{param}.output' must be a string or an array of text parts.", param=f"{param}.output")
    normal = {"type": "function_call_output", "call_id": call_id, "output": output, "status": "completed"}
    if isinstance(item.get("id"), str):
        normal = {"id": item["id"], **normal}
    message = {"role": "tool", "content": text, "tool_name": call_names[call_id], "tool_call_id": call_id}
    return message, normal


def _reasoning_item(item: dict[str, Any], param: str) -> tuple[str, dict[str, Any]]:
    """A reasoning item's text: its sealed content, its ``content`` (raw reasoning) or its summary."""
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
    text = unseal(sealed, f"{param}.encrypted_content") if sealed else "\n".join(texts["content"] or texts["summary"])
    normal: dict[str, Any] = {"type": "reasoning",
                              "summary": [{"type": "summary_text", "text": t} for t in texts["summary"]]}
    if isinstance(item.get("id"), str):
        normal = {"id": item["id"], **normal}
    return text, normal


# ---- Ollama → the response object ------------------------------------------------------------


def skeleton(request: ResponsesRequest, ctx: ResponsesContext, *, stored: bool) -> dict[str, Any]:
    """The response object before any output: what ``response.created`` carries."""
    echo = request.echo
    return {
        "id": ctx.id, "object": "response", "created_at": ctx.created_at, "status": "in_progress",
        "background": False, "completed_at": None, "error": None, "incomplete_details": None,
        "instructions": echo["instructions"], "max_output_tokens": echo["max_output_tokens"],
        "max_tool_calls": None, "model": echo["model"], "output": [],
        "parallel_tool_calls": echo["parallel_tool_calls"],
        "previous_response_id": echo["previous_response_id"], "prompt_cache_key": echo["prompt_cache_key"],
        "reasoning": echo["reasoning"], "safety_identifier": echo["safety_identifier"],
        "service_tier": "default", "store": stored, "temperature": echo["temperature"],
        "text": echo["text"], "tool_choice": echo["tool_choice"], "tools": echo["tools"], "top_logprobs": 0,
        "top_p": echo["top_p"], "truncation": echo["truncation"], "usage": None, "user": echo["user"],
        "metadata": echo["metadata"],
    }  # fmt: skip


# ``include: ["reasoning.encrypted_content"]`` asks for the reasoning in a form the client can
# hand back when the server keeps nothing (``store: false``; Codex does this). OpenAI encrypts it;
# here it is Ollama's thinking, which the summary already shows in clear, so it is only sealed
# (a marked, base64 token) for the round trip, and only the proxy's own tokens are taken back.
SEALED = "reasoning.encrypted_content"
_SEAL = "ollama-proxy.thinking.v1:"


def seal(text: str) -> str:
    return _SEAL + urlsafe_b64encode(text.encode()).decode()


def unseal(token: str, param: str) -> str:
    if token.startswith(_SEAL):
        try:
            return urlsafe_b64decode(token[len(_SEAL):].encode()).decode()
        except (binascii.Error, ValueError):
            pass
    raise InvalidRequest("This encrypted reasoning was not made by this proxy.", param=param)


def reasoning_item(item_id: str, text: str, sealed: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}
    if sealed:
        item["encrypted_content"] = seal(text)
    return item


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    return {"id": item_id, "type": "message", "status": status, "content": [part], "role": "assistant"}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str,
                       status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "arguments": arguments,
            "call_id": call_id, "name": name}


def to_usage(final: dict[str, Any]) -> dict[str, Any]:
    """Ollama's counts as Responses usage; Ollama does not count thinking tokens apart."""
    prompt = int(final.get("prompt_eval_count") or 0)
    completion = int(final.get("eval_count") or 0)
    return {
        "input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }  # fmt: skip


def call_items(calls: list[dict[str, Any]], ctx: ResponsesContext) -> list[dict[str, Any]]:
    """Ollama tool calls → function_call items, ``arguments`` as a JSON string."""
    out = []
    for call in calls:
        function = call.get("function") or {}
        arguments = orjson.dumps(function.get("arguments") or {}).decode()
        out.append(function_call_item(ctx.new_id("fc_"), call.get("id") or ctx.new_id("call_"),
                                      str(function.get("name") or ""), arguments))
    return out


def finish(response: dict[str, Any], output: list[dict[str, Any]], final: dict[str, Any],
           ctx: ResponsesContext) -> dict[str, Any]:
    """The finished response: its output, usage and status (incomplete at the token budget)."""
    done = {**response, "output": output, "usage": to_usage(final)}
    if final.get("done_reason") == "length":
        done["status"] = "incomplete"
        done["incomplete_details"] = {"reason": "max_output_tokens"}
    else:
        done["status"] = "completed"
        done["completed_at"] = ctx.now()
    return done


def to_response(answer: dict[str, Any], response: dict[str, Any], ctx: ResponsesContext,
                sealed: bool = False) -> dict[str, Any]:
    """Ollama's non-streaming ``/api/chat`` answer → the finished response object."""
    message = answer.get("message") or {}
    thinking = message.get("thinking") or ""
    content = message.get("content") or ""
    calls = message.get("tool_calls") or []
    status = "incomplete" if answer.get("done_reason") == "length" else "completed"
    output = []
    if thinking:
        output.append(reasoning_item(ctx.new_id("rs_"), thinking, sealed))
    if content or not calls:
        output.append(message_item(ctx.new_id("msg_"), content, status))
    output.extend(call_items(calls, ctx))
    return finish(response, output, answer, ctx)
