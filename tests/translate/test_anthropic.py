"""Anthropic Messages ⇄ Ollama ``/api/chat``: table tests of both directions, no network.

The request side starts from the body Claude Code 2.1.328 really sent (``claude_code_request.json``,
captured from ``claude -p`` against a recording server, redacted)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ProxyError,
    RateLimited,
    RateLimitExceeded,
    Unauthorized,
    UnsupportedParameter,
    UpstreamBusy,
    UpstreamError,
    UpstreamFault,
    UpstreamTimeout,
    anthropic_status,
    to_anthropic_envelope,
)
from proxy.translate.anthropic import (
    AnswerShape,
    MessageContext,
    Signer,
    StopCollector,
    frames_for_read,
    from_anthropic,
    new_stream,
    to_message,
)
from proxy.translate.anthropic.models import to_anthropic_model_list
from proxy.translate.anthropic.response import StopMatcher

CAPTURED = json.loads((Path(__file__).parent / "claude_code_request.json").read_text())
SIGNER = Signer(b"k" * 32, "key-a")
USER = [{"role": "user", "content": "hi"}]
TOOL = {"name": "get_weather", "description": "Weather.", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def translate(**fields: Any) -> Any:
    return from_anthropic({"model": "llama3.2", "max_tokens": 64, "messages": USER, **fields}, SIGNER)


# ---- request: the captured Claude Code body ------------------------------------------------------


def test_claude_codes_real_request_translates() -> None:
    body = copy.deepcopy(CAPTURED["body"])
    request = from_anthropic(body, SIGNER)
    ollama = request.body
    assert CAPTURED["path"] == "/v1/messages?beta=true"
    assert ollama["model"] == "qwen3:8b" and ollama["stream"] is True
    assert ollama["options"] == {"num_predict": 32000}
    assert ollama["think"] == "high"  # adaptive thinking at effort "high"
    assert not request.show_thinking  # display "omitted"
    assert "metadata" not in ollama and request.user_id is not None and "device_id" in request.user_id
    roles = [m["role"] for m in ollama["messages"]]
    assert roles == ["system", "user", "system", "assistant", "tool"]
    system = ollama["messages"][0]["content"]
    assert system.startswith("You are a Claude agent") and "x-anthropic-billing-header" not in system
    names = [tool["function"]["name"] for tool in ollama["tools"]]
    assert len(names) == 12 and {"Bash", "Write", "DeferredToolPlaceholder"} <= set(names)
    call = ollama["messages"][3]["tool_calls"][0]
    assert call == {"id": "toolu_01", "function": {"name": "Write", "arguments": {
        "file_path": "/home/user/project/hello.txt", "content": "hi\n"}}}
    result = ollama["messages"][4]
    assert result["tool_name"] == "Write" and result["tool_call_id"] == "toolu_01"
    assert result["content"].startswith("File created successfully")
    assert request.dropped == () and request.forced is None


# ---- request: fields one by one --------------------------------------------------------------------


@pytest.mark.parametrize("system, expected", [
    ("Be brief.", [{"role": "system", "content": "Be brief."}]),
    ([{"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "B"}],
     [{"role": "system", "content": "A\n\nB"}]),
    ([], []),
])
def test_system_string_or_blocks(system: Any, expected: list[dict[str, Any]]) -> None:
    assert translate(system=system).body["messages"] == [*expected, {"role": "user", "content": "hi"}]


def test_images_base64_and_refused_sources() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "aGk="}}
    body = translate(messages=[{"role": "user", "content": [image, {"type": "text", "text": "what?"}]}]).body
    assert body["messages"] == [{"role": "user", "content": "what?", "images": ["aGk="]}]
    url = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    with pytest.raises(UnsupportedParameter) as refused:
        translate(messages=[{"role": "user", "content": [url]}])
    assert refused.value.param == "messages[0].content[0].source.type"
    with pytest.raises(InvalidRequest) as bad:
        translate(messages=[{"role": "user", "content": [{**image, "source": {**image["source"], "data": "!!"}}]}])
    assert bad.value.param == "messages[0].content[0].source.data"


def _turns(result: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Looking."},
                                              {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [result, {"type": "text", "text": "and then?"}]}]


def test_tool_use_and_results_string_blocks_and_errors() -> None:
    plain = translate(messages=_turns({"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"})).body
    assert plain["messages"][1] == {"role": "assistant", "content": "Looking.", "tool_calls": [
        {"id": "toolu_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    assert plain["messages"][2:] == [
        {"role": "tool", "content": "Sunny", "tool_name": "get_weather", "tool_call_id": "toolu_1"},
        {"role": "user", "content": "and then?"}]
    blocks = {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True, "content": [
        {"type": "text", "text": "no such city"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "aGk="}}]}
    tool = translate(messages=_turns(blocks)).body["messages"][2]
    assert tool["content"] == "Error: no such city" and tool["images"] == ["aGk="]
    with pytest.raises(InvalidRequest) as unknown:
        translate(messages=_turns({"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}))
    assert unknown.value.param == "messages[2].content[0].tool_use_id"


def test_tool_results_with_tool_references_and_search_results() -> None:
    blocks = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
        {"type": "tool_reference", "tool_name": "NotebookEdit"},
        {"type": "search_result", "title": "Docs", "source": "https://x", "content": [{"type": "text", "text": "Hi"}]}]}
    tool = translate(messages=_turns(blocks)).body["messages"][2]
    assert tool["content"] == "Tool available: NotebookEdit\nDocs — https://x\nHi"


def test_thinking_blocks_come_back_from_text_or_signature() -> None:
    def assistant(block: dict[str, Any]) -> dict[str, Any]:
        messages = [*USER, {"role": "assistant", "content": [block, {"type": "text", "text": "Hi."}]}, *USER]
        return translate(messages=messages).body["messages"][1]  # type: ignore[no-any-return]

    shown = {"type": "thinking", "thinking": "Greet back.", "signature": "anything"}
    assert assistant(shown) == {"role": "assistant", "content": "Hi.", "thinking": "Greet back."}
    omitted = {"type": "thinking", "thinking": "", "signature": SIGNER.sign("Greet back.")}
    assert assistant(omitted)["thinking"] == "Greet back."
    other_key = {"type": "thinking", "thinking": "", "signature": Signer(b"k" * 32, "key-b").sign("Injected.")}
    forged = {"type": "thinking", "thinking": "", "signature": "v1.SW5qZWN0ZWQ.AAAA"}
    anthropics = {"type": "redacted_thinking", "data": "EqoBCkgIARABGAIiQL2UoU0b1OHYi"}
    for block in (other_key, forged, anthropics):
        assert "thinking" not in assistant(block)


def test_signature_round_trip_is_bound_to_key_and_text() -> None:
    signature = SIGNER.sign("ünïcode thinking")
    assert SIGNER.open(signature) == "ünïcode thinking"
    assert Signer(b"k" * 32, "key-b").open(signature) is None
    assert Signer(b"x" * 32, "key-a").open(signature) is None
    head, body, mac = signature.split(".")
    assert SIGNER.open(f"{head}.{body}A.{mac}") is None and SIGNER.open("garbage") is None


def test_tools_client_and_server() -> None:
    tools = [TOOL, {**TOOL, "name": "later", "defer_loading": True, "cache_control": {"type": "ephemeral"}},
             {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
             {"type": "bash_20250124", "name": "bash"}, {"type": "custom", **TOOL, "name": "custom_one"}]
    request = translate(tools=tools)
    assert [t["function"]["name"] for t in request.body["tools"]] == ["get_weather", "later", "custom_one"]
    assert request.body["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "Weather.", "parameters": TOOL["input_schema"]}}
    assert request.dropped == ("web_search", "bash")
    with pytest.raises(UnsupportedParameter) as forced:
        translate(tools=tools, tool_choice={"type": "tool", "name": "web_search"})
    assert forced.value.param == "tool_choice.name"


def test_tool_choice() -> None:
    other = {**TOOL, "name": "get_time"}
    assert "tools" not in translate(tools=[TOOL], tool_choice={"type": "none"}).body
    auto = translate(tools=[TOOL], tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert auto.forced is None and auto.one_tool_call and auto.body["tools"]
    named = translate(tools=[TOOL, other], tool_choice={"type": "tool", "name": "get_time"})
    assert named.forced is not None and named.forced.named and named.forced.names == ("get_time",)
    assert named.body["format"] == TOOL["input_schema"] and "tools" not in named.body
    assert named.body["messages"][0]["role"] == "system" and "get_time" in named.body["messages"][0]["content"]
    assert translate(tools=[TOOL], tool_choice={"type": "any"}, stop_sequences=["}"]).stop_sequences == ()
    anyof = translate(tools=[TOOL, other], tool_choice={"type": "any"})
    assert anyof.forced is not None and not anyof.forced.named and "anyOf" in anyof.body["format"]
    for choice, param in (({"type": "tool", "name": "nope"}, "tool_choice.name"), ({"type": "any"}, "tool_choice"),
                          ({"type": "sometimes"}, "tool_choice.type")):
        with pytest.raises(InvalidRequest) as refused:
            translate(tools=[TOOL] if choice["type"] != "any" else [], tool_choice=choice)
        assert refused.value.param == param


@pytest.mark.parametrize("thinking, output, think", [
    (None, None, None),  # no thinking asked: the handler sends false (or the model's default)
    ({"type": "disabled"}, None, False),
    ({"type": "enabled", "budget_tokens": 2048}, None, True),
    ({"type": "adaptive"}, None, True),
    ({"type": "adaptive"}, {"effort": "low"}, "low"),
    ({"type": "adaptive", "display": "omitted"}, {"effort": "max"}, "high"),
    (None, {"effort": "medium"}, None),  # effort alone enables nothing
])
def test_thinking_and_effort_to_think(thinking: Any, output: Any, think: Any) -> None:
    fields = {k: v for k, v in (("thinking", thinking), ("output_config", output)) if v is not None}
    assert translate(**fields).body.get("think") == think


def test_sampling_stops_metadata_and_no_effect_fields() -> None:
    request = translate(temperature=0.2, top_p=0.9, top_k=40, stop_sequences=["END", "\n\n"],
                        metadata={"user_id": "u-1"}, context_management={"edits": []}, service_tier="auto",
                        container="c", output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}})
    assert request.body["options"] == {"num_predict": 64, "temperature": 0.2, "top_p": 0.9, "top_k": 40}
    assert request.stop_sequences == ("END", "\n\n")  # matched by the proxy, not sent
    assert request.user_id == "u-1" and request.body["format"] == {"type": "object"}
    assert set(request.body) == {"model", "messages", "stream", "options", "format"}


@pytest.mark.parametrize("fields, param", [
    ({"max_tokens": None}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "server_tool_use"}]}]}, "messages[0].content[0].type"),
    ({"mcp_servers": [{"type": "url", "url": "https://x"}]}, "mcp_servers"),
    ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
    ({"thinking": {"type": "sometimes"}}, "thinking.type"),
    ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
    ({"stop_sequences": "END"}, "stop_sequences"),
    ({"temperature": "hot"}, "temperature"),
])
def test_refusals_name_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        translate(**fields)
    assert refused.value.param == param


# ---- answer ----------------------------------------------------------------------------------------


def ctx() -> MessageContext:
    ids = iter(range(100))
    return MessageContext("msg_1", "llama3.2", lambda: f"toolu_{next(ids)}", SIGNER)


def answer(content: str = "", thinking: str | None = None, calls: list[Any] | None = None,
           done_reason: str = "stop") -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = calls
    return {"model": "llama3.2", "message": message, "done": True, "done_reason": done_reason,
            "prompt_eval_count": 7, "eval_count": 3}


CALL = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
USAGE = {"input_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 3}


@pytest.mark.parametrize("ollama, shape, matched, content, reason", [
    (answer("Hi."), AnswerShape(), None, [{"type": "text", "text": "Hi."}], "end_turn"),
    (answer("Hi", done_reason="length"), AnswerShape(), None, [{"type": "text", "text": "Hi"}], "max_tokens"),
    (answer("Hi"), AnswerShape(stop_sequences=("END",)), "END", [{"type": "text", "text": "Hi"}], "stop_sequence"),
    (answer("", calls=[CALL, CALL]), AnswerShape(one_tool_call=True), None,
     [{"type": "tool_use", "id": "toolu_0", "name": "get_weather", "input": {"city": "Paris"}}], "tool_use"),
    (answer("Hm.", thinking="Think."), AnswerShape(), None,
     [{"type": "thinking", "thinking": "Think.", "signature": SIGNER.sign("Think.")}, {"type": "text", "text": "Hm."}],
     "end_turn"),
    (answer("Hm.", thinking="Think."), AnswerShape(show_thinking=False), None,
     [{"type": "thinking", "thinking": "", "signature": SIGNER.sign("Think.")}, {"type": "text", "text": "Hm."}],
     "end_turn"),
])
def test_to_message(ollama: dict[str, Any], shape: AnswerShape, matched: str | None,
                    content: list[dict[str, Any]], reason: str) -> None:
    message = to_message(ollama, ctx(), shape, matched)
    assert message == {"id": "msg_1", "type": "message", "role": "assistant", "model": "llama3.2",
                       "content": content, "stop_reason": reason, "stop_sequence": matched, "usage": USAGE}


def test_forced_call_answer_is_a_tool_use_block() -> None:
    forced = translate(tools=[TOOL], tool_choice={"type": "any"}).forced
    message = to_message(answer('{"city": "Oslo"}'), ctx(), AnswerShape(forced=forced, one_tool_call=True))
    assert message["content"] == [{"type": "tool_use", "id": "toolu_0", "name": "get_weather",
                                   "input": {"city": "Oslo"}}]
    assert message["stop_reason"] == "tool_use"
    with pytest.raises(UpstreamError):
        to_message(answer("not json"), ctx(), AnswerShape(forced=forced))


@pytest.mark.parametrize("pieces, sent, matched", [
    (["Hello wor", "ld END more"], ["Hello wor", "ld "], "END"),
    (["Hello E", "N", "D"], ["Hello ", "", ""], "END"),
    (["Hello E", "x"], ["Hello ", "Ex"], None),
    (["a\n", "\nb"], ["a", ""], "\n\n"),
])
def test_stop_matcher_holds_back_only_a_possible_start(pieces: list[str], sent: list[str], matched: str | None) -> None:
    matcher = StopMatcher(("END", "\n\n"))
    out, found = [], None
    for piece in pieces:
        text, found = matcher.feed(piece)
        out.append(text)
        if found:
            break
    assert out == sent and found == matched


def test_stop_collector_ends_a_streamed_answer_at_the_stop() -> None:
    collector = StopCollector(("END",))
    lines = [line("The answer"), line(" is 4 E"), line("ND and more"), final()]
    assert collector.feed(b"".join(lines[:2])) is False
    assert collector.feed(lines[2]) is True
    ollama, matched = collector.answer()
    assert matched == "END" and ollama["message"]["content"] == "The answer is 4 "


# ---- stream ----------------------------------------------------------------------------------------


def line(content: str = "", thinking: str | None = None, calls: list[Any] | None = None) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    if calls is not None:
        message["tool_calls"] = calls
    return orjson.dumps({"model": "llama3.2", "created_at": "2026-01-01T00:00:00Z", "message": message,
                         "done": False}) + b"\n"


def final(reason: str = "stop") -> bytes:
    return orjson.dumps({"model": "llama3.2", "created_at": "2026-01-01T00:00:00Z",
                         "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": reason,
                         "prompt_eval_count": 7, "eval_count": 3}) + b"\n"


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            assert name.startswith("event: ") and data.startswith("data: ")
            payload = json.loads(data[6:])
            assert payload["type"] == name[7:]
            out.append((name[7:], payload))
    return out


def stream(lines: list[bytes], shape: AnswerShape | None = None, split: int = 0) -> list[tuple[str, dict[str, Any]]]:
    state = new_stream(ctx(), shape or AnswerShape())
    data = b"".join(lines)
    reads = [data[i:i + split] for i in range(0, len(data), split)] if split else lines
    return events(b"".join(frames_for_read(state, read) for read in reads))


def test_stream_text_in_anthropics_event_order() -> None:
    got = stream([line("Hel"), line("lo ✓"), line('"quoted"\n'), final()])
    assert [name for name, _ in got] == ["message_start", "ping", "content_block_start", "content_block_delta",
                                         "content_block_delta", "content_block_delta", "content_block_stop",
                                         "message_delta", "message_stop"]
    start = got[0][1]["message"]
    assert start["id"] == "msg_1" and start["content"] == [] and start["stop_reason"] is None
    assert "".join(p["delta"]["text"] for n, p in got if n == "content_block_delta") == 'Hello ✓"quoted"\n'
    assert got[-2][1] == {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                          "usage": {"input_tokens": 7, "output_tokens": 3}}
    assert stream([line("Hel"), line("lo ✓"), line('"quoted"\n'), final()], split=7) == got  # any read boundaries


def test_stream_thinking_text_and_tool_calls_are_blocks_in_order() -> None:
    got = stream([line("", thinking="Let me"), line("", thinking=" see."), line("Calling."),
                  line("", calls=[CALL, {"function": {"name": "get_time", "arguments": {}}}]), final()])
    blocks = [(p["index"], p["content_block"]["type"]) for n, p in got if n == "content_block_start"]
    assert blocks == [(0, "thinking"), (1, "text"), (2, "tool_use"), (3, "tool_use")]
    deltas = [(p["index"], p["delta"]) for n, p in got if n == "content_block_delta"]
    assert deltas == [
        (0, {"type": "thinking_delta", "thinking": "Let me"}), (0, {"type": "thinking_delta", "thinking": " see."}),
        (0, {"type": "signature_delta", "signature": SIGNER.sign("Let me see.")}),
        (1, {"type": "text_delta", "text": "Calling."}),
        (2, {"type": "input_json_delta", "partial_json": '{"city":"Paris"}'}),
        (3, {"type": "input_json_delta", "partial_json": "{}"})]
    assert [p["index"] for n, p in got if n == "content_block_stop"] == [0, 1, 2, 3]
    assert got[-2][1]["delta"]["stop_reason"] == "tool_use"
    tool = next(p["content_block"] for n, p in got if n == "content_block_start" and p["index"] == 2)
    assert tool == {"type": "tool_use", "id": "toolu_0", "name": "get_weather", "input": {}}


def test_stream_omitted_thinking_sends_only_the_signature() -> None:
    got = stream([line("", thinking="Secret"), line("Hi"), final()], AnswerShape(show_thinking=False))
    deltas = [p["delta"] for n, p in got if n == "content_block_delta"]
    assert deltas == [{"type": "signature_delta", "signature": SIGNER.sign("Secret")},
                      {"type": "text_delta", "text": "Hi"}]


def test_stream_ends_at_a_stop_sequence() -> None:
    state = new_stream(ctx(), AnswerShape(stop_sequences=("STOP",)))
    raw = frames_for_read(state, line("one two ST") + line("OP three") + line("never"))
    got = events(raw)
    assert "".join(p["delta"]["text"] for n, p in got if n == "content_block_delta") == "one two "
    assert got[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}
    assert state.done and state.ended_by_stop and got[-1][0] == "message_stop"


def test_stream_max_tokens_and_held_back_text_at_the_end() -> None:
    got = stream([line("abc S"), final("length")], AnswerShape(stop_sequences=("STOP",)))
    assert "".join(p["delta"]["text"] for n, p in got if n == "content_block_delta") == "abc S"
    assert got[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_stream_forced_any_announces_the_tool_then_streams_its_arguments() -> None:
    forced = translate(tools=[TOOL, {**TOOL, "name": "get_time"}], tool_choice={"type": "any"}).forced
    pieces = ['{"name": "get_', 'weather", "argu', 'ments": {"city": ', '"Rome"}}']
    got = stream([*(line(p) for p in pieces), final()], AnswerShape(forced=forced, one_tool_call=True))
    start = next(p["content_block"] for n, p in got if n == "content_block_start")
    assert start["type"] == "tool_use" and start["name"] == "get_weather"
    partial = "".join(p["delta"]["partial_json"] for n, p in got if n == "content_block_delta")
    assert json.loads(partial) == {"city": "Rome"} and got[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_stream_forced_named_and_a_broken_call_is_an_error_event() -> None:
    forced = translate(tools=[TOOL], tool_choice={"type": "tool", "name": "get_weather"}).forced
    got = stream([line(' {"city":'), line(' "Oslo"}'), final()], AnswerShape(forced=forced))
    assert json.loads("".join(p["delta"]["partial_json"] for n, p in got if n == "content_block_delta")) == {
        "city": "Oslo"}
    broken = stream([line("no json"), final()], AnswerShape(forced=forced))
    assert broken[-1][0] == "error" and broken[-1][1]["error"]["type"] == "api_error"


def test_stream_fault_is_an_error_event_without_ollamas_text() -> None:
    state = new_stream(ctx(), AnswerShape())
    raw = frames_for_read(state, line("Hi") + orjson.dumps({"error": "CUDA error at /opt/x.cu"}) + b"\n")
    got = events(raw)
    assert [n for n, _ in got][-1] == "error" and state.done and state.error is not None
    assert "CUDA" not in raw.decode() and got[-1][1]["error"]["type"] == "api_error"
    assert events(frames_for_read(new_stream(ctx(), AnswerShape()), b"garbage\n"))[-1][0] == "error"


def test_fast_path_frames_equal_the_parsed_ones() -> None:
    fast = new_stream(ctx(), AnswerShape())
    slow = new_stream(ctx(), AnswerShape())
    frames_for_read(fast, line("a"))
    frames_for_read(slow, line("a"))
    for text in ("plain text", "ünï ✓"):
        # a space after "{" defeats the byte match: the same line through the dict path
        assert frames_for_read(fast, line(text)) == frames_for_read(slow, b"{ " + line(text)[1:])
    fast_thinking, slow_thinking = new_stream(ctx(), AnswerShape()), new_stream(ctx(), AnswerShape())
    frames_for_read(fast_thinking, line("", thinking="a"))
    frames_for_read(slow_thinking, line("", thinking="a"))
    assert frames_for_read(fast_thinking, line("", thinking="more")) == frames_for_read(
        slow_thinking, b"{ " + line("", thinking="more")[1:])
    assert fast_thinking.thinking == slow_thinking.thinking == ["a", "more"]


# ---- errors and models -----------------------------------------------------------------------------


@pytest.mark.parametrize("error, status, kind", [
    (InvalidRequest("x"), 400, "invalid_request_error"),
    (Unauthorized("x"), 401, "authentication_error"),
    (PermissionDenied("x"), 403, "permission_error"),
    (NotFound("x"), 404, "not_found_error"),
    (PayloadTooLarge("x"), 413, "request_too_large"),
    (RateLimitExceeded("x"), 429, "rate_limit_error"),
    (RateLimited("x"), 529, "overloaded_error"),
    (UpstreamBusy("x"), 529, "overloaded_error"),
    (UpstreamError("x"), 502, "api_error"),
    (UpstreamTimeout("x"), 504, "timeout_error"),
    (ProxyError("x"), 500, "api_error"),
])
def test_anthropic_statuses_and_types(error: ProxyError, status: int, kind: str) -> None:
    assert anthropic_status(error) == (status, kind)


def test_anthropic_envelope_keeps_ollamas_fault_text_back() -> None:
    body = to_anthropic_envelope(UpstreamFault("GPU on fire at /opt/x"), "req_1")
    assert body["type"] == "error" and body["request_id"] == "req_1"
    assert body["error"]["type"] == "api_error" and "GPU" not in body["error"]["message"]
    assert "req_1" in body["error"]["message"]


def test_model_list_in_anthropics_shape() -> None:
    listed = to_anthropic_model_list({"object": "list", "data": [
        {"id": "llama3.2:latest", "object": "model", "created": 0, "owned_by": "library"}]})
    assert listed == {"data": [{"type": "model", "id": "llama3.2:latest", "display_name": "llama3.2:latest",
                                "created_at": "1970-01-01T00:00:00Z"}],
                      "has_more": False, "first_id": "llama3.2:latest", "last_id": "llama3.2:latest"}


@settings(max_examples=60, deadline=None)
@given(pieces=st.lists(st.tuples(st.booleans(), st.text(min_size=1, max_size=6)), min_size=1, max_size=12),
       cut=st.integers(min_value=1, max_value=40), stops=st.sampled_from([(), ("zz",), ("a\n", "✓")]))
def test_any_read_boundaries_and_text_give_the_same_events(pieces: list[tuple[bool, str]], cut: int,
                                                           stops: tuple[str, ...]) -> None:
    lines = [line("", thinking=text) if thinking else line(text) for thinking, text in pieces] + [final()]
    shape = AnswerShape(stop_sequences=stops)
    whole = stream(lines, shape)
    assert stream(lines, shape, split=cut) == whole
    sent = "".join(p["delta"]["text"] for n, p in whole if n == "content_block_delta" and "text" in p["delta"])
    text = "".join(t for thinking, t in pieces if not thinking)
    matched = whole[-2][1]["delta"]["stop_sequence"]
    assert sent == (text[: min(text.find(s) for s in stops if s in text)] if matched else text)
    assert [n for n, _ in whole][:2] == ["message_start", "ping"] and whole[-1][0] == "message_stop"
