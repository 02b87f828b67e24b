"""Exact SSE bytes for ``proxy/translate/openai/stream.py``, fed with recorded Ollama NDJSON.

The recorded streams below are Ollama 0.12 ``/api/chat`` lines as they come off the wire: Go's
encoder escapes ``<``/``>``/``&`` as ``\\u003c``… and writes other non-ASCII as raw UTF-8, the
final line carries ``done_reason``, the durations and the counts. The expected frames are built
with the standard library's ``json`` (an encoder independent of the code under test) from the
OpenAI chunk shapes, or typed out literally. The fast template path is checked byte for byte
against the full dict path, so a template that drifts from ``_chunk`` fails here.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.errors import UPSTREAM_FAULT_MESSAGE, UpstreamError, UpstreamFault
from proxy.translate.openai import stream
from proxy.translate.openai.chat import ReplyShape, ResponseContext
from proxy.translate.openai.stream import (
    DONE,
    StreamState,
    chunks_for,
    closing_frames,
    frames_for_forced_read,
    frames_for_read,
    new_stream,
)
from proxy.translate.tool_choice import forced_call

ID, CREATED = "chatcmpl-test", 1700000000


def context(model: str) -> ResponseContext:
    counter = itertools.count()
    return ResponseContext(ID, CREATED, model, lambda: f"call_{next(counter)}")


def state_for(model: str, *, include_usage: bool = False, camel: bool = False,
              max_line_bytes: int = 16 * 1024 * 1024, role_sent: bool = False) -> StreamState:
    state = new_stream(context(model), include_usage=include_usage, camel=camel, max_line_bytes=max_line_bytes)
    state.role_sent = role_sent
    return state


# ---- recorded streams --------------------------------------------------------------------

PLAIN = (
    '{"model":"llama3.2","created_at":"2025-06-01T12:00:00.101817495Z","message":{"role":"assistant","content":"Gr\\u00fc\\u00dfe"},"done":false}\n'
    '{"model":"llama3.2","created_at":"2025-06-01T12:00:00.118220912Z","message":{"role":"assistant","content":" 👋 "},"done":false}\n'
    '{"model":"llama3.2","created_at":"2025-06-01T12:00:00.134567001Z","message":{"role":"assistant","content":"\\"日本語\\"\\n"},"done":false}\n'
    '{"model":"llama3.2","created_at":"2025-06-01T12:00:00.150912345Z","message":{"role":"assistant","content":"\\u003cb\\u003e \\u0026 \\\\ /"},"done":false}\n'
    '{"model":"llama3.2","created_at":"2025-06-01T12:00:00.167301234Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":4,"eval_duration":4535599000}\n'
).encode()  # fmt: skip
PLAIN_DELTAS = [
    ({"role": "assistant", "content": "Grüße"}, None),
    ({"content": " 👋 "}, None),
    ({"content": '"日本語"\n'}, None),
    ({"content": "<b> & \\ /"}, None),
]

THINKING = (
    '{"model":"qwen3:8b","created_at":"2025-06-01T12:01:00.000100000Z","message":{"role":"assistant","content":"","thinking":"Okay"},"done":false}\n'
    '{"model":"qwen3:8b","created_at":"2025-06-01T12:01:00.020100000Z","message":{"role":"assistant","content":"","thinking":", the user wants"},"done":false}\n'
    '{"model":"qwen3:8b","created_at":"2025-06-01T12:01:00.040100000Z","message":{"role":"assistant","content":"","thinking":" 2+2 — easy."},"done":false}\n'
    '{"model":"qwen3:8b","created_at":"2025-06-01T12:01:00.060100000Z","message":{"role":"assistant","content":"2+2"},"done":false}\n'
    '{"model":"qwen3:8b","created_at":"2025-06-01T12:01:00.080100000Z","message":{"role":"assistant","content":" = 4 ✅"},"done":false}\n'
    '{"model":"qwen3:8b","created_at":"2025-06-01T12:01:00.100100000Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":2101234567,"load_duration":30123456,"prompt_eval_count":18,"prompt_eval_duration":81234567,"eval_count":5,"eval_duration":1989876543}\n'
).encode()  # fmt: skip
THINKING_DELTAS = [
    ({"role": "assistant", "reasoning": "Okay"}, None),
    ({"reasoning": ", the user wants"}, None),
    ({"reasoning": " 2+2 — easy."}, None),
    ({"content": "2+2"}, None),
    ({"content": " = 4 ✅"}, None),
]

TOOLS = (
    '{"model":"qwen3:8b","created_at":"2025-06-01T12:02:00.000100000Z","message":{"role":"assistant","content":"Let me check."},"done":false}\n'
    '{"model":"qwen3:8b","created_at":"2025-06-01T12:02:00.300100000Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"index":0,"name":"get_weather","arguments":{"city":"Zürich","unit":"celsius"}}}]},"done":false}\n'
    '{"model":"qwen3:8b","created_at":"2025-06-01T12:02:00.600100000Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"index":1,"name":"get_time","arguments":{"tz":"Europe/Zurich","nested":{"a":[1,2.5,true,null]}}}}]},"done":false}\n'
    '{"model":"qwen3:8b","created_at":"2025-06-01T12:02:00.700100000Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":901234567,"load_duration":20123456,"prompt_eval_count":212,"prompt_eval_duration":81234567,"eval_count":41,"eval_duration":799876543}\n'
).encode()  # fmt: skip


def _call(index: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


TOOLS_DELTAS = [
    ({"role": "assistant", "content": "Let me check."}, None),
    ({"tool_calls": [_call(0, "call_0", "get_weather", '{"city":"Zürich","unit":"celsius"}')]}, None),
    ({"tool_calls": [_call(1, "call_1", "get_time", '{"tz":"Europe/Zurich","nested":{"a":[1,2.5,true,null]}}')]},
     None),
]  # fmt: skip

# Ollama 0.12 gives tool calls its own ids, and some models bring several in one line.
TOOLS_WITH_IDS = (
    b'{"model":"llama3.1","created_at":"2025-06-01T12:03:00.000100000Z","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_hx6y0x2j","function":{"index":0,"name":"add","arguments":{"a":1,"b":2}}},{"id":"call_9bq1o4tw","function":{"index":1,"name":"add","arguments":{"a":3,"b":4}}}]},"done":false}\n'
    b'{"model":"llama3.1","created_at":"2025-06-01T12:03:00.100100000Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":501234567,"load_duration":20123456,"prompt_eval_count":99,"prompt_eval_duration":81234567,"eval_count":30,"eval_duration":399876543}\n'
)  # fmt: skip
TOOLS_WITH_IDS_DELTAS = [
    ({"role": "assistant", "tool_calls": [_call(0, "call_hx6y0x2j", "add", '{"a":1,"b":2}'),
                                          _call(1, "call_9bq1o4tw", "add", '{"a":3,"b":4}')]}, None),
]  # fmt: skip

# "Ollama reports tool calls only in the final message for some models."
TOOLS_IN_DONE = (
    b'{"model":"llama3.1","created_at":"2025-06-01T12:04:00.100100000Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"index":0,"name":"now","arguments":{}}}]},"done_reason":"stop","done":true,"total_duration":501234567,"load_duration":20123456,"prompt_eval_count":40,"prompt_eval_duration":81234567,"eval_count":8,"eval_duration":399876543}\n'
)  # fmt: skip
TOOLS_IN_DONE_DELTAS = [({"role": "assistant", "tool_calls": [_call(0, "call_0", "now", "{}")]}, None)]

LENGTH = (
    b'{"model":"llama3.2","created_at":"2025-06-01T12:05:00.000100000Z","message":{"role":"assistant","content":"Once"},"done":false}\n'
    b'{"model":"llama3.2","created_at":"2025-06-01T12:05:00.020100000Z","message":{"role":"assistant","content":" upon"},"done":false}\n'
    b'{"model":"llama3.2","created_at":"2025-06-01T12:05:00.040100000Z","message":{"role":"assistant","content":""},"done_reason":"length","done":true,"total_duration":201234567,"load_duration":1123456,"prompt_eval_count":12,"prompt_eval_duration":21234567,"eval_count":2,"eval_duration":39876543}\n'
)  # fmt: skip
LENGTH_DELTAS = [({"role": "assistant", "content": "Once"}, None), ({"content": " upon"}, None)]

LOGPROBS = (
    b'{"model":"llama3.2","created_at":"2025-06-01T12:06:00.000100000Z","message":{"role":"assistant","content":"Hi"},"done":false,"logprobs":[{"token":"Hi","logprob":-0.0123,"bytes":[72,105],"top_logprobs":[{"token":"Hi","logprob":-0.0123,"bytes":[72,105]},{"token":"Hello","logprob":-4.51,"bytes":[72,101,108,108,111]}]}]}\n'
    b'{"model":"llama3.2","created_at":"2025-06-01T12:06:00.020100000Z","message":{"role":"assistant","content":"!"},"done":false,"logprobs":[{"token":"!","logprob":-0.25,"bytes":[33],"top_logprobs":[{"token":"!","logprob":-0.25,"bytes":[33]},{"token":".","logprob":-1.5,"bytes":[46]}]}]}\n'
    b'{"model":"llama3.2","created_at":"2025-06-01T12:06:00.040100000Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":101234567,"load_duration":1123456,"prompt_eval_count":7,"prompt_eval_duration":21234567,"eval_count":2,"eval_duration":39876543}\n'
)  # fmt: skip
LOGPROBS_DELTAS = [
    ({"role": "assistant", "content": "Hi"},
     {"content": [{"token": "Hi", "logprob": -0.0123, "bytes": [72, 105],
                   "top_logprobs": [{"token": "Hi", "logprob": -0.0123, "bytes": [72, 105]},
                                    {"token": "Hello", "logprob": -4.51, "bytes": [72, 101, 108, 108, 111]}]}]}),
    ({"content": "!"},
     {"content": [{"token": "!", "logprob": -0.25, "bytes": [33],
                   "top_logprobs": [{"token": "!", "logprob": -0.25, "bytes": [33]},
                                    {"token": ".", "logprob": -1.5, "bytes": [46]}]}]}),
]  # fmt: skip

# Only the final line: a model that said nothing (or a cached empty answer).
EMPTY = (
    b'{"model":"llama3.2","created_at":"2025-06-01T12:07:00.000100000Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":1234567,"load_duration":123456,"prompt_eval_count":5,"prompt_eval_duration":1234,"eval_count":0,"eval_duration":0}\n'
)  # fmt: skip
EMPTY_DELTAS = [({"role": "assistant", "content": ""}, None)]

ERROR_LINE = b'{"error":"an error was encountered while running the model: unexpected EOF"}\n'
ERRORED = PLAIN.split(b"\n")[0] + b"\n" + PLAIN.split(b"\n")[1] + b"\n" + ERROR_LINE
MALFORMED = PLAIN.split(b"\n")[0] + b"\n" + b"this is not json\n"

# Thinking that ends in the same line as the answer begins (and a call after more thinking).
MIXED = (
    b'{"model":"qwen3:8b","created_at":"2025-06-01T12:08:00.000100000Z","message":{"role":"assistant","content":"Four","thinking":"Easy."},"done":false,"logprobs":[{"token":"Four","logprob":-0.5,"bytes":[70,111,117,114],"top_logprobs":[]}]}\n'
    b'{"model":"qwen3:8b","created_at":"2025-06-01T12:08:00.020100000Z","message":{"role":"assistant","content":"","thinking":"Check it.","tool_calls":[{"id":"call_a","function":{"index":0,"name":"add","arguments":{"a":2,"b":2}}}]},"done":false}\n'
    b'{"model":"qwen3:8b","created_at":"2025-06-01T12:08:00.040100000Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":1234567,"load_duration":123456,"prompt_eval_count":9,"prompt_eval_duration":1234,"eval_count":3,"eval_duration":5678}\n'
)  # fmt: skip
MIXED_DELTAS = [
    ({"role": "assistant", "reasoning": "Easy."},
     {"content": [{"token": "Four", "logprob": -0.5, "bytes": [70, 111, 117, 114], "top_logprobs": []}]}),
    ({"content": "Four"}, None),
    ({"reasoning": "Check it."}, None),
    ({"tool_calls": [_call(0, "call_a", "add", '{"a":2,"b":2}')]}, None),
]  # fmt: skip

# (id, model, recorded bytes, expected deltas with logprobs, finish_reason, (prompt, completion))
STREAMS = [
    ("thinking with content or a call in one line: two chunks, reasoning first, logprobs on it",
     "qwen3:8b", MIXED, MIXED_DELTAS, "tool_calls", (9, 3)),
    ("unicode and escaped content", "llama3.2", PLAIN, PLAIN_DELTAS, "stop", (26, 4)),
    ("qwen3 thinking lines then content", "qwen3:8b", THINKING, THINKING_DELTAS, "stop", (18, 5)),
    ("content then two tool-call lines", "qwen3:8b", TOOLS, TOOLS_DELTAS, "tool_calls", (212, 41)),
    ("two tool calls with Ollama ids in one line", "llama3.1", TOOLS_WITH_IDS, TOOLS_WITH_IDS_DELTAS,
     "tool_calls", (99, 30)),
    ("tool call only in the done line", "llama3.1", TOOLS_IN_DONE, TOOLS_IN_DONE_DELTAS, "tool_calls", (40, 8)),
    ("done_reason length", "llama3.2", LENGTH, LENGTH_DELTAS, "length", (12, 2)),
    ("logprobs lines", "llama3.2", LOGPROBS, LOGPROBS_DELTAS, "stop", (7, 2)),
    ("only the done line", "llama3.2", EMPTY, EMPTY_DELTAS, "stop", (5, 0)),
]  # fmt: skip
STREAM_IDS = [s[0] for s in STREAMS]
VARIANTS = [(False, False), (True, False), (False, True), (True, True)]
VARIANT_IDS = ["snake", "include_usage", "camel", "camel+include_usage"]


# ---- the oracle: OpenAI chunk shapes, encoded by the standard library --------------------


def to_camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {re.sub(r"_([a-z])", lambda m: m[1].upper(), k): to_camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_camel(v) for v in value]
    return value


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def chunk(model: str, delta: dict[str, Any], logprobs: Any = None, finish: str | None = None, *,
          include_usage: bool, camel: bool) -> bytes:
    payload: dict[str, Any] = {
        "id": ID, "object": "chat.completion.chunk", "created": CREATED, "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
    }  # fmt: skip
    if include_usage:
        payload["usage"] = None
    return sse(to_camel(payload) if camel else payload)


def expected(model: str, deltas: list[tuple[dict[str, Any], Any]], finish: str, usage: tuple[int, int],
             *, include_usage: bool = False, camel: bool = False) -> bytes:
    out = [chunk(model, d, lp, include_usage=include_usage, camel=camel) for d, lp in deltas]
    out.append(chunk(model, {}, None, finish, include_usage=include_usage, camel=camel))
    if include_usage:
        final = {"id": ID, "object": "chat.completion.chunk", "created": CREATED, "model": model, "choices": [],
                 "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}
        out.append(sse(to_camel(final) if camel else final))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def lines_of(raw: bytes) -> list[bytes]:
    return [line for line in raw.split(b"\n") if line]


def payloads(out: bytes) -> list[Any]:
    """The JSON of every frame, ``[DONE]`` as the string "[DONE]"."""
    assert out.endswith(b"\n\n")
    frames = out[:-2].split(b"\n\n")
    assert all(f.startswith(b"data: ") for f in frames)
    return [f[6:].decode() if f == DONE[:-2] else json.loads(f[6:]) for f in frames]


# ---- exact bytes -------------------------------------------------------------------------


def test_exact_bytes_typed_out() -> None:
    state = state_for("llama3.2")
    out = frames_for_read(state, LENGTH)
    assert out == (
        b'data: {"id":"chatcmpl-test","object":"chat.completion.chunk","created":1700000000,"model":"llama3.2",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Once"},"logprobs":null,"finish_reason":null}]}\n\n'
        b'data: {"id":"chatcmpl-test","object":"chat.completion.chunk","created":1700000000,"model":"llama3.2",'
        b'"choices":[{"index":0,"delta":{"content":" upon"},"logprobs":null,"finish_reason":null}]}\n\n'
        b'data: {"id":"chatcmpl-test","object":"chat.completion.chunk","created":1700000000,"model":"llama3.2",'
        b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}]}\n\n'
        b"data: [DONE]\n\n"
    )  # fmt: skip


def test_exact_bytes_typed_out_camel_with_usage_and_tool_call() -> None:
    state = state_for("llama3.1", include_usage=True, camel=True)
    out = frames_for_read(state, TOOLS_IN_DONE)
    assert out == (
        b'data: {"id":"chatcmpl-test","object":"chat.completion.chunk","created":1700000000,"model":"llama3.1",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","toolCalls":[{"index":0,"id":"call_0","type":"function",'
        b'"function":{"name":"now","arguments":"{}"}}]},"logprobs":null,"finishReason":null}],"usage":null}\n\n'
        b'data: {"id":"chatcmpl-test","object":"chat.completion.chunk","created":1700000000,"model":"llama3.1",'
        b'"choices":[{"index":0,"delta":{},"logprobs":null,"finishReason":"tool_calls"}],"usage":null}\n\n'
        b'data: {"id":"chatcmpl-test","object":"chat.completion.chunk","created":1700000000,"model":"llama3.1",'
        b'"choices":[],"usage":{"promptTokens":40,"completionTokens":8,"totalTokens":48}}\n\n'
        b"data: [DONE]\n\n"
    )  # fmt: skip


@pytest.mark.parametrize("include_usage, camel", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("model, raw, deltas, finish, usage", [s[1:] for s in STREAMS], ids=STREAM_IDS)
def test_recorded_stream_exact_bytes(model: str, raw: bytes, deltas: Any, finish: str, usage: Any,
                                     include_usage: bool, camel: bool) -> None:
    want = expected(model, deltas, finish, usage, include_usage=include_usage, camel=camel)
    whole = state_for(model, include_usage=include_usage, camel=camel)
    assert frames_for_read(whole, raw) == want
    assert whole.done and whole.tail == b""
    by_line = state_for(model, include_usage=include_usage, camel=camel)
    assert b"".join(chunks_for(by_line, line) for line in lines_of(raw)) == want


# ---- rules, one per test -----------------------------------------------------------------


@pytest.mark.parametrize("model, raw", [s[1:3] for s in STREAMS], ids=STREAM_IDS)
def test_only_the_first_frame_carries_role(model: str, raw: bytes) -> None:
    frames = payloads(frames_for_read(state_for(model), raw))
    roles = ["role" in f["choices"][0]["delta"] for f in frames[:-1]]
    assert roles[0] is True and not any(roles[1:])
    assert frames[0]["choices"][0]["delta"]["role"] == "assistant"


@pytest.mark.parametrize("model, raw", [s[1:3] for s in STREAMS], ids=STREAM_IDS)
def test_id_created_and_model_are_fixed_across_frames(model: str, raw: bytes) -> None:
    frames = payloads(frames_for_read(state_for(model, include_usage=True), raw))[:-1]
    assert {(f["id"], f["created"], f["model"], f["object"]) for f in frames} == {
        (ID, CREATED, model, "chat.completion.chunk")
    }


def test_tool_call_index_counts_across_the_whole_stream() -> None:
    frames = payloads(frames_for_read(state_for("qwen3:8b"), TOOLS))
    calls = [c for f in frames[:-1] for c in f["choices"][0]["delta"].get("tool_calls", [])]
    assert [(c["index"], c["id"], c["function"]["name"]) for c in calls] == [
        (0, "call_0", "get_weather"),
        (1, "call_1", "get_time"),
    ]
    assert all(json.loads(c["function"]["arguments"]) for c in calls)  # arguments are JSON strings


@pytest.mark.parametrize(
    "raw, model, reason",
    [(PLAIN, "llama3.2", "stop"), (TOOLS, "qwen3:8b", "tool_calls"), (LENGTH, "llama3.2", "length")],
    ids=["stop when nothing else", "tool_calls when any tool call was sent", "length for done_reason length"],
)
def test_finish_frame_has_empty_delta_and_the_reason(raw: bytes, model: str, reason: str) -> None:
    frames = payloads(frames_for_read(state_for(model), raw))
    assert frames[-1] == "[DONE]"
    assert frames[-2]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}]
    assert all(f["choices"][0]["finish_reason"] is None for f in frames[:-2])


def test_include_usage_puts_null_usage_on_every_chunk_and_a_final_usage_frame() -> None:
    frames = payloads(frames_for_read(state_for("qwen3:8b", include_usage=True), THINKING))
    assert frames[-1] == "[DONE]"
    assert frames[-2]["choices"] == []
    assert frames[-2]["usage"] == {"prompt_tokens": 18, "completion_tokens": 5, "total_tokens": 23}
    assert all("usage" in f and f["usage"] is None for f in frames[:-2])


def test_without_include_usage_no_frame_has_usage() -> None:
    frames = payloads(frames_for_read(state_for("qwen3:8b"), THINKING))
    assert not any("usage" in f for f in frames[:-1])


def test_camel_renames_keys_but_not_values() -> None:
    out = frames_for_read(state_for("qwen3:8b", include_usage=True, camel=True), TOOLS)
    for snake in (b'"finish_reason"', b'"tool_calls":', b'"prompt_tokens"', b'"completion_tokens"',
                  b'"total_tokens"'):
        assert snake not in out
    frames = payloads(out)
    assert frames[1]["choices"][0]["delta"]["toolCalls"][0]["function"]["arguments"] == (
        '{"city":"Zürich","unit":"celsius"}'
    )
    assert frames[-3]["choices"][0]["finishReason"] == "tool_calls"  # the value stays snake_case
    assert frames[-2]["usage"] == {"promptTokens": 212, "completionTokens": 41, "totalTokens": 253}


# ---- reads: splits, batches, limits, faults ----------------------------------------------


@pytest.mark.parametrize("model, raw", [s[1:3] for s in STREAMS], ids=STREAM_IDS)
def test_a_line_split_at_every_byte_offset_gives_the_same_frames(model: str, raw: bytes) -> None:
    whole = frames_for_read(state_for(model, include_usage=True), raw)
    for cut in range(len(raw) + 1):
        state = state_for(model, include_usage=True)
        assert frames_for_read(state, raw[:cut]) + frames_for_read(state, raw[cut:]) == whole, cut


@pytest.mark.parametrize("model, raw", [s[1:3] for s in STREAMS], ids=STREAM_IDS)
def test_one_byte_per_read_gives_the_same_frames(model: str, raw: bytes) -> None:
    whole = frames_for_read(state_for(model, camel=True), raw)
    state = state_for(model, camel=True)
    assert b"".join(frames_for_read(state, raw[i : i + 1]) for i in range(len(raw))) == whole


def test_a_frame_is_written_only_when_its_line_is_complete() -> None:
    state = state_for("llama3.2")
    first = PLAIN.split(b"\n")[0]
    assert frames_for_read(state, first) == b""
    assert frames_for_read(state, b"\n") == chunk("llama3.2", PLAIN_DELTAS[0][0], include_usage=False, camel=False)


def test_several_lines_in_one_read_give_all_their_frames() -> None:
    lines = lines_of(THINKING)
    state = state_for("qwen3:8b")
    out = frames_for_read(state, b"\n".join(lines[:3]) + b"\n" + lines[3][:10])
    assert len(payloads(out)) == 3
    out += frames_for_read(state, lines[3][10:] + b"\n" + b"\n".join(lines[4:]) + b"\n")
    assert out == expected("qwen3:8b", THINKING_DELTAS, "stop", (18, 5))


def test_blank_lines_are_skipped() -> None:
    state = state_for("llama3.2")
    assert frames_for_read(state, b"\n\n" + LENGTH.replace(b"\n", b"\n\n")) == expected(
        "llama3.2", LENGTH_DELTAS, "length", (12, 2)
    )


def test_empty_read_gives_nothing() -> None:
    state = state_for("llama3.2")
    assert frames_for_read(state, b"") == b""
    assert not state.role_sent


def error_frame_bytes(message: str) -> bytes:
    return sse({"error": {"message": message, "type": "api_error", "param": None, "code": "upstream_error"}})


FAULT_FRAME = sse({"error": {"message": UPSTREAM_FAULT_MESSAGE, "type": "server_error", "param": None,
                              "code": "upstream_error"}})


def assert_faulted_by(state: StreamState, out: bytes, detail: str) -> None:
    """Ollama's own error line ends the stream with OpenAI's generic text; its text is kept for
    the log (issue 8: paths and GPU errors never reach the client)."""
    assert out.endswith(FAULT_FRAME) and detail.encode() not in out
    assert DONE not in out and state.done
    assert isinstance(state.error, UpstreamFault) and state.error.detail == detail


def assert_ended_by(state: StreamState, out: bytes, message: str) -> None:
    """A faulty upstream ends the stream: an error frame last, no [DONE], the fault kept."""
    assert out.endswith(error_frame_bytes(message))
    assert DONE not in out
    assert state.done
    error = state.error
    assert error is not None
    assert (type(error), error.status, error.code, error.message) == (UpstreamError, 502, "upstream_error", message)


def test_an_unfinished_line_longer_than_max_line_bytes_ends_the_stream() -> None:
    state = state_for("llama3.2", max_line_bytes=64)
    assert frames_for_read(state, b'{"model":"llama3.2","message":{"role":"assistant","content":"') == b""
    out = frames_for_read(state, b"x" * 10)
    assert out == error_frame_bytes("Ollama sent a line longer than 64 bytes.")
    assert_ended_by(state, out, "Ollama sent a line longer than 64 bytes.")
    assert state.tail == b""
    assert frames_for_read(state, b"x" * 100 + b'"},"done":false}\n') == b""


def test_a_line_of_exactly_max_line_bytes_is_accepted() -> None:
    line = lines_of(LENGTH)[0]
    state = state_for("llama3.2", max_line_bytes=len(line))
    assert frames_for_read(state, line[:-1]) == b""
    assert frames_for_read(state, line[-1:] + b"\n").startswith(b"data: ")
    assert state.error is None


def test_a_complete_line_longer_than_max_line_bytes_ends_the_stream() -> None:
    line = b'{"model":"llama3.2","message":{"role":"assistant","content":"' + b"x" * 200 + b'"},"done":false}\n'
    state = state_for("llama3.2", max_line_bytes=64)
    out = frames_for_read(state, line)
    assert_ended_by(state, out, "Ollama sent a line longer than 64 bytes.")


OLLAMA_ERROR = "an error was encountered while running the model: unexpected EOF"


def test_an_error_line_ends_the_stream_with_ollamas_message() -> None:
    state = state_for("llama3.2")
    out = frames_for_read(state, ERRORED)
    before = b"".join(chunk("llama3.2", d, include_usage=False, camel=False) for d, _ in PLAIN_DELTAS[:2])
    assert out == before + FAULT_FRAME
    assert_faulted_by(state, out, OLLAMA_ERROR)


def test_chunks_for_raises_an_error_line_as_upstream_error() -> None:
    with pytest.raises(UpstreamFault) as info:
        chunks_for(state_for("llama3.2"), ERROR_LINE.strip())
    assert (info.value.status, info.value.code, info.value.detail) == (502, "upstream_error", OLLAMA_ERROR)


def test_an_error_line_first_ends_the_stream_before_any_frame() -> None:
    message = "model runner has unexpectedly stopped, this may be due to resource limitations"
    state = state_for("llama3.2")
    out = frames_for_read(state, orjson.dumps({"error": message}) + b"\n")
    assert out == FAULT_FRAME
    assert_faulted_by(state, out, message)


def test_an_empty_error_message_still_says_ollama_failed() -> None:
    with pytest.raises(UpstreamFault) as info:
        chunks_for(state_for("llama3.2"), b'{"error":""}')
    assert info.value.detail == "Ollama reported an error."


@pytest.mark.parametrize("raw", [ERRORED, MALFORMED], ids=["error line", "malformed line"])
def test_frames_before_a_faulty_line_do_not_depend_on_read_boundaries(raw: bytes) -> None:
    whole = frames_for_read(state_for("llama3.2"), raw)
    assert whole.startswith(chunk("llama3.2", PLAIN_DELTAS[0][0], include_usage=False, camel=False))
    for cut in range(len(raw) + 1):
        state = state_for("llama3.2")
        assert frames_for_read(state, raw[:cut]) + frames_for_read(state, raw[cut:]) == whole, cut
    by_line = state_for("llama3.2")
    assert b"".join(frames_for_read(by_line, line + b"\n") for line in lines_of(raw)) == whole


MALFORMED_LINES = [
    ("not JSON", b"this is not json"),
    ("a truncated object", b'{"model":"llama3.2","message":{"role":"assistant","content":"tru'),
    ("a JSON array", b"[1, 2]"),
    ("JSON null", b"null"),
    ("a JSON string", b'"text"'),
    ("not UTF-8", b"\xff\xfe"),
    ("a lone surrogate", b'{"message":{"role":"assistant","content":"\\ud800"},"done":false}'),
]


@pytest.mark.parametrize("line", [r[1] for r in MALFORMED_LINES], ids=[r[0] for r in MALFORMED_LINES])
def test_a_malformed_line_ends_the_stream(line: bytes) -> None:
    state = state_for("llama3.2")
    first = frames_for_read(state, lines_of(PLAIN)[0] + b"\n")
    out = frames_for_read(state, line + b"\n" + lines_of(PLAIN)[1] + b"\n")
    assert out == error_frame_bytes("Ollama sent a malformed stream line.")
    assert_ended_by(state, first + out, "Ollama sent a malformed stream line.")
    with pytest.raises(UpstreamError):
        chunks_for(state_for("llama3.2"), line)


@pytest.mark.parametrize(
    "after",
    [lines_of(PLAIN)[1], ERROR_LINE.strip(), b"this is not json", lines_of(PLAIN)[-1]],
    ids=["a content line", "an error line", "a malformed line", "a second done line"],
)
def test_nothing_after_done(after: bytes) -> None:
    state = state_for("llama3.2", include_usage=True)
    out = frames_for_read(state, LENGTH)
    assert out.endswith(DONE) and state.done
    assert frames_for_read(state, after + b"\n" + after + b"\n") == b""
    assert chunks_for(state, after) == b""
    assert state.error is None


def test_nothing_after_an_error() -> None:
    state = state_for("llama3.2")
    frames_for_read(state, ERRORED)
    assert frames_for_read(state, LENGTH) == b""


def test_nothing_after_done_even_an_over_long_partial_line() -> None:
    limit = max(len(line) for line in lines_of(LENGTH))
    state = state_for("llama3.2", max_line_bytes=limit)
    assert frames_for_read(state, LENGTH).endswith(DONE)
    assert frames_for_read(state, b"x" * (limit + 10)) == b""
    assert state.error is None


# ---- the fast template path is the full dict path, byte for byte -------------------------


@pytest.mark.parametrize("include_usage, camel", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("model, raw", [s[1:3] for s in STREAMS], ids=STREAM_IDS)
def test_fast_path_is_byte_identical_to_the_full_path(model: str, raw: bytes, include_usage: bool,
                                                      camel: bool) -> None:
    fast = state_for(model, include_usage=include_usage, camel=camel)
    full = state_for(model, include_usage=include_usage, camel=camel)
    for line in lines_of(raw):
        assert chunks_for(fast, line) == stream._full_path(full, orjson.loads(line)), line


@pytest.mark.parametrize(
    "message",
    [{"content": "", "tool_calls": [{"function": {"name": "now", "arguments": {}}}]},
     {"content": "x", "thinking": "y"}],
    ids=["content and tool_calls without role", "content and thinking without role"],
)  # fmt: skip
def test_fast_path_is_byte_identical_to_the_full_path_without_role(message: dict[str, Any]) -> None:
    fast, full = state_for("m"), state_for("m")
    first = lines_of(PLAIN)[0]
    chunks_for(fast, first), chunks_for(full, first)
    line = orjson.dumps({"model": "m", "created_at": "2025-06-01T12:00:00Z", "message": message, "done": False})
    assert chunks_for(fast, line) == stream._full_path(full, orjson.loads(line))


@pytest.mark.parametrize("include_usage, camel", VARIANTS, ids=VARIANT_IDS)
def test_template_is_the_dict_path_with_the_content_filled_in(include_usage: bool, camel: bool) -> None:
    state = state_for("hf.co/org/repo:Q4_K_M", include_usage=include_usage, camel=camel)
    for content in ("", "x", "Grüße 👋", '"\\\n\t\x00\x1f\u2028', stream._SLOT, "data: [DONE]\n\n"):
        want = chunk("hf.co/org/repo:Q4_K_M", {"content": content}, include_usage=include_usage, camel=camel)
        assert state.content_head + orjson.dumps(content) + state.content_tail == want


def test_plain_content_lines_do_take_the_fast_path() -> None:
    """Guards the identity tests above against passing vacuously: after the first line, a plain
    content line is the template's head + the JSON string + the template's tail."""
    state = state_for("llama3.2")
    lines = lines_of(PLAIN)
    chunks_for(state, lines[0])
    state.content_head, state.content_tail = b"<head>", b"<tail>"
    assert chunks_for(state, lines[1]) == '<head>" 👋 "<tail>'.encode()
    for slow in (lines_of(THINKING)[0], lines_of(LOGPROBS)[0], lines_of(TOOLS)[1], lines[-1]):
        assert not chunks_for(state_for("m", include_usage=True), slow).startswith(b"<head>")


_CONTENT_LINE = '{{"model":"m","created_at":"2025-06-01T12:00:00Z","message":{{"role":"assistant","content":{}}},"done":false}}'


@settings(max_examples=100, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(contents=st.lists(st.text(st.characters(exclude_categories=["Cs"])), min_size=1, max_size=4), include_usage=st.booleans(), camel=st.booleans())
def test_fast_path_matches_full_path_for_any_text(contents: list[str], include_usage: bool, camel: bool) -> None:
    fast = state_for("m", include_usage=include_usage, camel=camel)
    full = state_for("m", include_usage=include_usage, camel=camel)
    for content in ["first", *contents]:
        line = _CONTENT_LINE.format(json.dumps(content)).encode()
        assert chunks_for(fast, line) == stream._full_path(full, orjson.loads(line))


# ---- the unparsed copy of plain content lines ---------------------------------------------

GO_LINE = b'{"model":"llama3.2","created_at":"2025-06-01T12:00:00.1Z","message":{"role":"assistant","content":%s},"done":false}'

COPIED = [
    ("ascii text is copied", b'"Hello"', True),
    ("utf-8 text is copied", '"héllo 🌍"'.encode(), True),
    ("an empty content is copied", b'""', True),
    ("an escaped quote is decoded and re-encoded", b'"say \\"hi\\""', False),
    ("Go's \\u003c escape is decoded and re-encoded", b'"\\u003cb\\u003e"', False),
    ("a newline escape is decoded and re-encoded", b'"a\\nb"', False),
]


@pytest.mark.parametrize("literal, copied", [r[1:] for r in COPIED], ids=[r[0] for r in COPIED])
def test_plain_lines_are_copied_without_parsing_only_when_exact(monkeypatch: pytest.MonkeyPatch,
                                                                literal: bytes, copied: bool) -> None:
    line = GO_LINE % literal
    expected = stream._full_path(state_for("llama3.2", role_sent=True), orjson.loads(line))
    parsed: list[bytes] = []
    real_loads = orjson.loads
    monkeypatch.setattr(stream.orjson, "loads", lambda raw: parsed.append(raw) or real_loads(raw))
    assert chunks_for(state_for("llama3.2", role_sent=True), line) == expected
    assert (parsed == []) is copied


@pytest.mark.parametrize("literal", [b'"a\x01b"', b'"\xff\xfe"', b'"tab\there"'],
                         ids=["a raw control character", "invalid UTF-8", "a raw tab"])
def test_a_plain_looking_line_that_is_not_json_is_still_refused(literal: bytes) -> None:
    with pytest.raises(UpstreamError, match="malformed"):
        chunks_for(state_for("llama3.2", role_sent=True), GO_LINE % literal)


# ---- reasoning fields, choices of n, one tool call ---------------------------------------------


@pytest.mark.parametrize("keys", [("reasoning",), ("reasoning_content",), ("reasoning", "reasoning_content")],
                         ids=["reasoning", "reasoning_content", "both"])
def test_thinking_goes_under_the_configured_keys(keys: tuple[str, ...]) -> None:
    state = new_stream(context("qwen3:8b"), shape=ReplyShape(reasoning_keys=keys))
    frames = payloads(frames_for_read(state, THINKING))
    deltas = [f["choices"][0]["delta"] for f in frames[:-2]]
    for key in keys:
        assert "".join(d.get(key, "") for d in deltas) == "Okay, the user wants 2+2 — easy."
    assert {k for d in deltas for k in d} == {"role", "content", *keys}


def test_a_choice_of_n_carries_its_index_and_leaves_the_end_to_the_merger() -> None:
    states = [new_stream(context("llama3.2"), include_usage=True, index=i, closes_answer=False) for i in range(2)]
    first = payloads(frames_for_read(states[0], PLAIN))
    second = payloads(frames_for_read(states[1], LENGTH))
    assert {f["choices"][0]["index"] for f in first} == {0} and {f["choices"][0]["index"] for f in second} == {1}
    assert "[DONE]" not in first + second and all(f["choices"] for f in first + second)
    assert first[0]["choices"][0]["delta"]["role"] == "assistant" == second[0]["choices"][0]["delta"]["role"]
    # The merger's end: one usage frame with the sum, then [DONE].
    assert payloads(closing_frames(states)) == [
        {"id": ID, "object": "chat.completion.chunk", "created": CREATED, "model": "llama3.2", "choices": [],
         "usage": {"prompt_tokens": 38, "completion_tokens": 6, "total_tokens": 44}},
        "[DONE]"]
    assert closing_frames([new_stream(context("llama3.2"), closes_answer=False)]) == DONE


def test_the_fast_content_path_carries_the_index_too() -> None:
    state = new_stream(context("llama3.2"), index=3, closes_answer=False)
    state.role_sent = True
    line = lines_of(PLAIN)[1]
    assert payloads(chunks_for(state, line))[0]["choices"][0] == {
        "index": 3, "delta": {"content": " 👋 "}, "logprobs": None, "finish_reason": None}


def test_parallel_tool_calls_false_keeps_the_first_call_of_the_stream() -> None:
    state = new_stream(context("qwen3:8b"), shape=ReplyShape(one_tool_call=True))
    frames = payloads(frames_for_read(state, TOOLS))
    calls = [c for f in frames if isinstance(f, dict) for c in f["choices"][0]["delta"].get("tool_calls", [])]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    both = new_stream(context("llama3.1"), shape=ReplyShape(one_tool_call=True))
    calls = [c for f in payloads(frames_for_read(both, TOOLS_WITH_IDS)) if isinstance(f, dict)
             for c in f["choices"][0]["delta"].get("tool_calls", [])]
    assert [c["id"] for c in calls] == ["call_hx6y0x2j"]


# ---- forced tool calls ---------------------------------------------------------------------------

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
NAMED = forced_call({"type": "function", "function": {"name": "get_weather"}},
                    [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}])
REQUIRED = forced_call("required", [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
])


def constrained(*pieces: str, thinking: str = "", reason: str = "stop") -> bytes:
    """Ollama lines of a constrained answer: thinking, then the JSON in the given pieces."""
    lines = []
    if thinking:
        lines.append({"model": "qwen3:8b", "created_at": "", "done": False,
                      "message": {"role": "assistant", "content": "", "thinking": thinking}})
    lines += [{"model": "qwen3:8b", "created_at": "", "done": False,
               "message": {"role": "assistant", "content": piece}} for piece in pieces]
    lines.append({"model": "qwen3:8b", "created_at": "", "message": {"role": "assistant", "content": ""},
                  "done": True, "done_reason": reason, "prompt_eval_count": 30, "eval_count": len(pieces)})
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def forced_deltas(out: bytes) -> list[Any]:
    return [f["choices"][0] for f in payloads(out) if isinstance(f, dict) and f["choices"]]


def test_a_named_call_streams_announce_then_fragments_exactly() -> None:
    state = new_stream(context("qwen3:8b"), shape=ReplyShape(forced=NAMED))
    out = frames_for_forced_read(state, constrained(" ", '{"ci', 'ty": "Pa', 'ris"}', thinking="Paris."))
    assert [c["delta"] for c in forced_deltas(out)] == [
        {"role": "assistant", "reasoning": "Paris."},
        {"content": None, "tool_calls": [_call(0, "call_0", "get_weather", "")]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Pa'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]},
        {},
    ]
    assert forced_deltas(out)[-1]["finish_reason"] == "tool_calls"
    assert out.endswith(DONE) and state.error is None


def test_a_required_call_waits_for_the_name_then_streams_only_the_arguments() -> None:
    state = new_stream(context("qwen3:8b"), shape=ReplyShape(forced=REQUIRED))
    raw = constrained('{"na', 'me": "get_', 'weather", "argu', 'ments": {"ci', 'ty": "Oslo"', "}", "}")
    deltas = [c["delta"] for c in forced_deltas(frames_for_forced_read(state, raw))]
    assert deltas[0] == {"role": "assistant", "content": None,
                         "tool_calls": [_call(0, "call_0", "get_weather", "")]}
    fragments = [d["tool_calls"][0]["function"]["arguments"] for d in deltas[1:-1]]
    assert fragments == ['{"ci', 'ty": "Oslo"', "}"]  # the wrapper's closing brace is not sent


def test_arguments_before_the_name_are_held_until_the_name_comes() -> None:
    state = new_stream(context("qwen3:8b"), shape=ReplyShape(forced=REQUIRED))
    raw = constrained('{"argu', 'ments": {"ci', 'ty": "Oslo"}, ', '"name": "get_w', 'eather"', "}")
    deltas = [c["delta"] for c in forced_deltas(frames_for_forced_read(state, raw))]
    assert deltas[0]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ""}
    assert [d["tool_calls"][0]["function"]["arguments"] for d in deltas[1:-1]] == ['{"city": "Oslo"}']


@pytest.mark.parametrize("forced, pieces, why", [
    (NAMED, ["Sure, the weather"], "its output is not JSON"),
    (NAMED, ["[1, 2]"], "not a JSON object"),
    (REQUIRED, ['{"name": "get_news", "arguments": {}}'], "does not name one of the tools"),
    (REQUIRED, ['{"name": "get_time"}'], "no arguments object"),
], ids=["named, not JSON", "named, not an object", "required, unknown tool", "required, no arguments"])
def test_a_broken_call_ends_the_stream_with_a_502_frame(forced: Any, pieces: list[str], why: str) -> None:
    state = new_stream(context("qwen3:8b"), shape=ReplyShape(forced=forced))
    frames = payloads(frames_for_forced_read(state, constrained(*pieces)))
    assert frames[-1]["error"]["code"] == "upstream_error" and why in frames[-1]["error"]["message"]
    assert isinstance(state.error, UpstreamError) and "[DONE]" not in frames


def test_a_call_cut_off_by_max_tokens_goes_out_as_generated_with_length() -> None:
    state = new_stream(context("qwen3:8b"), shape=ReplyShape(forced=NAMED))
    choices = forced_deltas(frames_for_forced_read(state, constrained('{"city": "Pa', reason="length")))
    assert choices[-1]["finish_reason"] == "length"
    assert "".join(c["delta"]["tool_calls"][0]["function"]["arguments"] for c in choices[1:-1]) == '{"city": "Pa'
    empty = new_stream(context("qwen3:8b"), shape=ReplyShape(forced=NAMED))
    frames = payloads(frames_for_forced_read(empty, constrained(thinking="Hmm", reason="length")))
    assert "cut off" in frames[-1]["error"]["message"]


# ---- the thinking and argument-fragment templates ------------------------------------------------

_THINKING_LINE = ('{{"model":"m","created_at":"2025-06-01T12:00:00Z","message":{{"role":"assistant","content":"",'
                  '"thinking":{}}},"done":false}}')
KEYS = [("reasoning",), ("reasoning_content",), ("reasoning", "reasoning_content")]


@settings(max_examples=60, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(texts=st.lists(st.text(st.characters(exclude_categories=["Cs"]), min_size=1), min_size=1, max_size=4),
       keys=st.sampled_from(KEYS), include_usage=st.booleans(), camel=st.booleans())
def test_thinking_fast_paths_match_the_full_path(texts: list[str], keys: tuple[str, ...], include_usage: bool,
                                                 camel: bool) -> None:
    def fresh() -> StreamState:
        return new_stream(context("m"), include_usage=include_usage, camel=camel, shape=ReplyShape(keys))

    fast, full = fresh(), fresh()
    for text in ["first", *texts]:
        line = _THINKING_LINE.format(json.dumps(text)).encode()
        assert chunks_for(fast, line) == stream._full_path(full, orjson.loads(line)), line


def test_thinking_lines_do_take_the_template_unparsed(monkeypatch: pytest.MonkeyPatch) -> None:
    state = new_stream(context("qwen3:8b"), shape=ReplyShape(("reasoning", "reasoning_content")))
    lines = lines_of(THINKING)
    chunks_for(state, lines[0])
    state.thinking_parts = (b"<a>", b"<b>", b"<c>")
    parsed: list[bytes] = []
    real_loads = orjson.loads
    monkeypatch.setattr(stream.orjson, "loads", lambda raw: parsed.append(raw) or real_loads(raw))
    assert chunks_for(state, lines[1]) == b'<a>", the user wants"<b>", the user wants"<c>'
    assert parsed == []


@pytest.mark.parametrize("pieces, unparsed", [
    (["{", "Paris", " 12", "}"], 3),
    (['{"q": ', '"say \\"hi\\""', "\n<b>", "}"], 1),
], ids=["pieces without quotes: copied unparsed", "pieces with quotes or escapes: decoded and re-encoded"])
def test_a_forced_fragment_frame_is_the_dict_path_byte_for_byte(monkeypatch: pytest.MonkeyPatch,
                                                                 pieces: list[str], unparsed: int) -> None:
    state = new_stream(context("qwen3:8b"), include_usage=True, shape=ReplyShape(forced=NAMED))
    lines = [orjson.dumps({"model": "qwen3:8b", "created_at": "", "message": {"role": "assistant", "content": p},
                           "done": False}) for p in pieces]
    parsed: list[bytes] = []
    real_loads = orjson.loads
    monkeypatch.setattr(stream.orjson, "loads", lambda raw: parsed.append(raw) or real_loads(raw))
    frames = [stream.forced_chunks_for(state, line) for line in lines]
    assert len(lines) - len(parsed) == unparsed
    for out, text in list(zip(frames, pieces, strict=True))[1:]:
        want = stream.frame(stream._chunk(state, {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}))
        assert out == want
    assert state.forced is not None and state.forced.text == "".join(pieces)
