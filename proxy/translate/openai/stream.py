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

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...errors import ProxyError, UpstreamError, UpstreamFault
from ..keys import camelize
from ..ndjson import DONE, error_frame, final_counts, frame, parse_line, translate_read
from ..tool_choice import CallScanner, ForcedCall, check_streamed, not_a_call
from .chat import (
    PLAIN,
    ReplyShape,
    ResponseContext,
    finish_reason,
    to_logprobs,
    to_tool_calls,
    to_usage,
)

__all__ = [
    "DONE", "StreamState", "chunks_for", "closing_frames", "error_frame", "forced_chunks_for", "frame",
    "frames_for_forced_read", "frames_for_read", "new_stream",
]  # fmt: skip

log = logging.getLogger("proxy.translate")

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
    lines: int = 0
    final: dict[str, Any] | None = None
    content_head: bytes = field(default=b"", repr=False)
    content_tail: bytes = field(default=b"", repr=False)
    thinking_parts: tuple[bytes, ...] = field(default=(), repr=False)  # joined by the thinking
    args_head: bytes = field(default=b"", repr=False)  # a forced call's argument fragment
    args_tail: bytes = field(default=b"", repr=False)
    index: int = 0  # the choice this stream fills (n > 1: one stream per choice)
    closes_answer: bool = True  # its end also ends the answer (usage chunk, [DONE]); n > 1: the merger's
    reasoning_keys: tuple[str, ...] = ("reasoning",)
    one_tool_call: bool = False
    forced: ForcedStream | None = None


@dataclass
class ForcedStream:
    """A forced tool call being streamed: the output so far and how much of it went out."""

    call: ForcedCall
    scanner: CallScanner | None  # "required": finds the name and the arguments in the output
    parts: list[str] = field(default_factory=list)  # named: the output, piece by piece
    announced: bool = False
    pending: str = ""  # "required": arguments generated before the name (held until it comes)

    @property
    def text(self) -> str:
        """The whole output so far."""
        return self.scanner.text if self.scanner is not None else "".join(self.parts)


def new_stream(ctx: ResponseContext, *, include_usage: bool = False, camel: bool = False,
               max_line_bytes: int = 16 * 1024 * 1024, index: int = 0, closes_answer: bool = True,
               shape: ReplyShape = PLAIN) -> StreamState:
    """A fresh state with the content-only frame template pre-serialised."""
    state = StreamState(ctx, include_usage, camel, max_line_bytes, index=index, closes_answer=closes_answer,
                        reasoning_keys=shape.reasoning_keys, one_tool_call=shape.one_tool_call)
    if shape.forced is not None:
        state.forced = ForcedStream(shape.forced, None if shape.forced.named else CallScanner())
    slot = orjson.dumps(_SLOT)
    head, sep, tail = frame(_chunk(state, {"content": _SLOT})).partition(slot)
    assert sep, "content slot missing from template"
    state.content_head, state.content_tail = head, tail
    # Thinking lines (thinking-heavy streams are mostly these) get a template too, with one slot
    # per reasoning key; so do a forced call's argument fragments.
    state.thinking_parts = tuple(frame(_chunk(state, dict.fromkeys(state.reasoning_keys, _SLOT))).split(slot))
    fragment = {"tool_calls": [{"index": 0, "function": {"arguments": _SLOT}}]}
    state.args_head, _, state.args_tail = frame(_chunk(state, fragment)).partition(slot)
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
_THINKING = b'","thinking":"'  # after an empty content: a thinking line
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
            if literal.startswith(_THINKING):
                literal = literal[len(_THINKING) :]
                if not _UNSAFE.search(literal) and (literal.isascii() or _is_utf8(literal)):
                    return (b'"' + literal + b'"').join(state.thinking_parts)
    data = parse_line(line)
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
    if (  # the same for a thinking line: role, empty content, thinking
        state.role_sent
        and type(message) is dict
        and len(message) == 3
        and message.get("content") == ""
        and type(thinking := message.get("thinking")) is str
        and thinking
        and "role" in message
        and data.get("done") is False
        and "logprobs" not in data
    ):
        return orjson.dumps(thinking).join(state.thinking_parts)
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
    if calls and state.one_tool_call:
        calls = _first_call_only(state, calls)
    frames = []
    if not done or content or thinking or calls or not state.role_sent or data.get("logprobs"):
        delta: dict[str, Any] = {}
        if not state.role_sent:
            delta["role"] = "assistant"
            state.role_sent = True
        logprobs = to_logprobs(data.get("logprobs"))
        if thinking and (content or calls):
            # Thinking and answer in one line go out as two chunks, reasoning first, as Ollama's
            # own /v1 does (since 0.18): clients that read a delta as reasoning *or* content
            # (if/elif) would drop the answer's first text otherwise.
            frames.append(frame(_chunk(state, _reasoning(state, delta, thinking), logprobs=logprobs)))
            delta, thinking, logprobs = {}, "", None
        if content or not (thinking or calls):
            delta["content"] = content
        if thinking:
            _reasoning(state, delta, thinking)
        if calls:
            delta["tool_calls"] = to_tool_calls(calls, state.next_tool_index, state.ctx)
            state.next_tool_index += len(calls)
            state.tool_calls_sent = True
        frames.append(frame(_chunk(state, delta, logprobs=logprobs)))
    if done:
        frames.append(_end(state, data, finish_reason(data.get("done_reason"), state.tool_calls_sent)))
    return b"".join(frames)


def _reasoning(state: StreamState, delta: dict[str, Any], thinking: str) -> dict[str, Any]:
    for key in state.reasoning_keys:
        delta[key] = thinking
    return delta


def _first_call_only(state: StreamState, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``parallel_tool_calls: false``: the first call of the answer is kept, the others dropped."""
    kept = calls[:1] if state.next_tool_index == 0 else []
    log.debug("parallel_tool_calls is false: dropped %d tool call(s)", len(calls) - len(kept))
    return kept


def _end(state: StreamState, data: dict[str, Any], reason: str) -> bytes:
    """The finish frame, and for the answer's last stream its usage frame and ``[DONE]``."""
    state.done = True
    state.final = final_counts(data)
    state.usage = to_usage(data)
    frames = [frame(_chunk(state, {}, reason=reason))]
    if state.closes_answer:
        if state.include_usage:
            frames.append(frame(_usage_chunk(state, state.usage)))
        frames.append(DONE)
    return b"".join(frames)


def closing_frames(states: list[StreamState]) -> bytes:
    """What ends an answer of several streams (n > 1): the summed usage frame, ``[DONE]``."""
    if not states[0].include_usage:
        return DONE
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for state in states:
        for key, value in (state.usage or {}).items():
            usage[key] += value
    return frame(_usage_chunk(states[0], usage)) + DONE


# ---- forced tool calls (translate/tool_choice.py) -----------------------------------------------


def frames_for_forced_read(state: StreamState, data: bytes) -> bytes:
    """``frames_for_read`` for a forced tool call: the content is the call, streamed as such."""
    return translate_read(state, data, forced_chunks_for)


def forced_chunks_for(state: StreamState, line: bytes) -> bytes:
    """The SSE frame(s) for one line of a forced call's stream: thinking as reasoning, the
    constrained JSON as ``tool_calls[0]`` deltas (announce, then argument fragments as they are
    generated), and at the end the check that the whole output is a valid call. Logprobs are
    not sent: OpenAI gives none for tool calls."""
    forced = state.forced
    assert forced is not None, "forced_chunks_for needs a forced stream"
    if state.done:
        return b""
    # Fast path: a call under way, a plain content line: no parsing (for a named call the
    # fragment is the line's JSON string, copied as it is).
    if forced.announced and line.endswith(_PLAIN_END):
        start = line.find(_MESSAGE)
        if start > 0 and line.startswith(b'{"model":"'):
            literal = line[start + len(_MESSAGE) : -len(_PLAIN_END)]
            if literal and not _UNSAFE.search(literal) and (literal.isascii() or _is_utf8(literal)):
                if forced.scanner is not None:
                    return _call_frames(state, forced, literal.decode())
                forced.parts.append(literal.decode())
                return state.args_head + b'"' + literal + b'"' + state.args_tail
    data = parse_line(line)
    if "error" in data:
        raise UpstreamError(str(data["error"]) or "Ollama reported an error.")
    message = data.get("message")
    if not isinstance(message, dict):
        message = {}
    frames = []
    thinking = message.get("thinking") or ""
    if thinking:
        if state.role_sent:
            frames.append(orjson.dumps(thinking).join(state.thinking_parts))
        else:
            frames.append(frame(_chunk(state, _reasoning(state, _role(state), thinking))))
    content = message.get("content") or ""
    if content:
        frames.append(_call_frames(state, forced, content))
    if data.get("done") is True:
        cut = data.get("done_reason") == "length"
        if not cut or not forced.announced:
            # A cut-off call goes out as generated (OpenAI does the same); one cut off before it
            # began, or a finished one that is not a valid call, ends the stream with a 502 frame.
            check_streamed(forced.call, forced.scanner, forced.text, cut=cut)
        if not state.role_sent:
            frames.append(frame(_chunk(state, _role(state))))
        frames.append(_end(state, data, "length" if cut else "tool_calls"))
    return b"".join(frames)


def _role(state: StreamState) -> dict[str, Any]:
    if state.role_sent:
        return {}
    state.role_sent = True
    return {"role": "assistant"}


def _call_frames(state: StreamState, forced: ForcedStream, content: str) -> bytes:
    """The frames this piece of the constrained output adds to the call."""
    scanner = forced.scanner
    if forced.announced:  # the common case: one more fragment of the arguments
        if scanner is None:
            forced.parts.append(content)
            return state.args_head + orjson.dumps(content) + state.args_tail
        fragment = scanner.feed(content)
        return state.args_head + orjson.dumps(fragment) + state.args_tail if fragment else b""
    frames = []
    name: str | None
    if scanner is None:  # named: the output is the arguments
        if not forced.parts:
            content = content.lstrip()  # whitespace before the object: not sent
            if not content:
                return b""
        forced.parts.append(content)
        name, fragment = forced.call.names[0], content
    else:
        fragment = scanner.feed(content)
        name = scanner.name
        if name is not None and name not in forced.call.names:
            raise not_a_call(forced.call, "its output does not name one of the tools")
        if not forced.announced and fragment:
            forced.pending += fragment  # the arguments came first: held until the name is known
            fragment = ""
    if name is not None and not forced.announced:
        forced.announced = True
        state.tool_calls_sent = True
        call = {"index": 0, "id": state.ctx.new_call_id(), "type": "function",
                "function": {"name": name, "arguments": ""}}
        frames.append(frame(_chunk(state, {**_role(state), "content": None, "tool_calls": [call]})))
        fragment, forced.pending = forced.pending + fragment, ""
    if fragment and forced.announced:
        frames.append(state.args_head + orjson.dumps(fragment) + state.args_tail)
    return b"".join(frames)


def _chunk(state: StreamState, delta: dict[str, Any], reason: str | None = None,
           logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    ctx = state.ctx
    chunk: dict[str, Any] = {
        "id": ctx.id,
        "object": "chat.completion.chunk",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [{"index": state.index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}],
    }
    if ctx.service_tier is not None:
        chunk["service_tier"] = ctx.service_tier
    if state.include_usage:
        chunk["usage"] = None  # OpenAI sends usage: null on every chunk but the last
    return camelize(chunk) if state.camel else chunk


def _usage_chunk(state: StreamState, usage: dict[str, int] | None) -> dict[str, Any]:
    ctx = state.ctx
    chunk = {
        "id": ctx.id,
        "object": "chat.completion.chunk",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [],
        "usage": usage,
    }
    if ctx.service_tier is not None:
        chunk["service_tier"] = ctx.service_tier
    return camelize(chunk) if state.camel else chunk
