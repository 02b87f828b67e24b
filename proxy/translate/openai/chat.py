"""OpenAI chat completions ⇄ Ollama ``/api/chat``, as pure functions.

``from_openai`` turns a client's request body into Ollama's, refusing what Ollama cannot honour
with a 400 naming the parameter; ``to_completion`` turns Ollama's non-streaming answer into an
OpenAI ``chat.completion``. No I/O, no clock, no randomness: ids and timestamps come in through
``ResponseContext``. Every top-level OpenAI parameter appears in exactly one table below, in the
order of OpenAI's API reference, so a new parameter is a one-line decision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ...errors import InvalidRequest, UnsupportedParameter
from ..fields import (
    boolean,
    include_usage,
    integer,
    keep_alive,
    log_unknown,
    model_name,
    name_field,
    number,
    obj,
    require,
    string,
    type_name,
)  # fmt: skip
from ..messages import to_messages
from ..tool_choice import ForcedCall, forced_call, instruct, parse_call
from .stored import to_metadata

__all__ = [
    "PLAIN",
    "ChatRequest",
    "ReplyShape",
    "ResponseContext",
    "choice_bodies",
    "finish_reason",
    "from_openai",
    "reasoning_keys",
    "to_choice",
    "to_completion",
    "to_logprobs",
    "to_tool_calls",
    "to_usage",
]


log = logging.getLogger("proxy.translate")

# Parameters OpenAI defines, in the order of its reference, and what becomes of each.
MAPPED = (
    "messages", "model", "frequency_penalty", "logit_bias", "logprobs", "max_completion_tokens",
    "max_tokens", "modalities", "n", "parallel_tool_calls", "presence_penalty", "reasoning_effort",
    "response_format", "seed", "stop", "store", "stream", "stream_options", "temperature",
    "tool_choice", "tools", "top_logprobs", "top_p",
)  # fmt: skip
# Caller bookkeeping that does not change what the model generates: accepted, no effect.
NO_EFFECT = ("metadata", "prompt_cache_key", "safety_identifier", "service_tier", "user")
# Defined by OpenAI, impossible over Ollama: a 400 naming the parameter, never a silent drop.
REFUSED = {
    "audio": "audio output is not supported by Ollama",
    "function_call": "the deprecated 'functions' API is not supported; use 'tools'",
    "functions": "the deprecated 'functions' API is not supported; use 'tools'",
    "prediction": "predicted outputs are not supported by Ollama",
    "verbosity": "'verbosity' is not supported by Ollama",
    "web_search_options": "web search is not supported by Ollama",
}
# Ollama-native extras a client may send (e.g. the OpenAI SDK's ``extra_body``).
OLLAMA_TOP_LEVEL = ("keep_alive", "think", "options", "reasoning")
OLLAMA_OPTIONS = ("num_ctx", "top_k", "min_p", "repeat_penalty", "repeat_last_n")

_KNOWN = frozenset((*MAPPED, *NO_EFFECT, *REFUSED, *OLLAMA_TOP_LEVEL, *OLLAMA_OPTIONS))

# OpenAI's reasoning efforts onto Ollama's ``think`` levels. "minimal" and "xhigh" lie outside
# Ollama's low/medium/high, so they clamp to the nearest level, as Ollama's own /v1 does.
THINK_FOR_EFFORT: dict[str, bool | str] = {
    "none": False, "minimal": "low", "low": "low", "medium": "medium", "high": "high",
    "xhigh": "high",
}  # fmt: skip

@dataclass(frozen=True)
class ChatRequest:
    """A translated request: Ollama's body plus what the response side needs to know."""

    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    logprobs: bool
    n: int = 1
    one_tool_call: bool = False  # parallel_tool_calls: false
    forced: ForcedCall | None = None  # tool_choice "required" or a named function
    store: bool | None = None  # the client's ``store``; whether it is honoured is the [store] policy
    metadata: dict[str, str] | None = None  # kept with a stored completion (OpenAI's rules)


@dataclass(frozen=True)
class ReplyShape:
    """How an answer is written back: where thinking goes, which tool calls are kept, and
    whether the content is a forced tool call to decode."""

    reasoning_keys: tuple[str, ...] = ("reasoning",)
    one_tool_call: bool = False
    forced: ForcedCall | None = None


PLAIN = ReplyShape()  # thinking as "reasoning", every tool call, nothing forced


def reasoning_keys(setting: str) -> tuple[str, ...]:
    """``[response] reasoning_field`` → the delta/message keys that carry thinking."""
    return ("reasoning", "reasoning_content") if setting == "both" else (setting,)


@dataclass(frozen=True)
class ResponseContext:
    """What the response translation may not invent itself: ids and the clock."""

    id: str
    created: int
    model: str
    new_call_id: Callable[[], str]
    service_tier: str | None = None  # echoed when the request named one, as OpenAI does


def from_openai(body: dict[str, Any]) -> ChatRequest:
    """Translate an OpenAI chat request body into Ollama's ``/api/chat`` body."""
    for key, why in REFUSED.items():
        if body.get(key) is not None:
            raise UnsupportedParameter(why, param=key)
    log_unknown(body, _KNOWN)
    model = model_name(body)
    stream = bool(boolean(body, "stream"))
    n = _choices(body)
    one_tool_call = boolean(body, "parallel_tool_calls") is False
    store = boolean(body, "store")
    metadata = to_metadata(body.get("metadata"))
    logprobs = bool(boolean(body, "logprobs"))

    ollama: dict[str, Any] = {
        "model": model,
        "messages": to_messages(body.get("messages")),
        "stream": stream,
    }
    tools = to_tools(body)
    forced = forced_call(body.get("tool_choice"), tools)
    fmt = to_format(obj(body, "response_format"))
    if forced is not None:
        # The call is decoded from constrained JSON instead (translate/tool_choice.py). A
        # response_format shapes content, and a forced call has none: it has nothing to apply to.
        ollama["messages"] = instruct(ollama["messages"], forced)
        ollama["format"] = forced.format
    else:
        if tools:
            ollama["tools"] = tools
        if fmt is not None:
            ollama["format"] = fmt
    think = to_think(body)
    if think is not None:
        ollama["think"] = think
    alive = keep_alive(body)
    if alive is not None:
        ollama["keep_alive"] = alive
    if logprobs:
        ollama["logprobs"] = True
        top = integer(body, "top_logprobs")
        if top is not None:
            if not 0 <= top <= 20:
                raise InvalidRequest("'top_logprobs' must be between 0 and 20.", param="top_logprobs")
            ollama["top_logprobs"] = top
    elif body.get("top_logprobs") is not None:
        raise InvalidRequest("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
    options = to_options(body)
    if options:
        ollama["options"] = options
    return ChatRequest(ollama, model, stream, include_usage(body), logprobs, n, one_tool_call, forced,
                       store, metadata)


def _choices(body: dict[str, Any]) -> int:
    """``n``: how many choices, each generated by its own request to Ollama (the upper bound is
    ``[limits] max_n``, checked by the validator)."""
    n = integer(body, "n")
    if n is not None and n < 1:
        raise InvalidRequest("'n' must be at least 1.", param="n")
    bias = obj(body, "logit_bias")
    if bias:
        raise UnsupportedParameter("'logit_bias' is not supported by Ollama.", param="logit_bias")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise UnsupportedParameter("Only the 'text' modality is supported.", param="modalities")
    return n or 1


def choice_bodies(ollama: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Ollama's body for each of ``n`` choices: the client's ``seed`` becomes ``seed + i``, so
    seeded choices differ from each other and stay reproducible; unseeded ones sample apart."""
    if n == 1:
        return [ollama]
    options = ollama.get("options") or {}
    seed = options.get("seed")
    if seed is None:
        return [ollama] * n
    return [{**ollama, "options": {**options, "seed": seed + i}} for i in range(n)]


def to_options(body: dict[str, Any]) -> dict[str, Any]:
    """Sampling parameters into Ollama's ``options``; explicit OpenAI fields win over extras."""
    raw = obj(body, "options")
    options: dict[str, Any] = dict(raw) if raw else {}
    for key in OLLAMA_OPTIONS:
        value = number(body, key)
        if value is not None:
            options[key] = value
    for key in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
        value = number(body, key)
        if value is not None:
            options[key] = value
    seed = integer(body, "seed")
    if seed is not None:
        options["seed"] = seed
    stop = to_stop(body.get("stop"))
    if stop is not None:
        options["stop"] = stop
    # max_completion_tokens supersedes the deprecated max_tokens (OpenAI's reference).
    for key in ("max_tokens", "max_completion_tokens"):
        limit = integer(body, key)
        if limit is not None:
            if limit < 1:
                raise InvalidRequest(f"'{key}' must be at least 1.", param=key)
            options["num_predict"] = limit
    return options


def to_stop(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise InvalidRequest("'stop' must be a string or an array of strings.", param="stop")


def to_format(response_format: dict[str, Any] | None) -> str | dict[str, Any] | None:
    """``response_format`` → Ollama ``format``: "json" for JSON mode, the schema itself for
    structured outputs, nothing for plain text."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = obj(response_format, "json_schema", "response_format.json_schema")
        spec = require(spec, "response_format.json_schema")
        schema = obj(spec, "schema", "response_format.json_schema.schema")
        return require(schema, "response_format.json_schema.schema")  # type: ignore[no-any-return]
    raise InvalidRequest(
        "'response_format.type' must be 'text', 'json_object' or 'json_schema'.",
        param="response_format.type",
    )


def to_think(body: dict[str, Any]) -> bool | str | None:
    """``reasoning_effort`` (or Ollama's own ``think``) → Ollama ``think``."""
    think = body.get("think")
    if think is not None:
        if not isinstance(think, (bool, str)):
            raise InvalidRequest("'think' must be a boolean or a level.", param="think")
        return think
    param, effort = "reasoning_effort", string(body, "reasoning_effort")
    reasoning = obj(body, "reasoning")
    if effort is None and reasoning is not None:
        param, effort = "reasoning.effort", string(reasoning, "effort", "reasoning.effort")
    if effort is None:
        return None
    if effort not in THINK_FOR_EFFORT:
        allowed = ", ".join(repr(e) for e in THINK_FOR_EFFORT)
        raise InvalidRequest(f"'{param}' must be one of {allowed}.", param=param)
    return THINK_FOR_EFFORT[effort]


def to_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``tools`` and ``tool_choice`` → Ollama ``tools`` ("none" sends none; a forced choice is
    turned into ``format`` by ``tool_choice.forced_call``)."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is None:
        tools = []
    if not isinstance(tools, list):
        raise InvalidRequest(f"'tools' must be an array, got {type_name(tools)}.", param="tools")
    if choice is not None and choice not in ("none", "auto", "required") and not isinstance(choice, dict):
        raise InvalidRequest("'tool_choice' must be 'none', 'auto', 'required' or an object.", param="tool_choice")
    converted = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    return [] if choice == "none" else converted


def _tool(tool: Any, param: str) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise InvalidRequest(f"'{param}' must be an object.", param=param)
    if tool.get("type") != "function":
        raise UnsupportedParameter("Only 'function' tools are supported.", param=f"{param}.type")
    function = require(obj(tool, "function", f"{param}.function"), f"{param}.function")
    name = name_field(function, "name", f"{param}.function.name")
    parameters = obj(function, "parameters", f"{param}.function.parameters")
    out: dict[str, Any] = {"name": name}
    description = string(function, "description", f"{param}.function.description")
    if description is not None:
        out["description"] = description
    # A function without parameters takes none (OpenAI); Ollama wants the empty schema spelled out.
    out["parameters"] = parameters if parameters is not None else {"type": "object", "properties": {}}
    return {"type": "function", "function": out}


# ---- Ollama → OpenAI ---------------------------------------------------------------------


def to_tool_calls(calls: list[dict[str, Any]], first_index: int, ctx: ResponseContext) -> list[dict[str, Any]]:
    """Ollama tool calls → OpenAI's, ``arguments`` as a JSON string, ``index`` from ``first_index``."""
    out = []
    for offset, call in enumerate(calls):
        function = call.get("function") or {}
        out.append(
            {
                "index": first_index + offset,
                "id": call.get("id") or ctx.new_call_id(),
                "type": "function",
                "function": {
                    "name": function.get("name", ""),
                    "arguments": orjson.dumps(function.get("arguments") or {}).decode(),
                },
            }
        )
    return out


def to_usage(done: dict[str, Any]) -> dict[str, int]:
    """Ollama's counts as OpenAI usage; never re-tokenized."""
    prompt = int(done.get("prompt_eval_count") or 0)
    completion = int(done.get("eval_count") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def to_logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """Ollama's per-token logprobs → OpenAI's ``{"content": [...]}``."""
    if not entries:
        return None
    return {
        "content": [
            {
                "token": e.get("token", ""),
                "logprob": e.get("logprob", 0.0),
                "bytes": e.get("bytes"),
                "top_logprobs": [
                    {"token": t.get("token", ""), "logprob": t.get("logprob", 0.0), "bytes": t.get("bytes")}
                    for t in e.get("top_logprobs") or ()
                ],
            }
            for e in entries
        ]
    }


def finish_reason(done_reason: str | None, tool_calls_sent: bool) -> str:
    """OpenAI's finish_reason: tool_calls when tools were called, length on num_predict."""
    if done_reason == "length":
        return "length"
    return "tool_calls" if tool_calls_sent else "stop"


def to_completion(ollama: dict[str, Any] | list[dict[str, Any]], ctx: ResponseContext,
                  shape: ReplyShape = PLAIN) -> dict[str, Any]:
    """Ollama's non-streaming ``/api/chat`` answer → an OpenAI ``chat.completion``; a list of
    answers (``n`` > 1) becomes ``choices[i]``, with their usage summed."""
    answers = ollama if isinstance(ollama, list) else [ollama]
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for answer in answers:
        for key, value in to_usage(answer).items():
            usage[key] += value
    return {
        "id": ctx.id,
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [to_choice(answer, index, ctx, shape) for index, answer in enumerate(answers)],
        "usage": usage,
    } | ({} if ctx.service_tier is None else {"service_tier": ctx.service_tier})


def to_choice(ollama: dict[str, Any], index: int, ctx: ResponseContext, shape: ReplyShape) -> dict[str, Any]:
    """One answer as ``choices[index]``: content or tool calls, thinking, logprobs, finish."""
    message = ollama.get("message") or {}
    content = message.get("content") or ""
    done_reason = ollama.get("done_reason")
    if shape.forced is not None:
        name, arguments = parse_call(shape.forced, content, cut=done_reason == "length")
        content = ""
        calls = [{"id": ctx.new_call_id(), "type": "function", "function": {"name": name, "arguments": arguments}}]
    else:
        calls = to_tool_calls(message.get("tool_calls") or [], 0, ctx)
        for call in calls:
            del call["index"]  # index belongs to streamed deltas only
        if shape.one_tool_call and len(calls) > 1:
            log.debug("parallel_tool_calls is false: dropped %d of %d tool calls", len(calls) - 1, len(calls))
            calls = calls[:1]
    reply: dict[str, Any] = {"role": "assistant", "content": content if content or not calls else None}
    thinking = message.get("thinking")
    if thinking:
        for key in shape.reasoning_keys:
            reply[key] = thinking
    if calls:
        reply["tool_calls"] = calls
    return {
        "index": index,
        "message": reply,
        # OpenAI gives no logprobs for a tool call, so a forced one has none (as when streamed).
        "logprobs": None if shape.forced is not None else to_logprobs(ollama.get("logprobs")),
        "finish_reason": finish_reason(done_reason, bool(calls)),
    }
