"""Table tests for ``proxy/translate/openai/responses.py``: Responses requests → Ollama chat bodies,
refusals naming the field, and Ollama answers → response objects (validated by the SDK's model)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from openai.types.responses import Response

from proxy.errors import InvalidRequest, UnsupportedParameter
from proxy.translate.openai.responses import (
    ResponsesContext,
    from_openai,
    previous_response_id,
    skeleton,
    to_history,
    to_response,
)
from proxy.translate.openai.responses_input import item_ids, references, response_of
from proxy.translate.openai.sealed import Sealer, derive_key

IMAGE = "data:image/png;base64,iVBORw0KGgo="


def context() -> ResponsesContext:
    counter = itertools.count()
    return ResponsesContext("resp_1", 1700000000, lambda prefix: f"{prefix}{next(counter)}", lambda: 1700000009)


def translate(body: dict[str, Any], history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return from_openai({"model": "m", **body}, context(), history).body


CALL = {"type": "function_call", "call_id": "call_a", "name": "f", "arguments": '{"x": 1}'}


@pytest.mark.parametrize(("body", "expected"), [
    ({"input": "hi"}, {"messages": [{"role": "user", "content": "hi"}]}),
    ({"input": "hi", "instructions": "Be brief."},
     {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}),
    ({"input": [{"role": "developer", "content": "d"}, {"role": "user", "content": "u"}]},
     {"messages": [{"role": "system", "content": "d"}, {"role": "user", "content": "u"}]}),
    ({"input": [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"},
        {"type": "input_image", "image_url": IMAGE, "detail": "auto"}]}]},
     {"messages": [{"role": "user", "content": "a\nb", "images": ["iVBORw0KGgo="]}]}),
    ({"input": [{"role": "user", "content": "q"}, CALL,
                {"type": "function_call_output", "call_id": "call_a", "output": "42"}]},
     {"messages": [{"role": "user", "content": "q"},
                   {"role": "assistant", "content": "", "tool_calls": [
                       {"id": "call_a", "function": {"name": "f", "arguments": {"x": 1}}}]},
                   {"role": "tool", "content": "42", "tool_name": "f", "tool_call_id": "call_a"}]}),
    ({"input": [{"role": "user", "content": "q"},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hmm"}]},
                {"type": "message", "role": "assistant", "content": [
                    {"type": "output_text", "text": "A", "annotations": []}]}, CALL]},
     {"messages": [{"role": "user", "content": "q"},
                   {"role": "assistant", "content": "A", "thinking": "hmm", "tool_calls": [
                       {"id": "call_a", "function": {"name": "f", "arguments": {"x": 1}}}]}]}),
    ({"input": "hi", "max_output_tokens": 20, "temperature": 0.5, "top_p": 0.8},
     {"options": {"temperature": 0.5, "top_p": 0.8, "num_predict": 20}}),
    ({"input": "hi", "top_k": 3, "options": {"num_ctx": 4096}, "keep_alive": "5m"},
     {"options": {"num_ctx": 4096, "top_k": 3}, "keep_alive": "5m"}),
    ({"input": "hi", "text": {"format": {"type": "json_object"}}}, {"format": "json"}),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}}},
     {"format": {"type": "object"}}),
    ({"input": "hi", "text": {"format": {"type": "text"}}}, {}),
    ({"input": "hi", "reasoning": {"effort": "high", "summary": "auto"}}, {"think": "high"}),
    ({"input": "hi", "reasoning": {"effort": "minimal"}}, {"think": "low"}),
    ({"input": "hi", "reasoning": {"effort": "none"}}, {"think": False}),
    ({"input": "hi", "tools": [{"type": "function", "name": "f", "parameters": None, "strict": True}]},
     {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]}),
    ({"input": "hi", "tool_choice": "none", "tools": [{"type": "function", "name": "f"}]}, {}),
    ({"input": "hi", "store": False, "stream": True, "metadata": {"a": "b"}, "user": "u",
      "include": [], "truncation": "auto", "parallel_tool_calls": True, "top_logprobs": 0,
      "stream_options": {"include_obfuscation": False}, "service_tier": "auto", "prompt_cache_key": "k",
      "safety_identifier": "s", "background": False}, {"stream": True}),
], ids=[
    "string input is one user message", "instructions lead as system", "developer is system",
    "text parts join, images decode", "function call and output", "reasoning becomes thinking of its turn",
    "sampling and budget", "ollama extras", "json_object is json", "json_schema is the schema",
    "text format adds nothing", "effort is think", "minimal clamps to low", "none turns thinking off",
    "function tools in chat shape", "tool_choice none sends no tools", "bookkeeping fields map or echo",
])
def test_request_mapping(body: dict[str, Any], expected: dict[str, Any]) -> None:
    ollama = translate(body)
    for key, value in expected.items():
        assert ollama[key] == value
    unexpected = {"tools", "format", "think", "options", "keep_alive"} - expected.keys()
    assert not unexpected & ollama.keys()


def test_history_comes_before_the_new_input_and_instructions_before_both() -> None:
    history = [{"role": "user", "content": "old"}, {"role": "assistant", "content": "reply",
               "tool_calls": [{"id": "call_a", "function": {"name": "f", "arguments": {}}}]}]
    body = translate({"input": [{"type": "function_call_output", "call_id": "call_a", "output": "ok"}],
                      "instructions": "new rules"}, history)
    assert body["messages"] == [
        {"role": "system", "content": "new rules"}, *history,
        {"role": "tool", "content": "ok", "tool_name": "f", "tool_call_id": "call_a"},
    ]


@pytest.mark.parametrize(("body", "error", "param"), [
    ({}, InvalidRequest, "input"),
    ({"input": 3}, InvalidRequest, "input"),
    ({"input": []}, InvalidRequest, "input"),
    ({"input": "hi", "model": None}, InvalidRequest, "model"),
    ({"input": [{"role": "tool", "content": "x"}]}, InvalidRequest, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/a.png"}]}]},
     UnsupportedParameter, "input[0].content[0].image_url"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
     UnsupportedParameter, "input[0].content[0].file_id"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,%%"}]}]},
     InvalidRequest, "input[0].content[0].image_url"),
    ({"input": [{"role": "system", "content": [{"type": "input_image", "image_url": IMAGE}]}]},
     UnsupportedParameter, "input[0].content[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, UnsupportedParameter, "input[0].content[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "bogus"}]}]}, InvalidRequest, "input[0].content[0].type"),
    ({"input": [{**CALL, "arguments": "[1]"}]}, InvalidRequest, "input[0].arguments"),
    ({"input": [{**CALL, "name": None}]}, InvalidRequest, "input[0].name"),
    ({"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]}, InvalidRequest, "input[0].call_id"),
    ({"input": [CALL, {"type": "function_call_output", "call_id": "call_a", "output": [{"type": "input_image"}]}]},
     UnsupportedParameter, "input[1].output[0]"),
    ({"input": [{"type": "reasoning", "summary": [], "encrypted_content": "gAAAAB-openai-sealed"}]},
     InvalidRequest, "input[0].encrypted_content"),  # no sealer: no token is taken
    ({"include": ["reasoning.encrypted_content", "file_search_call.results"]}, UnsupportedParameter, "include[1]"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, InvalidRequest, "input[0].id"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, UnsupportedParameter, "input[0].type"),
    ({"input": [{"type": "nonsense"}]}, InvalidRequest, "input[0].type"),
    ({"tools": [{"type": "function"}]}, InvalidRequest, "tools[0].name"),
    ({"tools": [{"type": "function", "name": "f", "parameters": "x"}]}, InvalidRequest, "tools[0].parameters"),
    ({"tools": {"type": "function"}}, InvalidRequest, "tools"),
    ({"tools": [{"type": "function", "name": "f", "defer_loading": True}]}, UnsupportedParameter, "tools[0].defer_loading"),
    ({"tools": [{"type": "function", "name": "f", "output_schema": {}}]}, UnsupportedParameter, "tools[0].output_schema"),
    ({"tools": [{"type": "function", "name": "f", "allowed_callers": ["programmatic"]}]},
     UnsupportedParameter, "tools[0].allowed_callers"),
    ({"tool_choice": "required"}, UnsupportedParameter, "tool_choice"),
    ({"tool_choice": {"type": "function", "name": "f"}}, UnsupportedParameter, "tool_choice"),
    ({"tool_choice": "sometimes"}, InvalidRequest, "tool_choice"),
    ({"tool_choice": {"type": "web_search"}, "tools": [{"type": "web_search"}]}, UnsupportedParameter, "tool_choice"),
    ({"tools": [{"type": "frobnicate"}]}, InvalidRequest, "tools[0].type"),
    ({"parallel_tool_calls": False}, UnsupportedParameter, "parallel_tool_calls"),
    ({"max_output_tokens": 0}, InvalidRequest, "max_output_tokens"),
    ({"temperature": "hot"}, InvalidRequest, "temperature"),
    ({"text": {"format": {"type": "json_schema", "name": "s"}}}, InvalidRequest, "text.format.schema"),
    ({"text": {"format": {"type": "json_schema", "schema": {}}}}, InvalidRequest, "text.format.name"),
    ({"text": {"format": {"type": "xml"}}}, InvalidRequest, "text.format.type"),
    ({"reasoning": {"effort": "extreme"}}, InvalidRequest, "reasoning.effort"),
    ({"reasoning": {"summary": "long"}}, InvalidRequest, "reasoning.summary"),
    ({"include": ["message.output_text.logprobs"]}, UnsupportedParameter, "include[0]"),
    ({"include": "all"}, InvalidRequest, "include"),
    ({"top_logprobs": 3}, UnsupportedParameter, "top_logprobs"),
    ({"truncation": "middle"}, InvalidRequest, "truncation"),
    ({"background": True}, UnsupportedParameter, "background"),
    ({"conversation": {"id": "conv_1"}}, UnsupportedParameter, "conversation"),
    ({"prompt": {"id": "pmpt_1"}}, UnsupportedParameter, "prompt"),
    ({"max_tool_calls": 2}, UnsupportedParameter, "max_tool_calls"),
    ({"context_management": [{"type": "compaction"}]}, UnsupportedParameter, "context_management"),
    ({"metadata": {"k": 1}}, InvalidRequest, "metadata.k"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, InvalidRequest, "metadata"),
    ({"store": "yes"}, InvalidRequest, "store"),
    ({"stream_options": {"include_obfuscation": "no"}}, InvalidRequest, "stream_options.include_obfuscation"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_refusals_name_the_field(body: dict[str, Any], error: type[Exception], param: str) -> None:
    with pytest.raises(error) as info:
        translate({"input": "hi", **body} if "input" not in body and body != {} else body)
    assert isinstance(info.value, InvalidRequest) and info.value.param == param
    assert type(info.value) is error


def test_previous_response_id_reader() -> None:
    assert previous_response_id({}) is None
    assert previous_response_id({"previous_response_id": "resp_1"}) == "resp_1"
    with pytest.raises(InvalidRequest):
        previous_response_id({"previous_response_id": ""})
    with pytest.raises(InvalidRequest):
        previous_response_id({"previous_response_id": 5})


def test_input_items_get_ids_and_a_listing_shape() -> None:
    request = from_openai({"model": "m", "input": [
        {"role": "user", "content": "q"}, {**CALL, "id": "fc_keep"},
        {"type": "function_call_output", "call_id": "call_a", "output": "42"},
    ]}, context())
    assert request.input_items == [
        {"id": "msg_0", "type": "message", "role": "user", "status": "completed",
         "content": [{"type": "input_text", "text": "q"}]},
        {"id": "fc_keep", "type": "function_call", "status": "completed", "arguments": '{"x": 1}',
         "call_id": "call_a", "name": "f"},
        {"id": "fco_1", "type": "function_call_output", "call_id": "call_a", "output": "42", "status": "completed"},
    ]


ANSWERS = [
    ({"message": {"role": "assistant", "content": "Hi"}, "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2},
     ["message"], "completed"),
    ({"message": {"role": "assistant", "content": "", "thinking": "t",
                  "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}, "done_reason": "stop"},
     ["reasoning", "function_call"], "completed"),
    ({"message": {"role": "assistant", "content": ""}, "done_reason": "stop"}, ["message"], "completed"),
    ({"message": {"role": "assistant", "content": "cut"}, "done_reason": "length"}, ["message"], "incomplete"),
]


@pytest.mark.parametrize(("answer", "kinds", "status"), ANSWERS,
                         ids=["text", "thinking and a call, no text", "empty reply is an empty message", "length"])
def test_to_response(answer: dict[str, Any], kinds: list[str], status: str) -> None:
    ctx = context()
    request = from_openai({"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f"}]}, ctx)
    response = to_response(answer, skeleton(request, ctx, stored=True), ctx)
    parsed = Response.model_validate(response)  # strict: every required field, right types
    assert [item.type for item in parsed.output] == kinds
    assert parsed.status == status and parsed.store is True
    if status == "incomplete":
        assert parsed.incomplete_details is not None and parsed.incomplete_details.reason == "max_output_tokens"
        assert parsed.completed_at is None and parsed.output[0].status == "incomplete"  # type: ignore[union-attr]
    else:
        assert parsed.completed_at == 1700000009 and parsed.incomplete_details is None
    if "function_call" in kinds:
        call = response["output"][-1]
        assert call["arguments"] == '{"a":1}' and call["call_id"].startswith("call_")
    usage = response["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_history_after_a_response_replays_its_output() -> None:
    output = [{"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}]},
              {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "A", "annotations": [], "logprobs": []}]},
              {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "c", "name": "f",
               "arguments": "{}"}]
    assert to_history(output, [{"role": "user", "content": "q"}]) == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "A", "thinking": "t",
         "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]},
    ]


def test_sealed_reasoning_round_trips_for_stateless_clients() -> None:
    ctx = context()
    sealer = Sealer(derive_key(b"k" * 32), "key-a")
    request = from_openai({"model": "m", "input": "hi", "store": False,
                           "include": ["reasoning.encrypted_content"]}, ctx, sealer=sealer)
    assert request.sealed_reasoning
    answer = {"message": {"role": "assistant", "content": "A", "thinking": "step one\nstep 2 ✓"}, "done_reason": "stop"}
    response = to_response(answer, skeleton(request, ctx, stored=False), ctx, sealer)
    reasoning = response["output"][0]
    assert reasoning["encrypted_content"].startswith("opx1.")
    Response.model_validate(response)
    # The client hands the item back with an empty summary: the thinking comes from the seal.
    again = from_openai({"model": "m", "input": [
        {"role": "user", "content": "hi"}, {**reasoning, "summary": []}, response["output"][1],
        {"role": "user", "content": "more"}]}, context(), sealer=sealer)
    assert again.body["messages"][1] == {"role": "assistant", "content": "A", "thinking": "step one\nstep 2 ✓"}
    plain = from_openai({"model": "m", "input": "hi"}, context())
    assert "encrypted_content" not in to_response(answer, skeleton(plain, ctx, stored=False), ctx)["output"][0]


def test_item_ids_name_their_response() -> None:
    make = item_ids("resp_0123456789abcdef01234567")
    ids = [make("msg_"), make("fc_"), make("msg_")]
    assert len(set(ids)) == 3 and ids[0].startswith("msg_0123456789abcdef01234567")
    assert {response_of(i) for i in ids} == {"resp_0123456789abcdef01234567"}
    for foreign in ("msg_1", "msg_0123456789abcdef01234567", "msg_0123456789abcdef0123456Z1", "nounderscore"):
        assert response_of(foreign) is None, foreign
    assert references([{"role": "user", "content": "x"}, {"type": "item_reference", "id": "fc_1"}]) == [(1, "fc_1")]
    assert references("text") == []
    with pytest.raises(InvalidRequest) as info:
        references([{"type": "item_reference"}])
    assert info.value.param == "input[0].id"


def test_a_call_joining_a_stored_turn_leaves_the_stored_message_alone() -> None:
    stored = {"role": "assistant", "content": "Let me check."}
    history = [{"role": "user", "content": "q"}, stored]
    body = translate({"input": [CALL, {"type": "function_call_output", "call_id": "call_a", "output": "1"}]}, history)
    assert body["messages"][1]["tool_calls"][0]["id"] == "call_a"
    assert stored == {"role": "assistant", "content": "Let me check."}
