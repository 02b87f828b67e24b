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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...errors import InvalidRequest, UnsupportedParameter
from ..fields import (
    boolean,
    integer,
    keep_alive,
    log_unknown,
    model_name,
    obj,
    require,
    string,
)
from .chat import OLLAMA_OPTIONS, OLLAMA_TOP_LEVEL, to_format, to_options, to_think
from .responses_input import SEALED, to_history, to_input
from .responses_tools import ToolNames, call_item, from_tools
from .sealed import Sealer

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
# ``client_metadata`` (Codex: its thread, session and turn ids) is for OpenAI's own logs.
# ``service_tier`` picks the request's priority class in admission (the handler reads it and
# reports the class that ran), so for the translation it is no more than bookkeeping.
NO_EFFECT = ("client_metadata", "prompt_cache_key", "prompt_cache_retention", "safety_identifier", "service_tier",
             "user")
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
    names: ToolNames = field(default_factory=ToolNames)  # Ollama's function names → the tools they stand for
    dropped_tools: tuple[str, ...] = ()  # hosted tool types left out of what the model sees


def previous_response_id(body: dict[str, Any]) -> str | None:
    """The response this request continues from, read before the store is asked."""
    found = string(body, "previous_response_id")
    if found == "":
        raise InvalidRequest("'previous_response_id' must not be empty.", param="previous_response_id")
    return found


def from_openai(body: dict[str, Any], ctx: ResponsesContext, history: list[dict[str, Any]] | None = None,
                sealer: Sealer | None = None, refuse_hosted: bool = False) -> ResponsesRequest:
    """Translate a Responses request into Ollama's ``/api/chat`` body.

    ``history`` is the stored conversation of ``previous_response_id`` (Ollama messages, its
    instructions left out: OpenAI does not carry instructions over to the next response).
    ``sealer`` opens the caller's ``encrypted_content`` tokens; ``refuse_hosted`` turns the
    hosted tools that are otherwise left out into a 400 (``[responses] hosted_tools``).
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
    items, messages = to_input(body.get("input"), ctx.new_id, history or [], sealer)
    tools = from_tools(body, refuse_hosted)
    text = _text(body)
    reasoning = _reasoning(body)
    max_output = integer(body, "max_output_tokens")
    if max_output is not None and max_output < 1:
        raise InvalidRequest("'max_output_tokens' must be at least 1.", param="max_output_tokens")

    conversation = [{"role": "system", "content": instructions}] if instructions else []
    ollama: dict[str, Any] = {"model": model, "messages": conversation + messages, "stream": stream}
    if tools.ollama:
        ollama["tools"] = tools.ollama
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
        "tool_choice": tools.choice,
        "tools": tools.echo,
        "top_p": body.get("top_p"),
        "truncation": body.get("truncation") or "disabled",
        "user": string(body, "user"),
    }
    return ResponsesRequest(ollama, model, stream, store, echo, items, messages, sealed, tools.names, tools.dropped)


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
    # ``verbosity`` (Codex sends it for models that declare it) asks OpenAI's models for
    # shorter or longer answers; Ollama has no such control, so it is accepted without effect.
    string(text, "verbosity", "text.verbosity")
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


def reasoning_item(item_id: str, text: str, sealer: Sealer | None = None) -> dict[str, Any]:
    """Ollama's thinking as a reasoning item; sealed for the caller when ``include`` asked."""
    item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}
    if sealer is not None:
        item["encrypted_content"] = sealer.seal(text)
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


def call_items(calls: list[dict[str, Any]], ctx: ResponsesContext, names: ToolNames) -> list[dict[str, Any]]:
    """Ollama tool calls → ``function_call`` items (``arguments`` a JSON string, ``namespace``
    when the function is a namespace's) or ``custom_tool_call`` items (``input``)."""
    out = []
    for call in calls:
        function = call.get("function") or {}
        flat = str(function.get("name") or "")
        kind = names.lookup(flat)[2]
        out.append(call_item(ctx.new_id("ctc_" if kind == "custom" else "fc_"), call.get("id") or ctx.new_id("call_"),
                             flat, function.get("arguments"), names))
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
                sealer: Sealer | None = None, names: ToolNames | None = None) -> dict[str, Any]:
    """Ollama's non-streaming ``/api/chat`` answer → the finished response object."""
    message = answer.get("message") or {}
    thinking = message.get("thinking") or ""
    content = message.get("content") or ""
    calls = message.get("tool_calls") or []
    status = "incomplete" if answer.get("done_reason") == "length" else "completed"
    output = []
    if thinking:
        output.append(reasoning_item(ctx.new_id("rs_"), thinking, sealer))
    if content or not calls:
        output.append(message_item(ctx.new_id("msg_"), content, status))
    output.extend(call_items(calls, ctx, names or ToolNames()))
    return finish(response, output, answer, ctx)
