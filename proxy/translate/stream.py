"""Ollama's NDJSON chat stream → OpenAI Server-Sent Events, as pure functions over one state.

``frames_for_read(state, data)`` takes whatever one socket read returned, translates every
complete NDJSON line in it (keeping a partial last line for the next read) and returns the SSE
bytes for all of them, so the writer sends one read's frames in one ``write`` and never waits
for more data. Each upstream line becomes one ``data: {...}`` frame; Ollama's final line also
brings the ``finish_reason`` frame (OpenAI sends it on its own chunk), the usage frame when the
client asked for ``stream_options.include_usage``, and ``data: [DONE]``.

Most lines carry only a bit of content. For those the frame is a template made once per stream
(from the same dict path, so the bytes are identical) with only the content filled in: copied
from the line as it is when its JSON literal needs no escaping (no parse at all), else decoded
and re-encoded. The first, thinking, tool-call, logprob and final lines take the full dict path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import ProxyError, UpstreamError, UpstreamFault
from .chat import ResponseContext, finish_reason, to_logprobs, to_tool_calls, to_usage
from .keys import camelize
from .ndjson import DONE, error_frame, frame, translate_read

__all__ = ["DONE", "StreamState", "chunks_for", "error_frame", "frame", "frames_for_read", "new_stream"]

_SLOT = "\x1fcontent-slot\x1f"


@dataclass
class StreamState:
    """Everything one stream needs across lines; ``id`` and ``created`` stay fixed."""

    ctx: ResponseContext
    include_usage: bool = False
    camel: bool = False
    max_line_bytes: int = 16 * 1024 * 1024
    role_sent: bool = False
    next_tool_index: int = 0
    tool_calls_sent: bool = False
    usage: dict[str, int] | None = None
    done: bool = False
    error: ProxyError | None = None
    tail: bytes = b""
    content_head: bytes = field(default=b"", repr=False)
    content_tail: bytes = field(default=b"", repr=False)


def new_stream(ctx: ResponseContext, *, include_usage: bool = False, camel: bool = False,
               max_line_bytes: int = 16 * 1024 * 1024) -> StreamState:
    """A fresh state with the content-only frame template pre-serialised."""
    state = StreamState(ctx, include_usage, camel, max_line_bytes)
    head, sep, tail = frame(_chunk(state, {"content": _SLOT})).partition(orjson.dumps(_SLOT))
    assert sep, "content slot missing from template"
    state.content_head, state.content_tail = head, tail
    return state


def frames_for_read(state: StreamState, data: bytes) -> bytes:
    """The SSE bytes for every complete chat line in ``state.tail + data``; keeps the rest."""
    return translate_read(state, data, chunks_for)


# A plain content line as Ollama (Go's encoding/json, struct field order) writes it:
#   {"model":"…","created_at":"…","message":{"role":"assistant","content":"<literal>"},"done":false}
# In valid JSON every raw '"' byte delimits a string, so the first occurrence of _MESSAGE is the
# key itself, and a literal with no '"' and no '\\' is exactly the bytes orjson writes for the
# decoded text (both write UTF-8 unescaped) unless it holds bytes no JSON string may: control
# characters or invalid UTF-8, which go to the full path to be refused.
_MESSAGE = b'","message":{"role":"assistant","content":"'
_PLAIN_END = b'"},"done":false}'
_UNSAFE = re.compile(rb'["\\\x00-\x1f]')  # a quote, a backslash or a control character


def chunks_for(state: StreamState, line: bytes) -> bytes:
    """The SSE frame(s) for one NDJSON line of Ollama's ``/api/chat`` stream."""
    if state.done:
        return b""
    # Fastest path: most lines carry only a bit of text, copied as it is, without parsing.
    if state.role_sent and line.endswith(_PLAIN_END) and line.startswith(b'{"model":"'):
        start = line.find(_MESSAGE)
        if start > 0:
            literal = line[start + len(_MESSAGE) : -len(_PLAIN_END)]
            if not _UNSAFE.search(literal) and (literal.isascii() or _is_utf8(literal)):
                return state.content_head + b'"' + literal + b'"' + state.content_tail
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise UpstreamError("Ollama sent a malformed stream line.") from None
    if type(data) is not dict:
        raise UpstreamError("Ollama sent a malformed stream line.")
    message = data.get("message")
    # Fast path: a plain content line after the first (only role and content, not done).
    if (
        state.role_sent
        and type(message) is dict
        and len(message) == 2
        and "role" in message
        and type(content := message.get("content")) is str
        and data.get("done") is False
        and "logprobs" not in data
    ):
        return state.content_head + orjson.dumps(content) + state.content_tail
    return _full_path(state, data)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def _full_path(state: StreamState, data: dict[str, Any]) -> bytes:
    if "error" in data:
        # Ollama's runner failed mid-answer; its text (paths, GPU errors) is for the log only.
        raise UpstreamFault(str(data["error"]) or "Ollama reported an error.")
    message = data.get("message")
    if not isinstance(message, dict):
        message = {}
    content = message.get("content") or ""
    thinking = message.get("thinking") or ""
    calls = message.get("tool_calls") or []
    done = data.get("done") is True
    frames = []
    if not done or content or thinking or calls or not state.role_sent or data.get("logprobs"):
        delta: dict[str, Any] = {}
        if not state.role_sent:
            delta["role"] = "assistant"
            state.role_sent = True
        if content or not (thinking or calls):
            delta["content"] = content
        if thinking:
            delta["reasoning"] = thinking
        if calls:
            delta["tool_calls"] = to_tool_calls(calls, state.next_tool_index, state.ctx)
            state.next_tool_index += len(calls)
            state.tool_calls_sent = True
        frames.append(frame(_chunk(state, delta, logprobs=to_logprobs(data.get("logprobs")))))
    if done:
        state.done = True
        state.usage = to_usage(data)
        reason = finish_reason(data.get("done_reason"), state.tool_calls_sent)
        frames.append(frame(_chunk(state, {}, reason=reason)))
        if state.include_usage:
            frames.append(frame(_usage_chunk(state)))
        frames.append(DONE)
    return b"".join(frames)


def _chunk(state: StreamState, delta: dict[str, Any], reason: str | None = None,
           logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    ctx = state.ctx
    chunk: dict[str, Any] = {
        "id": ctx.id,
        "object": "chat.completion.chunk",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": reason}],
    }
    if state.include_usage:
        chunk["usage"] = None  # OpenAI sends usage: null on every chunk but the last
    return camelize(chunk) if state.camel else chunk


def _usage_chunk(state: StreamState) -> dict[str, Any]:
    ctx = state.ctx
    chunk = {
        "id": ctx.id,
        "object": "chat.completion.chunk",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [],
        "usage": state.usage,
    }
    return camelize(chunk) if state.camel else chunk
