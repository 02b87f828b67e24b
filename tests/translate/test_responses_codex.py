"""What Codex really sends to ``/v1/responses``, translated: the captured requests of codex-cli
0.169.0 (``tests/fixtures/codex/``) through ``from_openai``, and Ollama's answers to them back
as the items Codex reads (namespaced function calls, custom tool calls, sealed reasoning),
validated with the official SDK's models."""

from __future__ import annotations

import copy
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from proxy.errors import InvalidRequest, UnsupportedParameter
from proxy.translate.openai.responses import (
    ResponsesContext,
    from_openai,
    skeleton,
    to_history,
    to_response,
)
from proxy.translate.openai.responses_stream import frames_for_read, new_stream
from proxy.translate.openai.sealed import Sealer, derive_key

FIXTURES = Path(__file__).parent.parent / "fixtures" / "codex"
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
SEALER = Sealer(derive_key(b"s" * 32), "key-alice")


def captured(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())["body"]
    return body


def context() -> ResponsesContext:
    counter = itertools.count()
    return ResponsesContext("resp_1", 1700000000, lambda prefix: f"{prefix}{next(counter)}", lambda: 1700000009)


def ollama_names(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools", [])]


def test_codex_first_request_is_accepted_whole(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = captured("turn1")
    request = from_openai(body, context(), sealer=SEALER)
    assert request.sealed_reasoning and not request.store
    assert request.dropped_tools == ("web_search",)
    names = ollama_names(request.body)
    assert names[:4] == ["exec_command", "write_stdin", "request_user_input", "apply_patch"]
    assert "multi_agent_v1__spawn_agent" in names and "multi_agent_v1__close_agent" in names
    assert "web_search" not in names
    assert request.body["think"] == "medium"  # reasoning.effort
    roles = [m["role"] for m in request.body["messages"]]
    assert roles == ["system", "system", "user", "user"]  # developer messages become system
    assert "unknown request fields" not in caplog.text  # every top-level field Codex sends is known
    # The echo keeps the tools as Codex sent them; the SDK's model reads the response.
    Response.model_validate(skeleton(request, context(), stored=False))


def test_codex_for_one_of_its_own_models_is_accepted_too(caplog: pytest.LogCaptureFixture) -> None:
    """``-m gpt-5.5`` (or an alias Codex knows, docs/models.md): its built-in metadata adds
    ``text.verbosity``, ``reasoning.effort``, the hosted ``tool_search`` and the custom apply_patch."""
    caplog.set_level(logging.DEBUG)
    body = captured("builtin-model")
    assert body["text"] == {"verbosity": "low"} and body["reasoning"] == {"effort": "medium"}
    request = from_openai(body, context(), sealer=SEALER)
    assert request.dropped_tools == ("tool_search", "web_search")
    assert "apply_patch" in ollama_names(request.body) and request.body["think"] == "medium"
    assert "unknown request fields" not in caplog.text
    Response.model_validate(skeleton(request, context(), stored=False))


def test_the_custom_apply_patch_tool_is_one_string_argument_with_its_grammar_told() -> None:
    request = from_openai(captured("turn1"), context())
    apply_patch = next(t["function"] for t in request.body["tools"] if t["function"]["name"] == "apply_patch")
    assert apply_patch["parameters"] == {"type": "object", "properties": {"input": {"type": "string"}},
                                         "required": ["input"]}
    assert "lark grammar" in apply_patch["description"] and "*** Begin Patch" in apply_patch["description"]


def test_codex_turn_after_a_tool_call_gives_the_thinking_back() -> None:
    body = captured("turn2")
    reasoning = next(item for item in body["input"] if item["type"] == "reasoning")
    reasoning["encrypted_content"] = SEALER.seal("I should run echo.")
    messages = from_openai(body, context(), sealer=SEALER).body["messages"]
    call_turn, output = messages[-2], messages[-1]
    assert call_turn["thinking"] == "I should run echo."
    assert call_turn["tool_calls"] == [{"id": "call_1", "function": {
        "name": "exec_command", "arguments": {"cmd": "echo hi > made.txt"}}}]
    assert output["role"] == "tool" and output["tool_name"] == "exec_command"
    assert output["content"].startswith("Chunk ID:")


@pytest.mark.parametrize("token", [
    "ENC-BLOB-1",  # OpenAI's own (or anyone's) token
    "opx1." + "A" * 80,  # the right prefix, no valid tag
    Sealer(derive_key(b"s" * 32), "key-bob").seal("bob's thinking"),  # another API key's token
    Sealer(derive_key(b"t" * 32), "key-alice").seal("another server key"),  # another proxy's key
], ids=["foreign", "forged", "another caller", "another server key"])
def test_encrypted_content_not_sealed_for_this_caller_is_400(token: str) -> None:
    body = captured("turn2")
    next(item for item in body["input"] if item["type"] == "reasoning")["encrypted_content"] = token
    with pytest.raises(InvalidRequest) as info:
        from_openai(body, context(), sealer=SEALER)
    assert info.value.param == "input[4].encrypted_content" and info.value.code == "invalid_encrypted_content"


def test_a_tampered_token_is_refused_and_a_sound_one_opens() -> None:
    token = SEALER.seal("thinking ✓" * 100)
    assert token.startswith("opx1.") and len(token) < 400  # compressed before it is encoded
    assert SEALER.open(token, "p") == "thinking ✓" * 100
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    with pytest.raises(InvalidRequest):
        SEALER.open(flipped, "p")


NAMESPACED = {"type": "function_call", "call_id": "call_9", "name": "spawn_agent", "namespace": "multi_agent_v1",
              "arguments": '{"message": "go"}'}


def test_namespaced_calls_round_trip_between_codex_and_ollama() -> None:
    body = captured("turn1")
    ctx = context()
    request = from_openai(body, ctx)
    answer = {"message": {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_9", "function": {"name": "multi_agent_v1__spawn_agent", "arguments": {"message": "go"}}},
        {"id": "call_10", "function": {"name": "apply_patch", "arguments": {"input": "*** Begin Patch\n"}}},
    ]}, "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2}
    done = to_response(answer, skeleton(request, ctx, stored=False), ctx, names=request.names)
    call, custom = done["output"]
    assert {k: call[k] for k in ("type", "name", "namespace", "call_id", "arguments")} == {
        "type": "function_call", "name": "spawn_agent", "namespace": "multi_agent_v1", "call_id": "call_9",
        "arguments": '{"message":"go"}'}
    assert {k: custom[k] for k in ("type", "name", "input", "call_id")} == {
        "type": "custom_tool_call", "name": "apply_patch", "input": "*** Begin Patch\n", "call_id": "call_10"}
    parsed = Response.model_validate(done)
    assert parsed.output[0].namespace == "multi_agent_v1"  # type: ignore[union-attr]
    # Codex hands both back with their outputs: each maps to the same Ollama function again.
    follow = copy.deepcopy(body)
    follow["input"] += [NAMESPACED, {"type": "function_call_output", "call_id": "call_9", "output": "spawned"},
                        {k: custom[k] for k in ("type", "call_id", "name", "input")},
                        {"type": "custom_tool_call_output", "call_id": "call_10", "output": "Done!"}]
    messages = from_openai(follow, context()).body["messages"]
    assert [c["function"]["name"] for c in messages[-4]["tool_calls"]] == ["multi_agent_v1__spawn_agent"]
    assert messages[-3]["tool_name"] == "multi_agent_v1__spawn_agent"
    assert messages[-2]["tool_calls"][0]["function"] == {"name": "apply_patch",
                                                        "arguments": {"input": "*** Begin Patch\n"}}
    assert messages[-1] == {"role": "tool", "content": "Done!", "tool_name": "apply_patch", "tool_call_id": "call_10"}
    # The stored history of that response (previous_response_id) names the same functions.
    history = to_history(done["output"], [])
    assert [c["function"]["name"] for m in history for c in m["tool_calls"]] == [
        "multi_agent_v1__spawn_agent", "apply_patch"]


def test_a_custom_tool_call_streams_as_codex_reads_it() -> None:
    ctx = context()
    request = from_openai(captured("turn1"), ctx, sealer=SEALER)
    state = new_stream(ctx, skeleton(request, ctx, stored=False), sealer=SEALER, names=request.names)
    lines = [
        {"model": "m", "created_at": "t", "message": {"role": "assistant", "content": "", "thinking": "patch it"},
         "done": False},
        {"model": "m", "created_at": "t", "message": {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "function": {"name": "apply_patch", "arguments": {"input": "*** Begin Patch\n"}}}]},
         "done": False},
        {"model": "m", "created_at": "t", "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 1},
    ]
    raw = frames_for_read(state, b"".join(json.dumps(d).encode() + b"\n" for d in lines)) + state.terminal
    events = [json.loads(block.split(b"\ndata: ", 1)[1]) for block in raw.split(b"\n\n") if block]
    for data in events:
        EVENTS.validate_python(data)
    kinds = [e["type"] for e in events]
    assert "response.custom_tool_call_input.delta" in kinds and "response.custom_tool_call_input.done" in kinds
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done[0]["type"] == "reasoning" and SEALER.open(done[0]["encrypted_content"], "p") == "patch it"
    assert done[1]["type"] == "custom_tool_call" and done[1]["input"] == "*** Begin Patch\n"
    assert not any(item["type"] == "message" for item in done)  # a call alone: no empty message


@pytest.mark.parametrize(("tools", "error", "param"), [
    ([{"type": "namespace", "name": "a", "description": "", "tools": [{"type": "function", "name": "b"}]},
      {"type": "function", "name": "a__b"}], InvalidRequest, "tools[1].name"),
    ([{"type": "namespace", "name": "a", "description": "", "tools": "x"}], InvalidRequest, "tools[0].tools"),
    ([{"type": "namespace", "name": "a", "description": "", "tools": [{"type": "web_search"}]}],
     InvalidRequest, "tools[0].tools[0].type"),
    ([{"type": "custom", "name": "c", "format": {"type": "grammar", "syntax": "regex"}}],
     InvalidRequest, "tools[0].format.definition"),
    ([{"type": "custom", "name": "c", "format": {"type": "xml"}}], InvalidRequest, "tools[0].format.type"),
], ids=["flat names collide", "namespace tools not a list", "hosted inside a namespace", "grammar without definition",
        "unknown format"])
def test_tool_refusals_name_the_tool(tools: list[Any], error: type[Exception], param: str) -> None:
    with pytest.raises(error) as info:
        from_openai({"model": "m", "input": "hi", "tools": tools}, context())
    assert isinstance(info.value, InvalidRequest) and info.value.param == param


def test_two_namespaces_may_hold_the_same_name() -> None:
    tools = [{"type": "namespace", "name": ns, "description": "", "tools": [{"type": "function", "name": "get"}]}
             for ns in ("crm", "erp")]
    request = from_openai({"model": "m", "input": "hi", "tools": tools}, context())
    assert ollama_names(request.body) == ["crm__get", "erp__get"]
    assert request.names.lookup("erp__get") == ("erp", "get", "function")


@pytest.mark.parametrize("kind", ["web_search", "web_search_preview", "file_search", "code_interpreter",
                                  "image_generation", "computer_use_preview", "mcp", "tool_search", "local_shell"])
def test_hosted_tools_are_left_out_or_refused_by_config(kind: str) -> None:
    body = {"model": "m", "input": "hi", "tools": [{"type": kind}, {"type": "function", "name": "f"}, {"type": kind}]}
    request = from_openai(body, context())
    assert request.dropped_tools == (kind,) and ollama_names(request.body) == ["f"]
    with pytest.raises(UnsupportedParameter) as info:
        from_openai(body, context(), refuse_hosted=True)
    assert info.value.param == "tools[0].type" and kind in info.value.message
