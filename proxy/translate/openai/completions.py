"""OpenAI legacy completions ⇄ Ollama ``/api/generate``, as pure functions.

``from_openai`` turns a ``/v1/completions`` body into Ollama's, refusing what Ollama cannot do
(``echo``, ``best_of`` and ``n`` above 1, several prompts, token-id prompts) with a 400 naming
the parameter. ``to_completion`` translates the non-streaming answer; ``frames_for_read``
translates the NDJSON stream into ``text_completion`` SSE chunks, the usage chunk when asked
for, and ``data: [DONE]``. Ids and the clock come in through ``CompletionContext``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import InvalidRequest, ProxyError, UnsupportedParameter, UpstreamFault
from ..fields import (
    boolean,
    include_usage,
    integer,
    keep_alive,
    log_unknown,
    model_name,
    obj,
    string,
    type_name,
)
from ..keys import camelize
from ..ndjson import DONE, final_counts, frame, parse_line, translate_read
from .chat import OLLAMA_OPTIONS, finish_reason, to_options, to_usage

__all__ = [
    "CompletionContext",
    "CompletionRequest",
    "CompletionStream",
    "chunks_for",
    "frames_for_read",
    "from_openai",
    "new_stream",
    "styled",
    "to_completion",
    "to_logprobs",
]


# Parameters OpenAI defines for /v1/completions, in the order of its reference.
MAPPED = (
    "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs",
    "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix",
    "temperature", "top_p",
)  # fmt: skip
NO_EFFECT = ("user",)  # caller bookkeeping
OLLAMA_TOP_LEVEL = ("keep_alive", "think", "raw", "options")

_KNOWN = frozenset((*MAPPED, *NO_EFFECT, *OLLAMA_TOP_LEVEL, *OLLAMA_OPTIONS))
# Sampling fields handed to the chat translator's ``to_options`` (one rule for both endpoints).
_OPTION_FIELDS = frozenset(
    ("options", "temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "stop",
     "max_tokens", *OLLAMA_OPTIONS)
)  # fmt: skip


@dataclass(frozen=True)
class CompletionRequest:
    """A translated request: Ollama's body plus what the response side needs to know."""

    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    logprobs: int | None


@dataclass(frozen=True)
class CompletionContext:
    """What the response translation may not invent itself: the id and the clock."""

    id: str
    created: int
    model: str


def from_openai(body: dict[str, Any]) -> CompletionRequest:
    """Translate an OpenAI completions request into Ollama's ``/api/generate`` body."""
    log_unknown(body, _KNOWN)
    model = model_name(body)
    _refuse_unsupported(body)
    stream = bool(boolean(body, "stream"))

    ollama: dict[str, Any] = {
        "model": model,
        "prompt": to_prompt(body.get("prompt")),
        "stream": stream,
    }
    suffix = string(body, "suffix")
    if suffix:
        ollama["suffix"] = suffix  # Ollama answers 400 "does not support insert" for most models
    logprobs = integer(body, "logprobs")
    if logprobs is not None:
        if not 0 <= logprobs <= 20:  # Ollama's bound for top_logprobs
            raise InvalidRequest("'logprobs' must be between 0 and 20.", param="logprobs")
        ollama["logprobs"] = True
        if logprobs:
            ollama["top_logprobs"] = logprobs
    for key in ("keep_alive", "think", "raw"):
        value = body.get(key)
        if value is not None:
            ollama[key] = _extra(key, value)
    options = to_options({k: v for k, v in body.items() if k in _OPTION_FIELDS})
    if options:
        ollama["options"] = options
    return CompletionRequest(ollama, model, stream, include_usage(body), logprobs)


def _refuse_unsupported(body: dict[str, Any]) -> None:
    if boolean(body, "echo"):
        raise UnsupportedParameter(
            "Ollama cannot echo the prompt; 'echo' must be false.", param="echo"
        )
    best_of = integer(body, "best_of")
    if best_of is not None and best_of != 1:
        raise UnsupportedParameter(
            "Ollama generates one candidate; 'best_of' must be 1.", param="best_of"
        )
    n = integer(body, "n")
    if n is not None and n != 1:
        raise UnsupportedParameter(
            "Ollama generates one choice per request; 'n' must be 1.", param="n"
        )
    if obj(body, "logit_bias"):
        raise UnsupportedParameter("'logit_bias' is not supported by Ollama.", param="logit_bias")


def to_prompt(prompt: Any) -> str:
    """``prompt`` as the one string ``/api/generate`` takes."""
    if prompt is None:
        raise InvalidRequest("Missing required parameter: 'prompt'.", param="prompt")
    if isinstance(prompt, str):
        return prompt
    if not isinstance(prompt, list):
        raise InvalidRequest(
            f"'prompt' must be a string or an array of strings, got {type_name(prompt)}.",
            param="prompt",
        )
    if any(isinstance(p, (int, list)) and not isinstance(p, bool) for p in prompt):
        raise UnsupportedParameter(
            "'prompt' as token ids is not supported by Ollama; send text.", param="prompt"
        )
    if not prompt or not all(isinstance(p, str) for p in prompt):
        raise InvalidRequest(
            "'prompt' must be a string or a non-empty array of strings.", param="prompt"
        )
    if len(prompt) != 1:
        # Each prompt is its own choice in OpenAI; Ollama generates for one prompt per request.
        raise UnsupportedParameter(
            "Ollama completes one prompt per request; send 'prompt' as one string.", param="prompt"
        )
    return str(prompt[0])


def _extra(key: str, value: Any) -> Any:
    """An Ollama-native top-level field, type-checked as Ollama's ``GenerateRequest`` would."""
    if key == "raw" and not isinstance(value, bool):
        raise InvalidRequest("'raw' must be a boolean.", param="raw")
    if key == "think" and not isinstance(value, (bool, str)):
        raise InvalidRequest("'think' must be a boolean or a level.", param="think")
    if key == "keep_alive":
        return keep_alive({key: value})
    return value


def to_logprobs(entries: Any, offset: int, top: bool) -> tuple[dict[str, Any] | None, int]:
    """Ollama's per-token logprobs → OpenAI's legacy ``logprobs`` object, and the next offset.

    ``text_offset`` counts characters into the choice's ``text`` (continuing across a stream),
    as vLLM does for completions without ``echo``.
    """
    if not isinstance(entries, list) or not entries:
        return None, offset
    tokens: list[str] = []
    token_logprobs: list[float] = []
    top_logprobs: list[dict[str, float]] = []
    text_offset: list[int] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        token = str(entry.get("token", ""))
        tokens.append(token)
        token_logprobs.append(float(entry.get("logprob", 0.0)))
        text_offset.append(offset)
        offset += len(token)
        alternatives = entry.get("top_logprobs") or ()
        top_logprobs.append(
            {
                str(t.get("token", "")): float(t.get("logprob", 0.0))
                for t in alternatives
                if isinstance(t, dict)
            }
        )
    result = {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs if top else None,
        "text_offset": text_offset,
    }
    return result, offset


def to_completion(
    ollama: dict[str, Any], ctx: CompletionContext, logprobs: int | None = None
) -> dict[str, Any]:
    """Ollama's non-streaming ``/api/generate`` answer → an OpenAI ``text_completion``."""
    text = ollama.get("response")
    lp = None
    if logprobs is not None:
        lp, _ = to_logprobs(ollama.get("logprobs"), 0, bool(logprobs))
    return {
        "id": ctx.id,
        "object": "text_completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [
            {
                "text": text if isinstance(text, str) else "",
                "index": 0,
                "logprobs": lp,
                "finish_reason": finish_reason(ollama.get("done_reason"), False),
            }
        ],
        "usage": to_usage(ollama),
    }


# ---- streaming ------------------------------------------------------------------------------


@dataclass
class CompletionStream:
    """Everything one stream needs across lines; ``id`` and ``created`` stay fixed."""

    ctx: CompletionContext
    include_usage: bool = False
    camel: bool = False
    logprobs: int | None = None
    max_line_bytes: int = 16 * 1024 * 1024
    text_offset: int = 0
    done: bool = False
    error: ProxyError | None = None
    tail: bytes = b""
    lines: int = 0
    final: dict[str, Any] | None = None


def new_stream(
    ctx: CompletionContext,
    request: CompletionRequest,
    *,
    camel: bool = False,
    max_line_bytes: int = 16 * 1024 * 1024,
) -> CompletionStream:
    return CompletionStream(ctx, request.include_usage, camel, request.logprobs, max_line_bytes)


def frames_for_read(state: CompletionStream, data: bytes) -> bytes:
    """The SSE bytes for every complete generate line in ``state.tail + data``; keeps the rest."""
    return translate_read(state, data, chunks_for)


def chunks_for(state: CompletionStream, line: bytes) -> bytes:
    """The SSE frame(s) for one NDJSON line of Ollama's ``/api/generate`` stream."""
    if state.done:
        return b""
    data = parse_line(line)
    if "error" in data:
        raise UpstreamFault(str(data["error"]) or "Ollama reported an error.")  # text: log only
    text = data.get("response")
    text = text if isinstance(text, str) else ""
    lp = None
    if state.logprobs is not None:
        lp, state.text_offset = to_logprobs(
            data.get("logprobs"), state.text_offset, bool(state.logprobs)
        )
    done = data.get("done") is True
    if not done:
        # A thinking model's reasoning lines carry no text: a legacy completion has no place
        # for them, so they make no frame.
        return frame(_chunk(state, text, lp, None)) if text or lp else b""
    state.done = True
    state.final = final_counts(data)
    frames = [frame(_chunk(state, text, lp, finish_reason(data.get("done_reason"), False)))]
    if state.include_usage:
        frames.append(frame(_usage_chunk(state, to_usage(data))))
    frames.append(DONE)
    return b"".join(frames)


def _chunk(
    state: CompletionStream, text: str, logprobs: dict[str, Any] | None, reason: str | None
) -> dict[str, Any]:
    ctx = state.ctx
    chunk: dict[str, Any] = {
        "id": ctx.id,
        "object": "text_completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": reason}],
    }
    if state.include_usage:
        chunk["usage"] = None  # OpenAI sends usage: null on every chunk but the last
    return styled(chunk, state.camel)


def styled(payload: dict[str, Any], camel: bool) -> dict[str, Any]:
    """``payload`` in the configured key style; ``top_logprobs`` keys are tokens, kept as sent."""
    if not camel:
        return payload
    choices = payload["choices"]
    bare = {
        **payload,
        "choices": [{k: v for k, v in c.items() if k != "logprobs"} for c in choices],
    }
    out: dict[str, Any] = camelize(bare)
    for choice, original in zip(out["choices"], choices):
        lp = original.get("logprobs")
        if lp is not None:
            top = lp.get("top_logprobs")
            lp = camelize({k: v for k, v in lp.items() if k != "top_logprobs"})
            lp["topLogprobs"] = top
        choice["logprobs"] = lp
    return out


def _usage_chunk(state: CompletionStream, usage: dict[str, int]) -> dict[str, Any]:
    ctx = state.ctx
    chunk = {
        "id": ctx.id,
        "object": "text_completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [],
        "usage": usage,
    }
    return camelize(chunk) if state.camel else chunk
