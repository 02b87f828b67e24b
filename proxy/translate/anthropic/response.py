"""Ollama's ``/api/chat`` answer → an Anthropic ``message``, as pure functions.

Content blocks come in the order the model produced them: ``thinking`` (with a ``signature``
that carries it, see ``signature.py``), ``text``, then one ``tool_use`` per call with a
``toolu_…`` id and its parsed ``input``. ``stop_reason`` is ``tool_use`` when tools were
called, ``max_tokens`` on Ollama's ``length``, ``stop_sequence`` when one of the client's
``stop_sequences`` ended the text (matched by the proxy, ``StopMatcher``), else ``end_turn``.
Usage is Ollama's own counts, never re-tokenized.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ...errors import UpstreamFault
from ..ndjson import parse_line
from ..tool_choice import ForcedCall, parse_call
from .signature import Signer

__all__ = ["AnswerShape", "MessageContext", "StopCollector", "StopMatcher", "stop_reason", "to_message", "to_usage"]

log = logging.getLogger("proxy.translate")


@dataclass(frozen=True)
class MessageContext:
    """What the translation may not invent itself: the message id, tool ids, the signing key."""

    id: str
    model: str
    new_tool_id: Callable[[], str]
    signer: Signer


@dataclass(frozen=True)
class AnswerShape:
    """How an answer is written back (from the request: ``MessagesRequest``)."""

    forced: ForcedCall | None = None
    one_tool_call: bool = False
    show_thinking: bool = True
    stop_sequences: tuple[str, ...] = ()


class StopMatcher:
    """Finds the first of ``stops`` in text that arrives piece by piece.

    ``feed`` returns the text that is safe to send (no stop sequence can start in it) and the
    stop sequence found, if any; the few characters that might begin one are held back until
    the next piece tells (``flush`` gives them back at the end).
    """

    __slots__ = ("_hold", "pending", "stops")

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.pending = ""
        self._hold = max(len(s) for s in stops) - 1

    def feed(self, text: str) -> tuple[str, str | None]:
        buf = self.pending + text
        found: tuple[int, str] | None = None
        for stop in self.stops:
            at = buf.find(stop)
            if at >= 0 and (found is None or at < found[0]):
                found = (at, stop)
        if found is not None:
            self.pending = ""
            return buf[: found[0]], found[1]
        keep = 0
        for n in range(min(self._hold, len(buf)), 0, -1):
            tail = buf[-n:]
            if any(stop.startswith(tail) for stop in self.stops):
                keep = n
                break
        self.pending = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep], None

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return text


def to_usage(done: dict[str, Any] | None, output_estimate: int = 0) -> dict[str, int]:
    """Ollama's counts as Anthropic usage (no prompt caching to report)."""
    done = done or {}
    return {
        "input_tokens": int(done.get("prompt_eval_count") or 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": int(done.get("eval_count") or output_estimate),
    }


def stop_reason(done_reason: Any, tool_used: bool, matched: str | None) -> str:
    if matched is not None:
        return "stop_sequence"
    if tool_used:
        return "tool_use"
    return "max_tokens" if done_reason == "length" else "end_turn"


def to_message(answer: dict[str, Any], ctx: MessageContext, shape: AnswerShape,
               matched: str | None = None) -> dict[str, Any]:
    """Ollama's non-streamed answer (``matched``: the stop sequence that ended it) → ``message``."""
    message = answer.get("message") or {}
    done_reason = answer.get("done_reason")
    content: list[dict[str, Any]] = []
    thinking = message.get("thinking") or ""
    if thinking:
        content.append({"type": "thinking", "thinking": thinking if shape.show_thinking else "",
                        "signature": ctx.signer.sign(thinking)})
    text = message.get("content") or ""
    if shape.forced is not None:
        name, arguments = parse_call(shape.forced, text, cut=done_reason == "length")
        calls = [{"function": {"name": name, "arguments": _loads(arguments)}}]
        text = ""
    else:
        calls = message.get("tool_calls") or []
        if shape.one_tool_call and len(calls) > 1:
            log.debug("disable_parallel_tool_use: dropped %d of %d tool calls", len(calls) - 1, len(calls))
            calls = calls[:1]
    if text:
        content.append({"type": "text", "text": text})
    for call in calls:
        content.append(tool_use_block(call, ctx))
    return {
        "id": ctx.id,
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": content,
        "stop_reason": stop_reason(done_reason, bool(calls) and done_reason != "length", matched),
        "stop_sequence": matched,
        "usage": to_usage(answer),
    }


def tool_use_block(call: dict[str, Any], ctx: MessageContext) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    return {"type": "tool_use", "id": ctx.new_tool_id(), "name": function.get("name", ""),
            "input": arguments if isinstance(arguments, dict) else {}}


def _loads(arguments: str) -> dict[str, Any]:
    """A forced call's arguments (a cut-off one may not parse: then what there is, as nothing)."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class StopCollector:
    """A streamed answer put back together as Ollama's non-streamed one, ended at the first stop
    sequence: how a non-streamed request with ``stop_sequences`` learns which one ended it
    (Ollama stops on them but does not say which, and strips it). ``feed`` says when to stop
    reading; ``answer`` is Ollama's answer and the stop sequence matched (if any)."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.matcher = StopMatcher(stops)
        self.matched: str | None = None
        self.lines = 0
        self._tail = b""
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._calls: list[Any] = []
        self.final: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.final is not None or self.matched is not None

    def feed(self, data: bytes) -> bool:
        """Take one read of Ollama's NDJSON body; True once the answer is complete."""
        *lines, self._tail = (self._tail + data).split(b"\n")
        for line in lines:
            if line.strip() and not self.done:
                self._line(line)
        return self.done

    def _line(self, line: bytes) -> None:
        data = parse_line(line)
        if "error" in data:
            raise UpstreamFault(str(data["error"]) or "Ollama reported an error.")
        self.lines += 1
        message = data.get("message")
        if isinstance(message, dict):
            if isinstance(text := message.get("thinking"), str):
                self._thinking.append(text)
            if isinstance(calls := message.get("tool_calls"), list):
                self._calls.extend(calls)
            if isinstance(text := message.get("content"), str) and text:
                sent, self.matched = self.matcher.feed(text)
                self._content.append(sent)
        if data.get("done") is True and self.matched is None:
            self._content.append(self.matcher.flush())
            self.final = data

    def answer(self) -> tuple[dict[str, Any], str | None]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self._content)}
        if self._thinking:
            message["thinking"] = "".join(self._thinking)
        if self._calls:
            message["tool_calls"] = self._calls
        answer = {k: v for k, v in (self.final or {}).items() if k != "message"}
        if self.final is None:
            answer["eval_count"] = max(0, self.lines - 1)  # cut short by the proxy: the lines, about a token each
        answer["message"] = message
        return answer, self.matched
