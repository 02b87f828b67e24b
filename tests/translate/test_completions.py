"""Tables for ``proxy/translate/openai/completions.py``: request rules, refusals, answers and streams.

Request rows compare the whole ``/api/generate`` body. Stream rows feed recorded Ollama lines and
compare the exact SSE bytes, including the usage chunk and ``[DONE]``.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.errors import InvalidRequest, ProxyError, UnsupportedParameter, UpstreamError
from proxy.translate.openai.completions import (
    CompletionContext,
    chunks_for,
    frames_for_read,
    from_openai,
    new_stream,
    styled,
    to_completion,
    to_logprobs,
)

MODEL = "llama3.2"
CTX = CompletionContext(id="cmpl-1", created=1700000000, model=MODEL)


def body(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": "Once upon", **extra}


def generate(stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": "Once upon", "stream": stream, **extra}


@pytest.mark.parametrize(
    ("request_body", "ollama"),
    [
        (body(), generate()),
        (body(stream=True), generate(True)),
        (body(prompt=["Once upon"]), generate()),
        (body(prompt=""), generate(prompt="")),
        (body(suffix=" happily ever after."), generate(suffix=" happily ever after.")),
        (body(suffix=""), generate()),
        (
            body(
                max_tokens=32,
                temperature=0.2,
                top_p=0.9,
                seed=7,
                frequency_penalty=0.5,
                presence_penalty=0.1,
            ),
            generate(
                options={
                    "temperature": 0.2,
                    "top_p": 0.9,
                    "frequency_penalty": 0.5,
                    "presence_penalty": 0.1,
                    "seed": 7,
                    "num_predict": 32,
                }
            ),
        ),
        (body(stop="\n"), generate(options={"stop": ["\n"]})),
        (body(stop=["a", "b"]), generate(options={"stop": ["a", "b"]})),
        (body(n=1, best_of=1, echo=False, logit_bias={}, user="u"), generate()),
        (body(logprobs=0), generate(logprobs=True)),
        (body(logprobs=3), generate(logprobs=True, top_logprobs=3)),
        (
            body(keep_alive="10m", think=False, raw=True, top_k=40, options={"num_ctx": 4096}),
            generate(
                keep_alive="10m", think=False, raw=True, options={"num_ctx": 4096, "top_k": 40}
            ),
        ),
        (body(max_completion_tokens=5, surprise=True), generate()),
    ],
    ids=[
        "prompt string, stream false",
        "stream flag passed",
        "one-prompt array is that prompt",
        "empty prompt allowed",
        "suffix passed for fill-in-the-middle",
        "empty suffix not sent",
        "sampling into options, max_tokens is num_predict",
        "stop string becomes a list",
        "stop list kept",
        "harmless values of unsupported params accepted",
        "logprobs 0 asks for sampled-token logprobs only",
        "logprobs n asks for n alternatives",
        "ollama extras passed on",
        "chat-only and unknown fields ignored",
    ],
)
def test_request(request_body: dict[str, Any], ollama: dict[str, Any]) -> None:
    assert from_openai(request_body).body == ollama


@pytest.mark.parametrize(
    ("request_body", "stream", "include_usage", "logprobs"),
    [
        (body(), False, False, None),
        (body(stream=True, stream_options={"include_usage": True}), True, True, None),
        (body(stream=True, stream_options={}), True, False, None),
        (body(logprobs=2), False, False, 2),
    ],
    ids=["defaults", "include_usage read", "empty stream_options", "logprobs count kept"],
)
def test_request_flags(
    request_body: dict[str, Any], stream: bool, include_usage: bool, logprobs: int | None
) -> None:
    request = from_openai(request_body)
    assert (request.stream, request.include_usage, request.logprobs, request.model) == (
        stream,
        include_usage,
        logprobs,
        MODEL,
    )


@pytest.mark.parametrize(
    ("request_body", "error", "param"),
    [
        (body(echo=True), UnsupportedParameter, "echo"),
        (body(best_of=2), UnsupportedParameter, "best_of"),
        (body(n=2), UnsupportedParameter, "n"),
        (body(logit_bias={"50256": -100}), UnsupportedParameter, "logit_bias"),
        (body(prompt=["a", "b"]), UnsupportedParameter, "prompt"),
        (body(prompt=[1, 2, 3]), UnsupportedParameter, "prompt"),
        (body(prompt=[[1, 2], [3]]), UnsupportedParameter, "prompt"),
        (body(prompt=[]), InvalidRequest, "prompt"),
        (body(prompt=None), InvalidRequest, "prompt"),
        (body(prompt={"text": "a"}), InvalidRequest, "prompt"),
        (body(prompt=["a", None]), InvalidRequest, "prompt"),
        ({"prompt": "x"}, InvalidRequest, "model"),
        (body(model=""), InvalidRequest, "model"),
        (body(logprobs=21), InvalidRequest, "logprobs"),
        (body(logprobs=True), InvalidRequest, "logprobs"),
        (body(max_tokens=0), InvalidRequest, "max_tokens"),
        (body(temperature="hot"), InvalidRequest, "temperature"),
        (body(stop=[1]), InvalidRequest, "stop"),
        (body(stream="yes"), InvalidRequest, "stream"),
        (body(stream_options={"include_usage": 1}), InvalidRequest, "stream_options.include_usage"),
        (body(suffix=3), InvalidRequest, "suffix"),
        (body(raw="yes"), InvalidRequest, "raw"),
        (body(think=1), InvalidRequest, "think"),
        (body(keep_alive=True), InvalidRequest, "keep_alive"),
    ],
    ids=[
        "echo refused",
        "best_of above 1 refused",
        "n above 1 refused",
        "logit_bias refused",
        "several prompts refused",
        "token-id prompt refused",
        "token-id prompts refused",
        "empty prompt array refused",
        "prompt is required",
        "object prompt refused",
        "non-string prompt item refused",
        "model is required",
        "model must not be empty",
        "logprobs within ollama's 0-20",
        "logprobs must be an integer",
        "max_tokens at least 1",
        "temperature must be a number",
        "stop items must be strings",
        "stream must be a boolean",
        "include_usage must be a boolean",
        "suffix must be a string",
        "raw must be a boolean",
        "think must be a boolean or level",
        "keep_alive must be a duration",
    ],
)
def test_refusals(request_body: dict[str, Any], error: type[ProxyError], param: str) -> None:
    with pytest.raises(error) as info:
        from_openai(request_body)
    assert type(info.value) is error
    assert info.value.status == 400
    assert info.value.param == param


DONE_LINE = {
    "model": MODEL,
    "created_at": "2025-01-01T00:00:00Z",
    "response": "",
    "done": True,
    "done_reason": "stop",
    "context": [1, 2],
    "prompt_eval_count": 5,
    "eval_count": 3,
}
LOGPROBS = [
    {"token": "Hel", "logprob": -0.1, "bytes": [72, 101, 108], "top_logprobs": [
        {"token": "Hel", "logprob": -0.1}, {"token": "my_token", "logprob": -2.5}]},
    {"token": "lo", "logprob": -0.2, "top_logprobs": [{"token": "lo", "logprob": -0.2}]},
]  # fmt: skip
OPENAI_LOGPROBS = {
    "tokens": ["Hel", "lo"],
    "token_logprobs": [-0.1, -0.2],
    "top_logprobs": [{"Hel": -0.1, "my_token": -2.5}, {"lo": -0.2}],
    "text_offset": [0, 3],
}


def completion(
    text: str, reason: str, lp: dict[str, Any] | None = None, usage: tuple[int, int] = (5, 3)
) -> dict[str, Any]:
    return {
        "id": "cmpl-1", "object": "text_completion", "created": 1700000000, "model": MODEL,
        "choices": [{"text": text, "index": 0, "logprobs": lp, "finish_reason": reason}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("ollama", "logprobs", "expected"),
    [
        ({**DONE_LINE, "response": "Hello"}, None, completion("Hello", "stop")),
        (
            {**DONE_LINE, "response": "Hel", "done_reason": "length"},
            None,
            completion("Hel", "length"),
        ),
        (
            {**DONE_LINE, "response": "", "done_reason": "load", "eval_count": 0},
            None,
            completion("", "stop", usage=(5, 0)),
        ),
        ({**DONE_LINE, "response": "Hello", "thinking": "hmm"}, None, completion("Hello", "stop")),
        (
            {**DONE_LINE, "response": "Hello", "logprobs": LOGPROBS},
            2,
            completion("Hello", "stop", OPENAI_LOGPROBS),
        ),
        (
            {**DONE_LINE, "response": "Hello", "logprobs": LOGPROBS},
            0,
            completion("Hello", "stop", {**OPENAI_LOGPROBS, "top_logprobs": None}),
        ),
        (
            {**DONE_LINE, "response": "Hello", "logprobs": LOGPROBS},
            None,
            completion("Hello", "stop"),
        ),
    ],
    ids=[
        "text, stop, usage from ollama's counts",
        "num_predict reached is length",
        "a load-only answer is an empty stop",
        "thinking has no place in a legacy completion",
        "logprobs in openai's legacy shape",
        "logprobs 0 has no alternatives",
        "logprobs not asked, not shown",
    ],
)
def test_response(ollama: dict[str, Any], logprobs: int | None, expected: dict[str, Any]) -> None:
    assert to_completion(ollama, CTX, logprobs) == expected


def test_camel_style_keeps_tokens_as_sent() -> None:
    camel = styled(completion("Hello", "stop", OPENAI_LOGPROBS), camel=True)
    choice = camel["choices"][0]
    assert choice["finishReason"] == "stop"
    assert choice["logprobs"] == {
        "tokens": ["Hel", "lo"],
        "tokenLogprobs": [-0.1, -0.2],
        "topLogprobs": [{"Hel": -0.1, "my_token": -2.5}, {"lo": -0.2}],
        "textOffset": [0, 3],
    }
    assert camel["usage"] == {"promptTokens": 5, "completionTokens": 3, "totalTokens": 8}


def test_to_logprobs_continues_the_offset() -> None:
    lp, offset = to_logprobs(LOGPROBS[1:], 3, True)
    assert lp is not None and lp["text_offset"] == [3]
    assert offset == 5


def line(response: str, **extra: Any) -> bytes:
    return (
        orjson.dumps(
            {
                "model": MODEL,
                "created_at": "2025-01-01T00:00:00Z",
                "response": response,
                "done": False,
                **extra,
            }
        )
        + b"\n"
    )


DONE = orjson.dumps(DONE_LINE) + b"\n"


def sse(text: str, reason: str | None = None, usage: bool = False, lp: Any = None) -> bytes:
    chunk: dict[str, Any] = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [{"text": text, "index": 0, "logprobs": lp, "finish_reason": reason}],
    }
    if usage:
        chunk["usage"] = None
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


USAGE = (
    b'data: {"id":"cmpl-1","object":"text_completion","created":1700000000,"model":"llama3.2",'
    b'"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}\n\n'
)


@pytest.mark.parametrize(
    ("flags", "lines", "expected"),
    [
        (
            {},
            [line("Once"), line(" more"), DONE],
            sse("Once") + sse(" more") + sse("", "stop") + b"data: [DONE]\n\n",
        ),
        (
            {"stream_options": {"include_usage": True}},
            [line("Hi"), DONE],
            sse("Hi", usage=True) + sse("", "stop", usage=True) + USAGE + b"data: [DONE]\n\n",
        ),
        (
            {},
            [line("", thinking="hmm"), line("Hi"), DONE],
            sse("Hi") + sse("", "stop") + b"data: [DONE]\n\n",
        ),
        (
            {},
            [line("Hi"), orjson.dumps({**DONE_LINE, "done_reason": "length"}) + b"\n"],
            sse("Hi") + sse("", "length") + b"data: [DONE]\n\n",
        ),
        (
            {"logprobs": 2},
            [line("Hel", logprobs=LOGPROBS[:1]), line("lo", logprobs=LOGPROBS[1:]), DONE],
            sse(
                "Hel",
                lp={
                    "tokens": ["Hel"],
                    "token_logprobs": [-0.1],
                    "top_logprobs": [{"Hel": -0.1, "my_token": -2.5}],
                    "text_offset": [0],
                },
            )
            + sse(
                "lo",
                lp={
                    "tokens": ["lo"],
                    "token_logprobs": [-0.2],
                    "top_logprobs": [{"lo": -0.2}],
                    "text_offset": [3],
                },
            )
            + sse("", "stop")
            + b"data: [DONE]\n\n",
        ),
        ({}, [line("Hi"), DONE, line("late")], sse("Hi") + sse("", "stop") + b"data: [DONE]\n\n"),
    ],
    ids=[
        "each line a chunk, finish on the done line, then [DONE]",
        "usage null on chunks, usage chunk before [DONE]",
        "thinking-only lines make no chunk",
        "length finish",
        "logprobs per chunk, offsets continue",
        "nothing after done",
    ],
)
def test_stream_bytes(flags: dict[str, Any], lines: list[bytes], expected: bytes) -> None:
    state = new_stream(CTX, from_openai(body(stream=True, **flags)))
    assert b"".join(chunks_for(state, raw.rstrip(b"\n")) for raw in lines) == expected
    assert state.done


@pytest.mark.parametrize("cut", [1, 7, 30, 60], ids=["cut 1", "cut 7", "cut mid-line", "cut later"])
def test_stream_reads_split_anywhere_give_the_same_bytes(cut: int) -> None:
    data = line("Once") + line(" more") + DONE
    whole = new_stream(CTX, from_openai(body(stream=True)))
    split = new_stream(CTX, from_openai(body(stream=True)))
    expected = frames_for_read(whole, data)
    assert frames_for_read(split, data[:cut]) + frames_for_read(split, data[cut:]) == expected


def test_stream_camel_keys() -> None:
    state = new_stream(CTX, from_openai(body(stream=True)), camel=True)
    out = chunks_for(state, DONE.rstrip(b"\n"))
    assert b'"finishReason":"stop"' in out and b"finish_reason" not in out


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "malformed"),
        (b"[1]", "malformed"),
        (b'{"error":"model runner crashed"}', "The model server had an error"),  # text: log only
    ],
    ids=["garbage line", "not an object", "ollama's error line"],
)
def test_stream_faults(raw: bytes, message: str) -> None:
    state = new_stream(CTX, from_openai(body(stream=True)))
    with pytest.raises(UpstreamError, match=message):
        chunks_for(state, raw)


def test_a_fault_keeps_the_frames_before_it_then_an_error_frame() -> None:
    state = new_stream(CTX, from_openai(body(stream=True)))
    out = frames_for_read(
        state, line("a") + line("b") + b'{"error":"model runner crashed"}\n' + line("c")
    )
    assert out == sse("a") + sse("b") + (
        b'data: {"error":{"message":"The model server had an error while processing your request.",'
        b'"type":"server_error","param":null,"code":"upstream_error"}}\n\n'
    )
    assert state.done and state.error is not None
    assert frames_for_read(state, line("d")) == b""


def test_stream_refuses_an_endless_line() -> None:
    state = new_stream(CTX, from_openai(body(stream=True)), max_line_bytes=10)
    out = frames_for_read(state, b'{"response":"' + b"x" * 20)
    assert out.startswith(b'data: {"error":') and b"longer than 10 bytes" in out
    assert state.error is not None


def test_a_complete_line_longer_than_the_limit_ends_the_stream() -> None:
    state = new_stream(CTX, from_openai(body(stream=True)), max_line_bytes=120)
    out = frames_for_read(state, line("ok") + line("x" * 200))
    assert out.startswith(sse("ok")) and b"longer than 120 bytes" in out
    assert state.error is not None


def test_nothing_after_done_even_an_over_long_partial_line() -> None:
    state = new_stream(CTX, from_openai(body(stream=True)), max_line_bytes=300)
    out = frames_for_read(state, line("Hi") + DONE + b"x" * 400)
    assert out.endswith(b"data: [DONE]\n\n") and state.error is None
    assert frames_for_read(state, b"y" * 400 + b"\n") == b""
