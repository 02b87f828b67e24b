"""Ollama's NDJSON body → SSE bytes, one socket read at a time, for any stream translator.

``translate_read`` splits what one read returned into complete lines (keeping a partial last
line for the next read), holds every line to ``max_line_bytes``, hands each line to the
endpoint's own ``chunks_for``, and joins the frames so the writer sends one read's frames in one
``write``. A line that reports or is an upstream fault ends the stream: the frames of the lines
before it are kept, an error frame follows, and ``state.error`` holds the fault for the log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import orjson

from ..errors import ProxyError, UpstreamError, to_envelope

__all__ = ["DONE", "LineState", "error_frame", "final_counts", "frame", "parse_line", "translate_read"]

DONE = b"data: [DONE]\n\n"


class LineState(Protocol):
    """What ``translate_read`` needs of a stream's state."""

    done: bool
    error: ProxyError | None
    tail: bytes
    max_line_bytes: int
    lines: int  # complete lines seen: a token count for a stream cut short, one add per read
    final: dict[str, Any] | None  # Ollama's last line (done: true), with its counts and timings


S = TypeVar("S", bound=LineState)


_COUNTS = ("prompt_eval_count", "eval_count", "total_duration", "load_duration",
           "prompt_eval_duration", "eval_duration", "done_reason")


def final_counts(done_line: dict[str, Any]) -> dict[str, Any]:
    """The token counts, durations and done reason of Ollama's final line (not its ``context``)."""
    return {key: done_line[key] for key in _COUNTS if key in done_line}


def parse_line(line: bytes) -> dict[str, Any]:
    """One of Ollama's NDJSON lines as the object it must be; anything else ends the stream."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise UpstreamError("Ollama sent a malformed stream line.") from None
    if type(data) is not dict:
        raise UpstreamError("Ollama sent a malformed stream line.")
    return data


def frame(payload: dict[str, Any]) -> bytes:
    """One SSE event carrying ``payload`` as JSON."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def error_frame(error: ProxyError, request_id: str | None = None) -> bytes:
    """The frame that reports ``error`` inside a started stream (the SDKs raise ``APIError``)."""
    return frame(to_envelope(error, request_id))


def translate_read(state: S, data: bytes, chunks_for: Callable[[S, bytes], bytes],
                   on_fault: Callable[[S, UpstreamError], bytes] | None = None) -> bytes:
    """The SSE bytes for every complete line in ``state.tail + data``; keeps the rest.

    A fault ends the stream with ``on_fault``'s bytes (default: the chat error frame)."""
    if state.done:
        return b""  # nothing after the final line (or a fault) belongs to this answer
    if state.tail:
        data = state.tail + data
    *lines, state.tail = data.split(b"\n")
    state.lines += len(lines)
    out: list[bytes] = []
    limit = state.max_line_bytes
    try:
        for line in lines:
            if len(line) > limit:  # a whole line in one read is held to the limit too
                raise UpstreamError(f"Ollama sent a line longer than {limit} bytes.")
            if line:
                out.append(chunks_for(state, line))
            if state.done:
                break
        if not state.done and len(state.tail) > limit:
            raise UpstreamError(f"Ollama sent a line longer than {limit} bytes.")
    except UpstreamError as exc:
        state.error = exc
        out.append(error_frame(exc) if on_fault is None else on_fault(state, exc))
        state.done = True
    if state.done:
        state.tail = b""
    return b"".join(out)
