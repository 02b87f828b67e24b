"""A streamed ``/api/chat`` answer put back together as Ollama's one non-streamed answer.

Used only when the answer is to be stored: the chat handler then hands each upstream read to
``StreamAssembly.feed`` next to the SSE translation (which stays as it is), and at the end
``answer()`` is what ``/api/chat`` would have returned with ``stream: false``, so the stored
``chat.completion`` comes from the same ``to_completion`` as a non-streamed one. A stream
without storage never touches this module.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["StreamAssembly"]


class StreamAssembly:
    """The content, reasoning, tool calls and logprobs of a stream, and its final line."""

    def __init__(self) -> None:
        self._tail = b""
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._calls: list[Any] = []
        self._logprobs: list[Any] = []
        self.final: dict[str, Any] | None = None

    def feed(self, data: bytes) -> None:
        """Take one read of Ollama's NDJSON body (lines may be split across reads)."""
        if self.final is not None:
            return
        *lines, self._tail = (self._tail + data).split(b"\n")
        for line in lines:
            if line.strip():
                self._line(line)

    def _line(self, line: bytes) -> None:
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            return  # the translator reports a malformed line; such a stream is not stored
        if not isinstance(data, dict) or self.final is not None:
            return
        message = data.get("message")
        if isinstance(message, dict):
            if isinstance(text := message.get("content"), str):
                self._content.append(text)
            if isinstance(text := message.get("thinking"), str):
                self._thinking.append(text)
            if isinstance(calls := message.get("tool_calls"), list):
                self._calls.extend(calls)
        if isinstance(logprobs := data.get("logprobs"), list):
            self._logprobs.extend(logprobs)
        if data.get("done") is True:
            self.final = data

    def answer(self) -> dict[str, Any]:
        """Ollama's non-streamed answer for the whole stream (its final line's counts)."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self._content)}
        if self._thinking:
            message["thinking"] = "".join(self._thinking)
        if self._calls:
            message["tool_calls"] = self._calls
        answer = {k: v for k, v in (self.final or {}).items() if k != "message"}
        answer["message"] = message
        if self._logprobs:
            answer["logprobs"] = self._logprobs
        return answer
