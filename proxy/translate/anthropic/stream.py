"""Ollama's NDJSON chat stream → Anthropic's Messages events, as pure functions over one state.

The event order is Anthropic's: ``message_start`` (then a ``ping``, as Anthropic sends one),
for each content block ``content_block_start``, its ``content_block_delta`` events
(``thinking_delta`` then one ``signature_delta``; ``text_delta``; ``input_json_delta``) and
``content_block_stop``; at the end ``message_delta`` (stop reason, usage) and
``message_stop``. A fault inside the stream is an ``error`` event, never a silent end.

As for chat (``translate/stream.py``), ``frames_for_read`` turns one socket read into the
bytes of all its complete lines, so one read is one write; a plain text line inside a text
block is copied into a template made when the block opened, without parsing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...errors import ProxyError, UpstreamError, UpstreamFault, to_anthropic_envelope
from ..ndjson import final_counts, parse_line, translate_read
from ..tool_choice import CallScanner, check_streamed, not_a_call
from .response import (
    AnswerShape,
    MessageContext,
    StopMatcher,
    stop_reason,
    to_usage,
    tool_use_block,
)

__all__ = ["PING", "MessagesStream", "error_event", "event", "frames_for_read", "new_stream"]


def event(name: bytes, payload: dict[str, Any]) -> bytes:
    """One SSE event with its ``event:`` line, as Anthropic writes them."""
    return b"event: " + name + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


PING = event(b"ping", {"type": "ping"})
_SLOT = "\x1fslot\x1f"  # where a delta's text goes in its block's template
_STOP_TEMPLATE = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
_MESSAGE_STOP = event(b"message_stop", {"type": "message_stop"})


def error_event(error: ProxyError, request_id: str | None = None) -> bytes:
    """The ``error`` event that ends a started stream (the SDKs raise it as ``APIStatusError``)."""
    return event(b"error", to_anthropic_envelope(error, request_id))


@dataclass
class Forced:
    """A forced tool call being streamed (tool_choice ``any`` / ``tool``)."""

    scanner: CallScanner | None  # "any": finds the name, then the arguments
    parts: list[str] = field(default_factory=list)  # "tool": the output, which is the arguments
    announced: bool = False
    pending: str = ""


@dataclass
class MessagesStream:
    """Everything one Messages stream needs across lines (satisfies ``ndjson.LineState``)."""

    ctx: MessageContext
    shape: AnswerShape
    max_line_bytes: int = 16 * 1024 * 1024
    done: bool = False
    error: ProxyError | None = None
    tail: bytes = b""
    lines: int = 0
    final: dict[str, Any] | None = None
    started: bool = False
    block: str | None = None  # the open content block: "text", "thinking", "tool_use"
    index: int = -1  # the open (or last) block's index
    tool_used: bool = False
    ended_by_stop: bool = False  # a stop sequence ended it: the upstream is to be closed
    thinking: list[str] = field(default_factory=list)  # the open thinking block's text, for its signature
    stops: StopMatcher | None = None
    forced: Forced | None = None
    delta_head: bytes = field(default=b"", repr=False)  # the open block's delta template
    delta_tail: bytes = field(default=b"", repr=False)


def new_stream(ctx: MessageContext, shape: AnswerShape, *, max_line_bytes: int = 16 * 1024 * 1024) -> MessagesStream:
    state = MessagesStream(ctx, shape, max_line_bytes)
    if shape.stop_sequences:
        state.stops = StopMatcher(shape.stop_sequences)
    if shape.forced is not None:
        state.forced = Forced(None if shape.forced.named else CallScanner())
    return state


def frames_for_read(state: MessagesStream, data: bytes) -> bytes:
    """The event bytes for every complete line in ``state.tail + data``; keeps the rest."""
    return translate_read(state, data, events_for, _fault)


def _fault(state: MessagesStream, exc: UpstreamError) -> bytes:
    return _start(state) + error_event(exc)


# A plain content line as Ollama writes it (see translate/stream.py for why the bytes suffice).
_MESSAGE = b'","message":{"role":"assistant","content":"'
_PLAIN_END = b'"},"done":false}'
_THINKING = b'","thinking":"'
_UNSAFE = re.compile(rb'["\\\x00-\x1f]')


def _safe(literal: bytes) -> bool:
    if _UNSAFE.search(literal):
        return False
    if literal.isascii():
        return True
    try:
        literal.decode()
    except UnicodeDecodeError:
        return False
    return True


def events_for(state: MessagesStream, line: bytes) -> bytes:
    """The events for one NDJSON line of Ollama's ``/api/chat`` stream."""
    if state.done:
        return b""
    if state.block is not None and line.endswith(_PLAIN_END) and line.startswith(b'{"model":"'):
        start = line.find(_MESSAGE)
        if start > 0:
            literal = line[start + len(_MESSAGE) : -len(_PLAIN_END)]
            if state.block == "text" and state.stops is None and literal and _safe(literal):
                return state.delta_head + b'"' + literal + b'"' + state.delta_tail
            if state.block == "thinking" and literal.startswith(_THINKING):
                literal = literal[len(_THINKING) :]
                if literal and _safe(literal):
                    state.thinking.append(literal.decode())
                    if not state.shape.show_thinking:
                        return b""
                    return state.delta_head + b'"' + literal + b'"' + state.delta_tail
    return _full_path(state, parse_line(line))


def _full_path(state: MessagesStream, data: dict[str, Any]) -> bytes:
    if "error" in data:
        # Ollama's runner failed mid-answer; its text (paths, GPU errors) is for the log only.
        raise UpstreamFault(str(data["error"]) or "Ollama reported an error.")
    message = data.get("message")
    if not isinstance(message, dict):
        message = {}
    out = [_start(state)]
    thinking = message.get("thinking")
    if isinstance(thinking, str) and thinking:
        out.append(_thinking(state, thinking))
    content = message.get("content")
    if isinstance(content, str) and content:
        out.append(_call(state, content) if state.forced is not None else _text(state, content))
        if state.done:
            return b"".join(out)
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls and state.forced is None:
        out.append(_tool_calls(state, calls))
    if data.get("done") is True:
        out.append(_finish(state, data))
    return b"".join(out)


def _start(state: MessagesStream) -> bytes:
    if state.started:
        return b""
    state.started = True
    ctx = state.ctx
    message: dict[str, Any] = {"id": ctx.id, "type": "message", "role": "assistant", "model": ctx.model, "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": to_usage(None)}
    return event(b"message_start", {"type": "message_start", "message": message}) + PING


def _open(state: MessagesStream, kind: str, block: dict[str, Any], delta: dict[str, Any] | None) -> bytes:
    """Close the open block, open ``block``; ``delta``: the template of its deltas (one slot)."""
    out = _close(state)
    state.index += 1
    state.block = kind
    if delta is not None:
        slot = orjson.dumps(_SLOT)
        head, _, tail = event(b"content_block_delta", {"type": "content_block_delta", "index": state.index,
                                                       "delta": delta}).partition(slot)
        state.delta_head, state.delta_tail = head, tail
    return out + event(b"content_block_start", {"type": "content_block_start", "index": state.index,
                                                "content_block": block})


def _close(state: MessagesStream) -> bytes:
    if state.block is None:
        return b""
    out = b""
    if state.block == "thinking":
        signature = state.ctx.signer.sign("".join(state.thinking))
        state.thinking = []
        out = event(b"content_block_delta", {"type": "content_block_delta", "index": state.index,
                                             "delta": {"type": "signature_delta", "signature": signature}})
    state.block = None
    return out + _STOP_TEMPLATE % state.index


def _delta(state: MessagesStream, text: str) -> bytes:
    return state.delta_head + orjson.dumps(text) + state.delta_tail


def _thinking(state: MessagesStream, text: str) -> bytes:
    out = b""
    if state.block != "thinking":
        out = _open(state, "thinking", {"type": "thinking", "thinking": "", "signature": ""},
                    {"type": "thinking_delta", "thinking": _SLOT})
    state.thinking.append(text)
    return out + _delta(state, text) if state.shape.show_thinking else out


def _text(state: MessagesStream, text: str, *, held: bool = False) -> bytes:
    """Text into the open text block; ``held``: the held-back end, no longer matched."""
    matched = None
    if state.stops is not None and not held:
        text, matched = state.stops.feed(text)
    out = b""
    if text:
        if state.block != "text":
            out = _open(state, "text", {"type": "text", "text": ""}, {"type": "text_delta", "text": _SLOT})
        out += _delta(state, text)
    if matched is not None:
        state.ended_by_stop = True
        out += _end(state, None, stop_reason(None, False, matched), matched)
    return out


def _tool_calls(state: MessagesStream, calls: list[Any]) -> bytes:
    out = []
    for call in calls:
        if state.shape.one_tool_call and state.tool_used:
            break  # disable_parallel_tool_use: the first call of the answer is kept
        block = tool_use_block(call if isinstance(call, dict) else {}, state.ctx)
        arguments = block["input"]
        block["input"] = {}
        out.append(_open(state, "tool_use", block, None))
        out.append(event(b"content_block_delta", {"type": "content_block_delta", "index": state.index,
                                                  "delta": {"type": "input_json_delta",
                                                            "partial_json": orjson.dumps(arguments).decode()}}))
        out.append(_close(state))
        state.tool_used = True
    return b"".join(out)


def _call(state: MessagesStream, content: str) -> bytes:
    """A piece of a forced call's constrained output: the tool announced once its name is
    known, its arguments as ``input_json_delta`` as they come."""
    forced = state.forced
    call = state.shape.forced
    assert forced is not None and call is not None
    scanner = forced.scanner
    if scanner is None:
        if not forced.parts:
            content = content.lstrip()  # whitespace before the object: not sent
            if not content:
                return b""
        forced.parts.append(content)
        name: str | None = call.names[0]
        fragment = content
    else:
        fragment = scanner.feed(content)
        name = scanner.name
        if name is not None and name not in call.names:
            raise not_a_call(call, "its output does not name one of the tools")
    out = b""
    if not forced.announced:
        if name is None:
            forced.pending += fragment  # arguments before the name: held until it comes
            return b""
        forced.announced = True
        state.tool_used = True
        block = {"type": "tool_use", "id": state.ctx.new_tool_id(), "name": name, "input": {}}
        out = _open(state, "tool_use", block, {"type": "input_json_delta", "partial_json": _SLOT})
        fragment, forced.pending = forced.pending + fragment, ""
    return out + _delta(state, fragment) if fragment else out


def _finish(state: MessagesStream, data: dict[str, Any]) -> bytes:
    out = b""
    if state.stops is not None and state.forced is None:
        rest = state.stops.flush()
        if rest:
            out = _text(state, rest, held=True)
    forced, call = state.forced, state.shape.forced
    cut = data.get("done_reason") == "length"
    if forced is not None and call is not None and (not cut or not forced.announced):
        text = forced.scanner.text if forced.scanner is not None else "".join(forced.parts)
        check_streamed(call, forced.scanner, text, cut=cut)
    reason = "max_tokens" if cut else stop_reason(None, state.tool_used, None)
    return out + _end(state, data, reason, None)


def _end(state: MessagesStream, data: dict[str, Any] | None, reason: str, matched: str | None) -> bytes:
    state.done = True
    state.final = final_counts(data) if data is not None else None
    usage = to_usage(state.final, max(0, state.lines - 1))
    delta = event(b"message_delta", {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": matched},
                                     "usage": {"input_tokens": usage["input_tokens"],
                                               "output_tokens": usage["output_tokens"]}})
    return _close(state) + delta + _MESSAGE_STOP
