"""Anthropic Messages request → Ollama ``/api/chat`` body, as pure functions.

``from_anthropic`` takes the body of ``POST /v1/messages`` (or ``/count_tokens``) and returns
Ollama's body plus what the answer needs (forced call, stop sequences, thinking display). Every
top-level field of Anthropic's reference is in exactly one table below; what Ollama cannot do
is a 400 naming the field, what changes nothing Ollama does is accepted and documented
(``docs/anthropic.md``). Server tools (``web_search_*``, ``bash_*``…) run on Anthropic's side,
so they are left out of what the model sees (named in ``dropped``), or refused when forced.
"""

from __future__ import annotations

import binascii
import logging
from base64 import b64decode
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidRequest, UnsupportedParameter
from ..fields import (
    boolean,
    integer,
    keep_alive,
    log_unknown,
    model_name,
    number,
    obj,
    require,
    string,
    type_name,
)
from ..tool_choice import ForcedCall, forced_call, instruct
from .signature import Signer

__all__ = ["MAPPED", "NO_EFFECT", "MessagesRequest", "from_anthropic", "to_think"]

log = logging.getLogger("proxy.translate")

# Anthropic's request fields, in the order of its reference, and what becomes of each.
MAPPED = ("model", "messages", "max_tokens", "metadata", "output_config", "stop_sequences", "stream",
          "system", "temperature", "thinking", "tool_choice", "tools", "top_k", "top_p")
# Accepted, no effect on what Ollama generates (docs/anthropic.md says why for each).
NO_EFFECT = ("context_management", "container", "service_tier", "inference_geo")
OLLAMA_TOP_LEVEL = ("keep_alive",)
_KNOWN = frozenset((*MAPPED, *NO_EFFECT, *OLLAMA_TOP_LEVEL, "mcp_servers", "output_format"))

# output_config.effort onto Ollama's think levels ("max" clamps to "high", as "xhigh" does in chat).
THINK_FOR_EFFORT: dict[str, str] = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high",
                                    "max": "high"}
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
# Claude Code's first system block is its billing header for Anthropic's API, no instruction:
# left out, so it does not reach the prompt (nor change its cached prefix between versions).
_BILLING_HEADER = "x-anthropic-billing-header:"


@dataclass(frozen=True)
class MessagesRequest:
    """A translated Messages request: Ollama's body and what the answer side needs."""

    body: dict[str, Any]
    model: str
    stream: bool
    max_tokens: int
    forced: ForcedCall | None = None  # tool_choice "any" or "tool"
    one_tool_call: bool = False  # disable_parallel_tool_use
    stop_sequences: tuple[str, ...] = ()  # matched by the proxy (Ollama does not say which one hit)
    show_thinking: bool = True  # thinking.display: "omitted" → the text only in the signature
    dropped: tuple[str, ...] = ()  # server tools offered but left out
    user_id: str | None = None  # metadata.user_id: usage attribution only


def from_anthropic(body: dict[str, Any], signer: Signer, *, refuse_server_tools: bool = False) -> MessagesRequest:
    """Translate a Messages request body into Ollama's ``/api/chat`` body; server tools offered
    are left out (``dropped``), or a 400 with ``refuse_server_tools`` (``[anthropic] server_tools``)."""
    log_unknown(body, _KNOWN)
    model = model_name(body)
    max_tokens = require(integer(body, "max_tokens"), "max_tokens")
    if max_tokens < 1:
        raise InvalidRequest("'max_tokens' must be at least 1.", param="max_tokens")
    servers = body.get("mcp_servers")
    if servers:
        raise UnsupportedParameter("MCP servers run on Anthropic's side; 'mcp_servers' is not supported by Ollama.",
                                   param="mcp_servers")
    stream = bool(boolean(body, "stream"))
    messages = [*_system(body.get("system")), *to_messages(body.get("messages"), signer)]
    tools, dropped = to_tools(body.get("tools"))
    if dropped and refuse_server_tools:
        raise UnsupportedParameter(f"The server tool '{dropped[0]}' runs on Anthropic's side, not on Ollama "
                                   "(anthropic.server_tools = \"refuse\").", param="tools")
    choice = obj(body, "tool_choice")
    forced, one_call, tools = _tool_choice(choice, tools, dropped)
    ollama: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    if forced is not None:
        ollama["messages"] = instruct(messages, forced)
        ollama["format"] = forced.format
    elif tools:
        ollama["tools"] = tools
    output = obj(body, "output_config")
    fmt = _format(output, body)
    if fmt is not None and forced is None:
        ollama["format"] = fmt
    think, show = to_think(obj(body, "thinking"), output)
    if think is not None:
        ollama["think"] = think
    alive = keep_alive(body)
    if alive is not None:
        ollama["keep_alive"] = alive
    options: dict[str, Any] = {"num_predict": max_tokens}
    for key in ("temperature", "top_p", "top_k"):
        value = number(body, key)
        if value is not None:
            options[key] = value
    ollama["options"] = options
    metadata = obj(body, "metadata")
    user_id = string(metadata, "user_id", "metadata.user_id") if metadata else None
    stops = _stops(body) if forced is None else ()  # a forced call is JSON a stop sequence must not cut
    return MessagesRequest(ollama, model, stream, max_tokens, forced, one_call, stops, show, tuple(dropped), user_id)


def _stops(body: dict[str, Any]) -> tuple[str, ...]:
    stops = body.get("stop_sequences")
    if stops is None:
        return ()
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise InvalidRequest("'stop_sequences' must be an array of non-empty strings.", param="stop_sequences")
    return tuple(stops)


def _format(output: dict[str, Any] | None, body: dict[str, Any]) -> dict[str, Any] | None:
    """Structured outputs (``output_config.format``, or the beta's ``output_format``) → Ollama's
    ``format`` schema."""
    param, spec = "output_config.format", obj(output, "format", "output_config.format") if output else None
    if spec is None:
        param, spec = "output_format", obj(body, "output_format")
    if spec is None:
        return None
    if spec.get("type") != "json_schema":
        raise InvalidRequest(f"'{param}.type' must be 'json_schema'.", param=f"{param}.type")
    return require(obj(spec, "schema", f"{param}.schema"), f"{param}.schema")  # type: ignore[no-any-return]


def to_think(thinking: dict[str, Any] | None, output: dict[str, Any] | None) -> tuple[bool | str | None, bool]:
    """``thinking`` and ``output_config.effort`` → Ollama ``think``, and whether the thinking
    text is shown (``display``). No ``thinking`` is None: the handler makes it ``false`` unless
    a per-model default says otherwise (on Anthropic's API no thinking is asked, none is done;
    effort alone shapes the answer, it enables nothing)."""
    effort = string(output, "effort", "output_config.effort") if output else None
    level: str | None = None
    if effort is not None:
        if effort not in THINK_FOR_EFFORT:
            allowed = ", ".join(repr(e) for e in THINK_FOR_EFFORT)
            raise InvalidRequest(f"'output_config.effort' must be one of {allowed}.", param="output_config.effort")
        level = THINK_FOR_EFFORT[effort]
    if thinking is None:
        return None, True
    kind = thinking.get("type")
    display = string(thinking, "display", "thinking.display")
    if display not in (None, "summarized", "omitted"):
        raise InvalidRequest("'thinking.display' must be 'summarized' or 'omitted'.", param="thinking.display")
    show = display != "omitted"
    if kind == "disabled":
        return False, show
    if kind == "enabled":
        budget = require(integer(thinking, "budget_tokens", "thinking.budget_tokens"), "thinking.budget_tokens")
        if budget < 1:
            raise InvalidRequest("'thinking.budget_tokens' must be at least 1.", param="thinking.budget_tokens")
        return level or True, show  # Ollama has no thinking budget: the level, or on
    if kind == "adaptive":
        return level or True, show
    raise InvalidRequest("'thinking.type' must be 'enabled', 'adaptive' or 'disabled'.", param="thinking.type")


# ---- system and messages --------------------------------------------------------------------------


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    text = _text_of(system, "system")
    return [{"role": "system", "content": text}] if text else []


def _text_of(content: Any, param: str) -> str:
    """A string, or text blocks (``cache_control`` ignored) joined with blank lines."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"'{param}' must be a string or an array of text blocks.", param=param)
    texts = []
    for i, block in enumerate(content):
        at = f"{param}[{i}]"
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidRequest(f"'{at}' must be a text block.", param=at)
        text = require(string(block, "text", f"{at}.text"), f"{at}.text")
        if not (param == "system" and text.startswith(_BILLING_HEADER)):
            texts.append(text)
    return "\n\n".join(texts)


def to_messages(messages: Any, signer: Signer) -> list[dict[str, Any]]:
    """Anthropic messages → Ollama's: a user turn's tool results become ``tool`` messages (in
    order, before its other content), an assistant's blocks one message with ``thinking``,
    ``content`` and ``tool_calls``; role ``system`` (Claude Code sends one) stays a system message."""
    if messages is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list):
        raise InvalidRequest(f"'messages' must be an array, got {type_name(messages)}.", param="messages")
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages")
    names: dict[str, str] = {}  # tool_use id → tool name, for the results
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"'{param}' must be an object.", param=param)
        role = message.get("role")
        content = message.get("content")
        if role == "system":
            out.append({"role": "system", "content": _text_of(content, f"{param}.content")})
        elif role == "user":
            out.extend(_user(content, param, names))
        elif role == "assistant":
            out.append(_assistant(content, param, names, signer))
        else:
            raise InvalidRequest(f"'{param}.role' must be 'user' or 'assistant'.", param=f"{param}.role")
    return out


def _blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"'{param}.content' must be a string or an array of content blocks.",
                             param=f"{param}.content")
    for j, block in enumerate(content):
        if not isinstance(block, dict):
            raise InvalidRequest(f"'{param}.content[{j}]' must be an object.", param=f"{param}.content[{j}]")
    return content


def _user(content: Any, param: str, names: dict[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    images: list[str] = []
    for j, block in enumerate(_blocks(content, param)):
        at = f"{param}.content[{j}]"
        kind = block.get("type")
        if kind == "tool_result":
            out.append(_tool_result(block, at, names))
        elif kind == "text":
            texts.append(require(string(block, "text", f"{at}.text"), f"{at}.text"))
        elif kind == "image":
            images.append(_image(block, at))
        elif kind == "document":
            texts.append(_document(block, at))
        elif kind == "search_result":
            texts.append(_search_result(block, at))
        else:
            raise _unknown_block(kind, at, "user")
    if texts or images or not out:
        message: dict[str, Any] = {"role": "user", "content": "\n".join(texts)}
        if images:
            message["images"] = images
        out.append(message)
    return out


def _tool_result(block: dict[str, Any], at: str, names: dict[str, str]) -> dict[str, Any]:
    call_id = require(string(block, "tool_use_id", f"{at}.tool_use_id"), f"{at}.tool_use_id")
    name = names.get(call_id)
    if name is None:
        raise InvalidRequest(f"'{at}.tool_use_id' does not match a tool_use block of an earlier assistant message.",
                             param=f"{at}.tool_use_id")
    content = block.get("content")
    texts: list[str] = []
    images: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif content is not None:
        for k, part in enumerate(_blocks(content, at)):
            part_at = f"{at}.content[{k}]"
            kind = part.get("type")
            if kind == "text":
                texts.append(require(string(part, "text", f"{part_at}.text"), f"{part_at}.text"))
            elif kind == "image":
                images.append(_image(part, part_at))
            elif kind == "document":
                texts.append(_document(part, part_at))
            elif kind == "tool_reference":  # a tool search's find: every tool is offered already
                name = part.get("tool_name") or part.get("name")
                texts.append(f"Tool available: {name}" if isinstance(name, str) else "")
            elif kind == "search_result":
                texts.append(_search_result(part, part_at))
            else:
                raise _unknown_block(kind, part_at, "tool_result")
    text = "\n".join(texts)
    if boolean(block, "is_error", f"{at}.is_error"):
        text = f"Error: {text}"  # Ollama's tool messages have no error flag: said in the text
    message: dict[str, Any] = {"role": "tool", "content": text, "tool_name": name, "tool_call_id": call_id}
    if images:
        message["images"] = images
    return message


def _assistant(content: Any, param: str, names: dict[str, str], signer: Signer) -> dict[str, Any]:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(_blocks(content, param)):
        at = f"{param}.content[{j}]"
        kind = block.get("type")
        if kind == "text":
            texts.append(require(string(block, "text", f"{at}.text"), f"{at}.text"))
        elif kind == "tool_use":
            call_id = require(string(block, "id", f"{at}.id"), f"{at}.id")
            name = require(string(block, "name", f"{at}.name"), f"{at}.name")
            arguments = block.get("input")
            if arguments is None:
                arguments = {}
            if not isinstance(arguments, dict):
                raise InvalidRequest(f"'{at}.input' must be an object.", param=f"{at}.input")
            names[call_id] = name
            calls.append({"id": call_id, "function": {"name": name, "arguments": arguments}})
        elif kind == "thinking":
            text = string(block, "thinking", f"{at}.thinking") or ""
            signature = string(block, "signature", f"{at}.signature") or ""
            if not text and signature:
                text = signer.open(signature) or ""  # display "omitted": the signature carries it
            if text:
                thinking.append(text)
        elif kind == "redacted_thinking":
            opened = signer.open(string(block, "data", f"{at}.data") or "")
            if opened:
                thinking.append(opened)
        else:
            raise _unknown_block(kind, at, "assistant")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if thinking:
        message["thinking"] = "\n".join(thinking)
    if calls:
        message["tool_calls"] = calls
    return message


def _unknown_block(kind: Any, at: str, where: str) -> InvalidRequest:
    if kind in ("server_tool_use", "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
                "bash_code_execution_tool_result", "text_editor_code_execution_tool_result", "mcp_tool_use",
                "mcp_tool_result", "container_upload", "tool_search_tool_result"):
        return UnsupportedParameter(f"Content blocks of type '{kind}' come from Anthropic's server tools, "
                                    "which Ollama does not run.", param=f"{at}.type")
    return InvalidRequest(f"'{at}.type' is not a content block type a {where} message may hold.", param=f"{at}.type")


def _search_result(block: dict[str, Any], at: str) -> str:
    """A search result a client tool returned: its title, source and text blocks, as text."""
    head = " — ".join(v for v in (block.get("title"), block.get("source")) if isinstance(v, str) and v)
    body = _text_of(block.get("content") or [], f"{at}.content")
    return f"{head}\n{body}" if head else body


def _image(block: dict[str, Any], at: str) -> str:
    """A base64 image source → the bare base64 Ollama takes. URLs and files are never fetched."""
    source = require(obj(block, "source", f"{at}.source"), f"{at}.source")
    kind = source.get("type")
    if kind in ("url", "file"):
        raise UnsupportedParameter(f"Image sources of type '{kind}' are not fetched by the proxy; send the image "
                                   "as a base64 source.", param=f"{at}.source.type")
    if kind != "base64":
        raise InvalidRequest(f"'{at}.source.type' must be 'base64'.", param=f"{at}.source.type")
    media = string(source, "media_type", f"{at}.source.media_type")
    if media not in _IMAGE_TYPES:
        raise InvalidRequest(f"'{at}.source.media_type' must be one of {', '.join(_IMAGE_TYPES)}.",
                             param=f"{at}.source.media_type")
    data: str = require(string(source, "data", f"{at}.source.data"), f"{at}.source.data")
    try:
        b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("The image is not valid base64.", param=f"{at}.source.data") from None
    return data


def _document(block: dict[str, Any], at: str) -> str:
    """A plain-text document is its text; PDFs and files Ollama cannot read are refused."""
    source = require(obj(block, "source", f"{at}.source"), f"{at}.source")
    if source.get("type") == "text":
        return str(require(string(source, "data", f"{at}.source.data"), f"{at}.source.data"))
    raise UnsupportedParameter("Only plain-text document sources are supported by Ollama.", param=f"{at}.source.type")


# ---- tools -----------------------------------------------------------------------------------------


def to_tools(tools: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Client tools → Ollama functions; server tools (a ``type`` other than ``custom``) are left
    out and named in the second list."""
    if tools is None:
        return [], []
    if not isinstance(tools, list):
        raise InvalidRequest(f"'tools' must be an array, got {type_name(tools)}.", param="tools")
    functions: list[dict[str, Any]] = []
    dropped: list[str] = []
    for i, tool in enumerate(tools):
        at = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"'{at}' must be an object.", param=at)
        name = require(string(tool, "name", f"{at}.name"), f"{at}.name")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            dropped.append(name)  # a server tool: it runs on Anthropic's side, not on Ollama
            continue
        schema = require(obj(tool, "input_schema", f"{at}.input_schema"), f"{at}.input_schema")
        function: dict[str, Any] = {"name": name}
        description = string(tool, "description", f"{at}.description")
        if description is not None:
            function["description"] = description
        function["parameters"] = schema
        functions.append({"type": "function", "function": function})
    if dropped:
        log.debug("server tools left out (Ollama does not run them): %s", ", ".join(dropped))
    return functions, dropped


def _tool_choice(choice: dict[str, Any] | None, tools: list[dict[str, Any]],
                 dropped: list[str]) -> tuple[ForcedCall | None, bool, list[dict[str, Any]]]:
    """``tool_choice`` → the forced call (constrained decoding, translate/tool_choice.py),
    whether one call at most is kept, and the tools Ollama is offered."""
    if choice is None:
        return None, False, tools
    kind = choice.get("type")
    one = bool(boolean(choice, "disable_parallel_tool_use", "tool_choice.disable_parallel_tool_use"))
    if kind == "auto":
        return None, one, tools
    if kind == "none":
        return None, False, []
    if kind == "any":
        if not tools:
            raise InvalidRequest("'tool_choice' is 'any' but no client 'tools' were given.", param="tool_choice")
        return forced_call("required", tools), True, tools
    if kind == "tool":
        name = require(string(choice, "name", "tool_choice.name"), "tool_choice.name")
        if name in dropped:
            raise UnsupportedParameter(f"'tool_choice.name' forces the server tool '{name}', which Ollama does not "
                                       "run.", param="tool_choice.name")
        if not any(tool["function"]["name"] == name for tool in tools):
            raise InvalidRequest(f"'tool_choice.name' names '{name}', which is not one of the 'tools'.",
                                 param="tool_choice.name")
        return forced_call({"type": "function", "function": {"name": name}}, tools), True, tools
    raise InvalidRequest("'tool_choice.type' must be 'auto', 'any', 'tool' or 'none'.", param="tool_choice.type")
