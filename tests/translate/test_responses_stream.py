"""Exact events for ``proxy/translate/openai/responses_stream.py``, fed with recorded Ollama NDJSON.

Each event is parsed back and checked against the SDK's own event models (strict validation),
the sequence numbers must run 0, 1, 2 …, the template path must give the same bytes as the
dict path, and the finished response must equal what ``to_response`` makes of the same answer.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from proxy.errors import UpstreamError
from proxy.translate.openai.responses import ResponsesContext, from_openai, skeleton, to_response
from proxy.translate.openai.responses_stream import (
    ResponsesStream,
    event,
    failed,
    frames_for_read,
    new_stream,
)

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def context() -> ResponsesContext:
    counter = itertools.count()
    return ResponsesContext("resp_1", 1700000000, lambda prefix: f"{prefix}{next(counter)}", lambda: 1700000009)


def fresh() -> tuple[ResponsesStream, dict[str, Any]]:
    ctx = context()
    request = from_openai({"model": "qwen3:8b", "input": "hi"}, ctx)
    response = skeleton(request, ctx, stored=False)
    return new_stream(ctx, response), response


def line(content: str = "", thinking: str = "", calls: list[Any] | None = None, done: bool = False,
         reason: str = "stop") -> bytes:
    """An Ollama chat line in Go's field order, as the server writes it."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = calls
    data: dict[str, Any] = {"model": "qwen3:8b", "created_at": "2025-06-01T12:00:00.1Z", "message": message}
    if done:
        data.update(done_reason=reason, done=True, prompt_eval_count=5, eval_count=4)
    else:
        data["done"] = False
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def parse(raw: bytes) -> list[dict[str, Any]]:
    """SSE bytes → event payloads, checking each ``event:`` line names its payload's type."""
    out = []
    for block in raw.split(b"\n\n"):
        if not block:
            continue
        head, data = block.split(b"\n")
        payload = json.loads(data.removeprefix(b"data: "))
        assert head == b"event: " + payload["type"].encode()
        EVENTS.validate_python(payload)
        out.append(payload)
    return out


def run(lines: list[bytes]) -> tuple[ResponsesStream, list[dict[str, Any]]]:
    state, _ = fresh()
    raw = b"".join(frames_for_read(state, one) for one in lines)
    return state, parse(raw + state.terminal)


CALL = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}, "id": "call_x"}
FULL = [line(thinking="Let"), line(thinking=" me think"), line("Hel"), line('lo "wörld"'),
        line(calls=[CALL]), line(done=True)]


def test_event_order_and_shapes_for_reasoning_text_and_a_call() -> None:
    state, events = run(FULL)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e.get("output_index") for e in events if e["type"] == "response.output_item.added"] == [0, 1, 2]
    text_done = next(e for e in events if e["type"] == "response.output_text.done")
    assert text_done["text"] == 'Hello "wörld"'
    summary_done = next(e for e in events if e["type"] == "response.reasoning_summary_text.done")
    assert summary_done["text"] == "Let me think"
    call_added = [e for e in events if e["type"] == "response.output_item.added"][2]["item"]
    assert call_added["status"] == "in_progress" and call_added["arguments"] == ""
    assert call_added["call_id"] == "call_x"
    completed = events[-1]["response"]
    assert completed["status"] == "completed" and completed["usage"]["total_tokens"] == 9
    assert state.finished == completed and state.final is not None


def test_streamed_result_equals_the_non_streamed_translation() -> None:
    state, _ = run(FULL)
    ctx = context()
    request = from_openai({"model": "qwen3:8b", "input": "hi"}, ctx)
    answer = {"message": {"role": "assistant", "content": 'Hello "wörld"', "thinking": "Let me think",
                          "tool_calls": [CALL]}, "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 4}
    whole = to_response(answer, skeleton(request, ctx, stored=False), ctx)

    def without_ids(response: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in item.items() if k != "id"} for item in response["output"]]

    assert state.finished is not None
    assert without_ids(state.finished) == without_ids(whole)
    assert {k: v for k, v in state.finished.items() if k != "output"} == {
        k: v for k, v in whole.items() if k != "output"}


@pytest.mark.parametrize(("lines", "kinds"), [
    ([line("a"), line(done=True)], ["message"]),
    ([line(done=True)], ["message"]),
    ([line(thinking="t"), line(done=True)], ["reasoning", "message"]),
    ([line(calls=[CALL]), line(done=True)], ["function_call"]),
    ([line(thinking="t"), line("a"), line(thinking="u"), line(done=True)], ["reasoning", "message", "reasoning"]),
], ids=["text", "nothing is an empty message", "thinking only", "a call only", "thinking after text opens a new item"])
def test_items_follow_what_ollama_sent(lines: list[bytes], kinds: list[str]) -> None:
    state, events = run(lines)
    assert state.finished is not None
    assert [item["type"] for item in state.finished["output"]] == kinds
    assert [e["type"] for e in events].count("response.completed") == 1


def test_length_is_incomplete_with_the_message_marked_incomplete() -> None:
    _state, events = run([line("a"), line(done=True, reason="length")])
    assert events[-1]["type"] == "response.incomplete"
    response = events[-1]["response"]
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"
    item_done = [e for e in events if e["type"] == "response.output_item.done"][-1]
    assert item_done["item"]["status"] == "incomplete"


@pytest.mark.parametrize("bad", [b'{"error":"model runner crashed"}\n', b"not json\n", b"[1]\n"],
                         ids=["error line", "malformed", "not an object"])
def test_an_upstream_fault_is_one_response_failed(bad: bytes) -> None:
    state, events = run([line("a"), line("b"), bad, line("never")])
    assert [e["type"] for e in events][-1] == "response.failed"
    assert [e["type"] for e in events].count("response.failed") == 1
    response = events[-1]["response"]
    assert response["status"] == "failed" and response["error"]["code"] == "server_error"
    assert response["output"][0]["content"][0]["text"] == "ab"
    assert response["output"][0]["status"] == "incomplete"
    assert isinstance(state.error, UpstreamError) and state.done


def test_overlong_line_fails_the_response() -> None:
    state, _ = fresh()
    state.max_line_bytes = 50
    frames_for_read(state, line("x" * 100))
    assert state.error is not None and b"response.failed" in state.terminal


def test_failure_before_any_line_still_opens_the_response() -> None:
    state, _ = fresh()
    events = parse(failed(state, UpstreamError("Ollama went away.")))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.failed"]


def test_template_path_gives_the_dict_path_bytes() -> None:
    state, _ = fresh()
    frames_for_read(state, line("open"))  # opens the message item
    for text in ("plain", "naïve ünïcode 👋", "tab\there", 'q"uote', "back\\slash", "<tag> & co"):
        fast = frames_for_read(state, line(text))
        seq = state.seq - 1
        slow = event(_clone(state, seq), "response.output_text.delta", {
            "item_id": state.open_id, "output_index": 0, "content_index": 0, "delta": text, "logprobs": []})
        assert fast == slow, text


def _clone(state: ResponsesStream, seq: int) -> ResponsesStream:
    copy, _ = fresh()
    copy.seq = seq
    return copy


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6), st.integers(1, 40))
def test_any_split_of_the_reads_gives_the_same_events(pieces: list[str], size: int) -> None:
    body = b"".join(line(piece) for piece in pieces) + line(done=True)
    whole, _ = fresh()
    expected = frames_for_read(whole, body) + whole.terminal
    split, _ = fresh()
    got = b"".join(frames_for_read(split, body[i : i + size]) for i in range(0, len(body), size))
    assert got + split.terminal == expected
    events = parse(expected)
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert done["text"] == "".join(pieces)
