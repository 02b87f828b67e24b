"""Ollama's NDJSON chat stream → the Responses API's semantic events, as pure functions.

OpenAI streams a response as typed events, each an ``event: <type>`` line and a ``data:`` line
whose JSON repeats the type and carries a ``sequence_number`` (0, 1, 2 … per response):
``response.created`` and ``response.in_progress`` first; then per output item
``response.output_item.added``, its parts and deltas (``response.content_part.added``,
``response.output_text.delta`` … ``.done``, ``response.content_part.done``; the reasoning
summary's ``response.reasoning_summary_*`` events; ``response.function_call_arguments.*``) and
``response.output_item.done``; and last exactly one terminal event: ``response.completed``,
``response.incomplete`` (Ollama stopped at ``max_output_tokens``) or ``response.failed`` (an
upstream fault mid-stream). Items are opened as Ollama's lines show them: thinking opens a
reasoning item, content a message, tool calls one function_call item each.

``frames_for_read(state, data)`` returns one socket read's events in one piece, like the chat
stream. The terminal event is not in it: it waits in ``state.terminal`` so the handler can store
the finished response (``state.finished``) before the client learns it is done. Plain content
lines take a template path (no parse, no dict) as on chat; only the sequence number and the
text change between them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...errors import ProxyError, UpstreamError
from ..ndjson import final_counts, parse_line, translate_read
from .responses import ResponsesContext, call_items, finish, message_item, reasoning_item
from .responses_tools import ToolNames
from .sealed import Sealer

__all__ = ["ResponsesStream", "chunks_for", "event", "failed", "frames_for_read", "new_stream", "opening"]

_SLOT = "\x1fslot\x1f"
_SLOT_JSON = orjson.dumps(_SLOT)


@dataclass
class ResponsesStream:
    """One response's stream: its sequence, the item open now and the items finished."""

    ctx: ResponsesContext
    response: dict[str, Any]  # the response object as response.created showed it
    max_line_bytes: int = 16 * 1024 * 1024
    sealer: Sealer | None = None  # reasoning items carry encrypted_content (include)
    names: ToolNames = field(default_factory=ToolNames)  # Ollama's function names → the tools
    done: bool = False
    error: ProxyError | None = None
    tail: bytes = b""
    lines: int = 0
    final: dict[str, Any] | None = None
    started: bool = False
    seq: int = 0
    output: list[dict[str, Any]] = field(default_factory=list)  # finished items
    open_kind: str | None = None  # "reasoning" or "message" while one is open
    open_id: str = ""
    in_text: bool = False  # a message item is open: plain content lines take the template path
    parts: list[bytes] = field(default_factory=list)  # the open item's text so far, UTF-8
    message_seen: bool = False
    finished: dict[str, Any] | None = None  # the final response object, once done or failed
    terminal: bytes = b""  # its terminal event, sent by the handler after storing it
    delta_head: bytes = field(default=b"", repr=False)
    delta_mid: bytes = field(default=b"", repr=False)
    delta_tail: bytes = field(default=b"", repr=False)


def new_stream(ctx: ResponsesContext, response: dict[str, Any], max_line_bytes: int = 16 * 1024 * 1024,
               sealer: Sealer | None = None, names: ToolNames | None = None) -> ResponsesStream:
    return ResponsesStream(ctx, response, max_line_bytes, sealer, names or ToolNames())


def event(state: ResponsesStream, kind: str, payload: dict[str, Any]) -> bytes:
    """One SSE event of ``kind``, numbered next in the response's sequence."""
    body = orjson.dumps({"type": kind, "sequence_number": state.seq, **payload})
    state.seq += 1
    return b"event: " + kind.encode() + b"\ndata: " + body + b"\n\n"


def frames_for_read(state: ResponsesStream, data: bytes) -> bytes:
    """The events for every complete line in ``state.tail + data``; keeps the rest.

    An upstream fault (an ``{"error"}`` line, a malformed or overlong line) ends the response:
    the events before it are kept and ``state.terminal`` holds ``response.failed``.
    """
    if state.done:
        return b""
    return opening(state) + translate_read(state, data, chunks_for, _fault)


def _fault(state: ResponsesStream, error: UpstreamError) -> bytes:
    """The fault's ``response.failed`` is held in ``state.terminal``, sent by the writer."""
    failed(state, error)
    return b""


def opening(state: ResponsesStream) -> bytes:
    """``response.created`` and ``response.in_progress``, once, before any other event."""
    if state.started:
        return b""
    state.started = True
    return event(state, "response.created", {"response": state.response}) + event(
        state, "response.in_progress", {"response": state.response})


def failed(state: ResponsesStream, error: ProxyError) -> bytes:
    """End the response as failed: ``state.terminal`` becomes ``response.failed``.

    Returns the events still to send: the opening ones if none went out yet, and the terminal.
    The output keeps the items finished so far and the open one, marked incomplete.
    """
    head = opening(state)
    output = list(state.output)
    if state.open_kind is not None:
        output.append(_open_item(state, "incomplete"))
    state.finished = {**state.response, "status": "failed", "output": output,
                      "error": {"code": "server_error", "message": error.message}}
    state.terminal = event(state, "response.failed", {"response": state.finished})
    state.done = True
    return head + state.terminal


# A plain content line as Ollama (Go's encoding/json, struct field order) writes it; see the chat
# stream (translate/stream.py) for why copying its literal is exact when it holds no '"', '\\'
# or control character and is valid UTF-8.
_MESSAGE = b'","message":{"role":"assistant","content":"'
_PLAIN_END = b'"},"done":false}'
_UNSAFE = re.compile(rb'["\\\x00-\x1f]')
_MESSAGE_LEN, _LITERAL_END = len(_MESSAGE), -len(_PLAIN_END)
_DELTA = b"%s%d%s%s%s"  # head, sequence number, up to the delta's opening quote, text, the rest


def chunks_for(state: ResponsesStream, line: bytes) -> bytes:
    """The events for one NDJSON line of Ollama's ``/api/chat`` stream."""
    if state.done:
        return b""
    if state.in_text and line.endswith(_PLAIN_END) and line.startswith(b'{"model":"'):
        start = line.find(_MESSAGE)
        if start > 0:
            literal = line[start + _MESSAGE_LEN : _LITERAL_END]
            if not _UNSAFE.search(literal) and (literal.isascii() or _is_utf8(literal)):
                state.parts.append(literal)
                seq = state.seq
                state.seq = seq + 1
                return _DELTA % (state.delta_head, seq, state.delta_mid, literal, state.delta_tail)
    data = parse_line(line)
    if "error" in data:
        raise UpstreamError(str(data["error"]) or "Ollama reported an error.")
    message = data.get("message")
    if not isinstance(message, dict):
        message = {}
    out: list[bytes] = []
    thinking = message.get("thinking") or ""
    if thinking:
        if state.open_kind != "reasoning":
            out += _close(state)
            out += _open_reasoning(state)
        state.parts.append(thinking.encode())
        out.append(event(state, "response.reasoning_summary_text.delta", {
            "item_id": state.open_id, "output_index": len(state.output), "summary_index": 0,
            "delta": thinking}))
    content = message.get("content") or ""
    if content:
        if state.open_kind != "message":
            out += _close(state)
            out += _open_message(state)
        state.parts.append(content.encode())
        state.seq += 1
        out.append(_DELTA % (state.delta_head, state.seq - 1, state.delta_mid, orjson.dumps(content)[1:-1],
                             state.delta_tail))
    calls = message.get("tool_calls") or []
    if calls:
        out += _close(state)
        for item in call_items(calls, state.ctx, state.names):
            out += _function_call(state, item)
    if data.get("done") is True:
        status = "incomplete" if data.get("done_reason") == "length" else "completed"
        if not state.message_seen and not any(item["type"] in _CALLS for item in state.output):
            out += _close(state)
            out += _open_message(state)  # as to_response: a reply with no text and no call is ""
        out += _close(state, status)
        state.done = True
        state.final = final_counts(data)
        state.finished = finish(state.response, state.output, data, state.ctx)
        kind = "response.incomplete" if state.finished["status"] == "incomplete" else "response.completed"
        state.terminal = event(state, kind, {"response": state.finished})
    return b"".join(out)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def _open_reasoning(state: ResponsesStream) -> list[bytes]:
    state.open_kind, state.open_id, state.parts = "reasoning", state.ctx.new_id("rs_"), []
    index = len(state.output)
    return [
        event(state, "response.output_item.added", {
            "output_index": index, "item": {"id": state.open_id, "type": "reasoning", "summary": []}}),
        event(state, "response.reasoning_summary_part.added", {
            "item_id": state.open_id, "output_index": index, "summary_index": 0,
            "part": {"type": "summary_text", "text": ""}}),
    ]


def _open_message(state: ResponsesStream) -> list[bytes]:
    state.open_kind, state.open_id, state.parts = "message", state.ctx.new_id("msg_"), []
    state.message_seen = state.in_text = True
    index = len(state.output)
    item = {"id": state.open_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
    # The delta event's bytes around its two slots, from the same dict path as every event.
    template = orjson.dumps({"type": "response.output_text.delta", "sequence_number": _SLOT,
                             "item_id": state.open_id, "output_index": index, "content_index": 0,
                             "delta": _SLOT, "logprobs": []})
    head, mid, tail = template.split(_SLOT_JSON)
    state.delta_head = b"event: response.output_text.delta\ndata: " + head
    state.delta_mid, state.delta_tail = mid + b'"', b'"' + tail + b"\n\n"  # the text goes between the quotes
    return [
        event(state, "response.output_item.added", {"output_index": index, "item": item}),
        event(state, "response.content_part.added", {
            "item_id": state.open_id, "output_index": index, "content_index": 0,
            "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}}),
    ]


def _open_item(state: ResponsesStream, status: str) -> dict[str, Any]:
    text = b"".join(state.parts).decode()
    if state.open_kind == "reasoning":
        return reasoning_item(state.open_id, text, state.sealer)
    return message_item(state.open_id, text, status)


def _close(state: ResponsesStream, status: str = "completed") -> list[bytes]:
    """The events that finish the open item (none when nothing is open)."""
    if state.open_kind is None:
        return []
    item = _open_item(state, status)
    index, item_id = len(state.output), state.open_id
    if state.open_kind == "reasoning":
        part = item["summary"][0]
        out: list[bytes] = [
            event(state, "response.reasoning_summary_text.done", {
                "item_id": item_id, "output_index": index, "summary_index": 0, "text": part["text"]}),
            event(state, "response.reasoning_summary_part.done", {
                "item_id": item_id, "output_index": index, "summary_index": 0, "part": part}),
        ]
    else:
        part = item["content"][0]
        out = [
            event(state, "response.output_text.done", {
                "item_id": item_id, "output_index": index, "content_index": 0, "text": part["text"],
                "logprobs": []}),
            event(state, "response.content_part.done", {
                "item_id": item_id, "output_index": index, "content_index": 0, "part": part}),
        ]
    out.append(event(state, "response.output_item.done", {"output_index": index, "item": item}))
    state.output.append(item)
    state.open_kind, state.open_id, state.parts, state.in_text = None, "", [], False
    return out


_CALLS = ("function_call", "custom_tool_call")


def _function_call(state: ResponsesStream, item: dict[str, Any]) -> list[bytes]:
    """A whole tool call (Ollama sends each complete) as its item's events."""
    index, item_id = len(state.output), item["id"]
    state.output.append(item)
    if item["type"] == "custom_tool_call":
        return [
            event(state, "response.output_item.added", {
                "output_index": index, "item": {**item, "status": "in_progress", "input": ""}}),
            event(state, "response.custom_tool_call_input.delta", {
                "item_id": item_id, "output_index": index, "delta": item["input"]}),
            event(state, "response.custom_tool_call_input.done", {
                "item_id": item_id, "output_index": index, "input": item["input"]}),
            event(state, "response.output_item.done", {"output_index": index, "item": item}),
        ]
    return [
        event(state, "response.output_item.added", {
            "output_index": index, "item": {**item, "status": "in_progress", "arguments": ""}}),
        event(state, "response.function_call_arguments.delta", {
            "item_id": item_id, "output_index": index, "delta": item["arguments"]}),
        event(state, "response.function_call_arguments.done", {
            "item_id": item_id, "output_index": index, "arguments": item["arguments"]}),
        event(state, "response.output_item.done", {"output_index": index, "item": item}),
    ]
