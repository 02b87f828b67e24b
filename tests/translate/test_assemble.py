"""A streamed /api/chat answer put back together as the one non-streamed answer."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.translate.openai.assemble import StreamAssembly
from proxy.translate.openai.chat import ResponseContext, to_completion


def line(message: dict[str, Any] | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"model": "m", "created_at": "t", "done": False, **extra}
    if message is not None:
        body["message"] = {"role": "assistant", **message}
    return orjson.dumps(body) + b"\n"


FINAL = line({"content": ""}, done=True, done_reason="stop", prompt_eval_count=3, eval_count=2,
             total_duration=5, context=[1, 2])
CALL = {"id": "call_1", "function": {"name": "f", "arguments": {"x": 1}}}

CASES = [
    ("content pieces join", [line({"content": "Hel"}), line({"content": "lo"}), FINAL],
     {"message": {"role": "assistant", "content": "Hello"}}),
    ("thinking kept apart", [line({"content": "", "thinking": "hm"}), line({"content": "A"}), FINAL],
     {"message": {"role": "assistant", "content": "A", "thinking": "hm"}}),
    ("tool calls collected", [line({"content": "", "tool_calls": [CALL]}), FINAL],
     {"message": {"role": "assistant", "content": "", "tool_calls": [CALL]}}),
    ("logprobs appended", [line({"content": "a"}, logprobs=[{"token": "a", "logprob": -1}]), FINAL],
     {"message": {"role": "assistant", "content": "a"}, "logprobs": [{"token": "a", "logprob": -1}]}),
    ("lines after the final one are ignored", [line({"content": "a"}), FINAL, line({"content": "late"})],
     {"message": {"role": "assistant", "content": "a"}}),
]


@pytest.mark.parametrize("reads, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_assembly(reads: list[bytes], expected: dict[str, Any]) -> None:
    assembly = StreamAssembly()
    for data in reads:
        assembly.feed(data)
    answer = assembly.answer()
    assert {k: answer[k] for k in expected} == expected
    assert (answer["done"], answer["eval_count"], answer["done_reason"]) == (True, 2, "stop")


def test_lines_split_across_reads_are_joined() -> None:
    whole = line({"content": "Hello world"}) + FINAL
    assembly = StreamAssembly()
    for i in range(0, len(whole), 7):  # every read ends mid-line
        assembly.feed(whole[i:i + 7])
    assert assembly.answer()["message"]["content"] == "Hello world"
    assert assembly.final is not None


def test_the_stored_completion_equals_the_non_streamed_one() -> None:
    ctx = ResponseContext("chatcmpl-1", 7, "m", lambda: "call_x")
    assembly = StreamAssembly()
    for data in (line({"content": "Hi "}), line({"content": "there"}), FINAL):
        assembly.feed(data)
    whole = {"model": "m", "done": True, "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2,
             "message": {"role": "assistant", "content": "Hi there"}}
    assert to_completion(assembly.answer(), ctx) == to_completion(whole, ctx)


def test_an_unfinished_stream_has_no_final_line() -> None:
    assembly = StreamAssembly()
    assembly.feed(line({"content": "a"}) + b"{not json\n")
    assert assembly.final is None and assembly.answer()["message"]["content"] == "a"
