"""No NUL in any name that reaches Ollama (issue 19): tools, functions, tool_choice, calls, models."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from proxy.errors import InvalidRequest
from proxy.translate.openai import chat, completions, embeddings, responses
from proxy.translate.openai.responses import ResponsesContext

USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
BAD_TOOL = {"type": "function", "function": {"name": "f\u0000", "parameters": {"type": "object"}}}
CALL = {"role": "assistant", "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f\u0000x", "arguments": "{}"}}]}


def ctx() -> ResponsesContext:
    counter = itertools.count(1)
    return ResponsesContext("resp_1", 1700000000, lambda prefix: f"{prefix}{next(counter)}", lambda: 1700000009)


@pytest.mark.parametrize(("translate", "body", "param"), [
    (chat.from_openai, {"model": "m\u0000", "messages": USER}, "model"),
    (chat.from_openai, {"model": "m", "messages": USER, "tools": [BAD_TOOL]}, "tools[0].function.name"),
    (chat.from_openai, {"model": "m", "messages": USER, "tools": [TOOL],
                        "tool_choice": {"type": "function", "function": {"name": "f\u0000"}}},
     "tool_choice.function.name"),
    (chat.from_openai, {"model": "m", "messages": [*USER, CALL]}, "messages[1].tool_calls[0].function.name"),
    (completions.from_openai, {"model": "m\u0000", "prompt": "hi"}, "model"),
    (embeddings.from_openai, {"model": "m\u0000", "input": "hi"}, "model"),
    (lambda b: responses.from_openai(b, ctx()), {"model": "m", "input": "hi",
                                                 "tools": [{"type": "function", "name": "f\u0000"}]}, "tools[0].name"),
    (lambda b: responses.from_openai(b, ctx()), {"model": "m", "input": [
        {"type": "function_call", "call_id": "c1", "name": "f\u0000", "arguments": "{}"}]}, "input[0].name"),
])
def test_a_nul_in_a_name_is_refused(translate: Any, body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest, match="NUL") as caught:
        translate(body)
    assert caught.value.param == param


def test_a_nul_elsewhere_in_content_passes_as_sent() -> None:
    text = "a\u0000b"
    assert chat.from_openai({"model": "m", "messages": [{"role": "user", "content": text}]}).body["messages"] == \
        [{"role": "user", "content": text}]
