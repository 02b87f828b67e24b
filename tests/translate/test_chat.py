"""Tables for ``proxy/translate/openai/chat.py``: one row per request rule, refusal and response rule.

Request rows compare the whole Ollama body, so a rule that leaks an extra field fails too.
Refusal rows pin the exception class, ``status``, ``param`` and ``code`` (what the client sees
in the envelope). Response rows compare the whole ``chat.completion``.
"""

from __future__ import annotations

import copy
import itertools
import logging
from typing import Any

import pytest

from proxy.errors import InvalidRequest, ProxyError, UnsupportedParameter, UpstreamError
from proxy.translate.openai.chat import (
    THINK_FOR_EFFORT,
    ReplyShape,
    ResponseContext,
    choice_bodies,
    finish_reason,
    from_openai,
    to_completion,
    to_logprobs,
    to_tool_calls,
    to_usage,
)

MODEL = "llama3.2"
USER = {"role": "user", "content": "Hi"}
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather for a city", "parameters": SCHEMA},
}
OLLAMA_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather for a city", "parameters": SCHEMA},
}
# A 1x1 transparent PNG, as clients send it.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
GIF = "R0lGODlhAQABAAAAACw="
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}  # fmt: skip
TOOL_TURN = {"role": "assistant", "content": None, "tool_calls": [CALL]}
OLLAMA_TOOL_TURN = {
    "role": "assistant",
    "content": "",
    "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}, "id": "call_1"}],
}


NAMED_CHOICE = {"type": "function", "function": {"name": "get_weather"}}
INSTRUCTION = (
    "Call the function `get_weather` now. Answer with nothing but its arguments: one JSON object matching its "
    "parameters.\n- get_weather: Weather for a city\n  parameters: "
    '{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"],'
    '"additionalProperties":false}'
)


def request(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [USER], **extra}


def ollama(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [dict(USER)], "stream": False, **extra}


def image(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def assert_refused(body: dict[str, Any], cls: type[ProxyError], param: str, code: str | None) -> None:
    with pytest.raises(ProxyError) as info:
        from_openai(body)
    error = info.value
    assert type(error) is cls, f"{type(error).__name__}: {error.message}"
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert error.param == param
    assert error.code == code
    assert error.message


# ---- request: accepted fields ------------------------------------------------------------

REQUEST_RULES = [
    ("model, messages and stream false are all a minimal request sends", {}, {}),
    ("stream true passes through", {"stream": True}, {"stream": True}),
    ("stream false passes through", {"stream": False}, {}),
    ("temperature goes to options", {"temperature": 0.2}, {"options": {"temperature": 0.2}}),
    ("integer temperature is a number", {"temperature": 1}, {"options": {"temperature": 1}}),
    ("top_p goes to options", {"top_p": 0.9}, {"options": {"top_p": 0.9}}),
    ("seed goes to options", {"seed": 42}, {"options": {"seed": 42}}),
    ("seed 2.0 counts as the integer 2", {"seed": 2.0}, {"options": {"seed": 2}}),
    ("stop string becomes a one-item list", {"stop": "END"}, {"options": {"stop": ["END"]}}),
    ("stop list passes as a list", {"stop": ["\n\n", "END"]}, {"options": {"stop": ["\n\n", "END"]}}),
    ("frequency_penalty goes to options unchanged, not repeat_penalty",
     {"frequency_penalty": 0.5}, {"options": {"frequency_penalty": 0.5}}),
    ("presence_penalty goes to options unchanged",
     {"presence_penalty": -0.5}, {"options": {"presence_penalty": -0.5}}),
    ("all sampling fields together",
     {"temperature": 0.7, "top_p": 0.8, "seed": 7, "stop": "x", "frequency_penalty": 0.1,
      "presence_penalty": 0.2, "max_tokens": 5},
     {"options": {"temperature": 0.7, "top_p": 0.8, "seed": 7, "stop": ["x"],
                  "frequency_penalty": 0.1, "presence_penalty": 0.2, "num_predict": 5}}),
    ("max_tokens becomes num_predict", {"max_tokens": 64}, {"options": {"num_predict": 64}}),
    ("max_completion_tokens becomes num_predict",
     {"max_completion_tokens": 128}, {"options": {"num_predict": 128}}),
    ("max_completion_tokens wins over max_tokens",
     {"max_tokens": 10, "max_completion_tokens": 20}, {"options": {"num_predict": 20}}),
    ("max_completion_tokens wins over max_tokens whatever the key order",
     {"max_completion_tokens": 20, "max_tokens": 10}, {"options": {"num_predict": 20}}),
    ("response_format text sets no format", {"response_format": {"type": "text"}}, {}),
    ("response_format json_object becomes format json",
     {"response_format": {"type": "json_object"}}, {"format": "json"}),
    ("response_format json_schema becomes the schema itself",
     {"response_format": {"type": "json_schema",
                          "json_schema": {"name": "weather", "strict": True, "schema": SCHEMA}}},
     {"format": SCHEMA}),
    ("tools pass as Ollama function tools", {"tools": [TOOL]}, {"tools": [OLLAMA_TOOL]}),
    ("tool_choice auto passes tools", {"tools": [TOOL], "tool_choice": "auto"}, {"tools": [OLLAMA_TOOL]}),
    ("tool_choice none drops tools", {"tools": [TOOL], "tool_choice": "none"}, {}),
    ("tool_choice none without tools is accepted", {"tool_choice": "none"}, {}),
    ("an empty tools list sends no tools", {"tools": []}, {}),
    ("a tool without parameters gets the empty object schema",
     {"tools": [{"type": "function", "function": {"name": "now"}}]},
     {"tools": [{"type": "function", "function": {
         "name": "now", "parameters": {"type": "object", "properties": {}}}}]}),
    ("reasoning.effort maps like reasoning_effort", {"reasoning": {"effort": "low"}}, {"think": "low"}),
    ("reasoning_effort wins over reasoning.effort",
     {"reasoning_effort": "high", "reasoning": {"effort": "low"}}, {"think": "high"}),
    ("Ollama think true passes through", {"think": True}, {"think": True}),
    ("Ollama think level passes through", {"think": "medium"}, {"think": "medium"}),
    ("Ollama think wins over reasoning_effort", {"think": False, "reasoning_effort": "high"}, {"think": False}),
    ("n 1 is accepted", {"n": 1}, {}),
    ("an empty logit_bias is accepted", {"logit_bias": {}}, {}),
    ("parallel_tool_calls true is accepted", {"parallel_tool_calls": True}, {}),
    ("store false is accepted", {"store": False}, {}),
    ("modalities text only is accepted", {"modalities": ["text"]}, {}),
    ("logprobs true asks Ollama for logprobs", {"logprobs": True}, {"logprobs": True}),
    ("logprobs false sends nothing", {"logprobs": False}, {}),
    ("top_logprobs passes with logprobs", {"logprobs": True, "top_logprobs": 5},
     {"logprobs": True, "top_logprobs": 5}),
    ("top_logprobs 0 is the lower bound", {"logprobs": True, "top_logprobs": 0},
     {"logprobs": True, "top_logprobs": 0}),
    ("top_logprobs 20 is the upper bound", {"logprobs": True, "top_logprobs": 20},
     {"logprobs": True, "top_logprobs": 20}),
    ("Ollama options pass through", {"options": {"num_ctx": 8192, "mirostat": 1}},
     {"options": {"num_ctx": 8192, "mirostat": 1}}),
    ("explicit temperature wins over options.temperature",
     {"options": {"temperature": 1.0, "top_k": 5}, "temperature": 0.1},
     {"options": {"temperature": 0.1, "top_k": 5}}),
    ("top-level num_ctx goes to options", {"num_ctx": 4096}, {"options": {"num_ctx": 4096}}),
    ("top-level num_ctx wins over options.num_ctx", {"options": {"num_ctx": 2048}, "num_ctx": 4096},
     {"options": {"num_ctx": 4096}}),
    ("top-level top_k goes to options", {"top_k": 40}, {"options": {"top_k": 40}}),
    ("top-level min_p goes to options", {"min_p": 0.05}, {"options": {"min_p": 0.05}}),
    ("top-level repeat_penalty goes to options", {"repeat_penalty": 1.1}, {"options": {"repeat_penalty": 1.1}}),
    ("top-level repeat_last_n goes to options", {"repeat_last_n": 64}, {"options": {"repeat_last_n": 64}}),
    ("keep_alive duration string passes through", {"keep_alive": "5m"}, {"keep_alive": "5m"}),
    ("keep_alive seconds pass through", {"keep_alive": 0}, {"keep_alive": 0}),
    ("caller bookkeeping fields have no effect",
     {"user": "u-1", "metadata": {"k": "v"}, "service_tier": "auto", "prompt_cache_key": "p",
      "safety_identifier": "s"}, {}),
    ("unknown extra fields are ignored", {"x_vendor_flag": True, "suffix": "!"}, {}),
    ("n is the proxy's: one request per choice, the body unchanged", {"n": 3}, {}),
    ("parallel_tool_calls false leaves the tools as they are", {"tools": [TOOL], "parallel_tool_calls": False},
     {"tools": [OLLAMA_TOOL]}),
    ("a named tool_choice: its parameters as format, an instruction, no tools",
     {"tools": [TOOL], "tool_choice": NAMED_CHOICE},
     {"format": SCHEMA, "messages": [{"role": "system", "content": INSTRUCTION}, dict(USER)]}),
    ("tool_choice required over one tool is the same", {"tools": [TOOL], "tool_choice": "required"},
     {"format": SCHEMA, "messages": [{"role": "system", "content": INSTRUCTION}, dict(USER)]}),
    ("a forced call keeps thinking", {"tools": [TOOL], "tool_choice": NAMED_CHOICE, "reasoning_effort": "high"},
     {"format": SCHEMA, "think": "high", "messages": [{"role": "system", "content": INSTRUCTION}, dict(USER)]}),
    ("a forced call's format wins over response_format (it shapes content, and there is none)",
     {"tools": [TOOL], "tool_choice": NAMED_CHOICE, "response_format": {"type": "json_object"}},
     {"format": SCHEMA, "messages": [{"role": "system", "content": INSTRUCTION}, dict(USER)]}),
    ("stream_options stays with the proxy", {"stream": True, "stream_options": {"include_usage": True}},
     {"stream": True}),
    ("null optional fields count as absent",
     {"temperature": None, "top_p": None, "seed": None, "stop": None, "max_tokens": None,
      "max_completion_tokens": None, "tools": None, "tool_choice": None, "response_format": None,
      "n": None, "logit_bias": None, "reasoning_effort": None, "functions": None, "audio": None,
      "keep_alive": None, "options": None, "stream_options": None, "logprobs": None}, {}),
]  # fmt: skip


@pytest.mark.parametrize(
    "extra, expected", [r[1:] for r in REQUEST_RULES], ids=[r[0] for r in REQUEST_RULES]
)
def test_request_rule(extra: dict[str, Any], expected: dict[str, Any]) -> None:
    assert from_openai(request(**extra)).body == ollama(**expected)


EFFORTS = [
    ("reasoning_effort none turns thinking off", "none", False),
    ("reasoning_effort minimal clamps to low", "minimal", "low"),
    ("reasoning_effort low is low", "low", "low"),
    ("reasoning_effort medium is medium", "medium", "medium"),
    ("reasoning_effort high is high", "high", "high"),
    ("reasoning_effort xhigh clamps to high", "xhigh", "high"),
]


@pytest.mark.parametrize("effort, think", [r[1:] for r in EFFORTS], ids=[r[0] for r in EFFORTS])
def test_reasoning_effort_becomes_think(effort: str, think: bool | str) -> None:
    assert THINK_FOR_EFFORT[effort] == think
    assert from_openai(request(reasoning_effort=effort)).body == ollama(think=think)


def test_effort_table_covers_think_for_effort() -> None:
    assert {r[1] for r in EFFORTS} == set(THINK_FOR_EFFORT)


CHAT_REQUEST_FIELDS = [
    ("defaults: not streaming, no usage, no logprobs", {}, (MODEL, False, False, False)),
    ("stream flag is reported", {"stream": True}, (MODEL, True, False, False)),
    ("include_usage is reported", {"stream": True, "stream_options": {"include_usage": True}},
     (MODEL, True, True, False)),
    ("include_usage false is reported", {"stream": True, "stream_options": {"include_usage": False}},
     (MODEL, True, False, False)),
    ("logprobs is reported", {"logprobs": True}, (MODEL, False, False, True)),
    ("the requested model name is kept verbatim", {"model": "hf.co/org/repo:Q4_K_M"},
     ("hf.co/org/repo:Q4_K_M", False, False, False)),
]  # fmt: skip


@pytest.mark.parametrize(
    "extra, expected", [r[1:] for r in CHAT_REQUEST_FIELDS], ids=[r[0] for r in CHAT_REQUEST_FIELDS]
)
def test_chat_request_fields(extra: dict[str, Any], expected: tuple[str, bool, bool, bool]) -> None:
    chat = from_openai(request(**extra))
    assert (chat.model, chat.stream, chat.include_usage, chat.logprobs) == expected
    assert chat.body["model"] == chat.model


def test_n_parallel_tool_calls_and_forced_are_reported() -> None:
    chat = from_openai(request(n=3, parallel_tool_calls=False, tools=[TOOL], tool_choice="required"))
    assert (chat.n, chat.one_tool_call) == (3, True)
    assert chat.forced is not None and chat.forced.names == ("get_weather",)
    plain = from_openai(request())
    assert (plain.n, plain.one_tool_call, plain.forced) == (1, False, None)


SEEDS = [
    ("one choice: the body itself", {"options": {"seed": 5}}, 1, [5]),
    ("seed + i per choice", {"options": {"seed": 5, "temperature": 1}}, 3, [5, 6, 7]),
    ("no seed: the same body n times", {"options": {"temperature": 1}}, 2, [None, None]),
    ("no options at all", {}, 2, [None, None]),
]  # fmt: skip


@pytest.mark.parametrize("extra, n, seeds", [r[1:] for r in SEEDS], ids=[r[0] for r in SEEDS])
def test_choice_bodies(extra: dict[str, Any], n: int, seeds: list[int | None]) -> None:
    body = ollama(**extra)
    before = copy.deepcopy(body)
    bodies = choice_bodies(body, n)
    assert [(b.get("options") or {}).get("seed") for b in bodies] == seeds
    assert all({k: v for k, v in b.items() if k != "options"} == {k: v for k, v in body.items() if k != "options"}
               for b in bodies)
    assert body == before


def test_unknown_fields_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="proxy.translate")
    from_openai(request(x_vendor_flag=True, temperature=0.5))
    messages = [r.getMessage() for r in caplog.records if r.name == "proxy.translate"]
    assert len(messages) == 1
    assert "x_vendor_flag" in messages[0] and "temperature" not in messages[0]
    assert caplog.records[0].levelno == logging.DEBUG


def test_from_openai_mutates_nothing() -> None:
    body = request(
        messages=[
            {"role": "developer", "content": [text("a"), text("b")]},
            {"role": "user", "content": [text("look"), image("data:image/png;base64," + PNG)]},
            TOOL_TURN,
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        tools=[TOOL], options={"top_k": 3}, temperature=0.5, stop="x", max_tokens=3,
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}},
    )  # fmt: skip
    before = copy.deepcopy(body)
    out = from_openai(body).body
    assert body == before
    out["options"]["top_k"] = 99  # the options dict is the proxy's own copy
    assert body["options"] == {"top_k": 3}


# ---- request: refusals -------------------------------------------------------------------

U, I = UnsupportedParameter, InvalidRequest
UP = "unsupported_parameter"

REFUSALS = [
    ("n 0 is invalid", {"n": 0}, I, "n", None),
    ("n a string is invalid", {"n": "2"}, I, "n", None),
    ("a non-empty logit_bias is refused", {"logit_bias": {"50256": -100}}, U, "logit_bias", UP),
    ("metadata not an object", {"metadata": ["a"]}, I, "metadata", None),
    ("metadata with 17 pairs", {"metadata": {f"k{i}": "v" for i in range(17)}}, I, "metadata", None),
    ("metadata key over 64 characters", {"metadata": {"k" * 65: "v"}}, I, "metadata", None),
    ("metadata value over 512 characters", {"metadata": {"k": "v" * 513}}, I, "metadata.k", None),
    ("metadata value not a string", {"metadata": {"k": 1}}, I, "metadata.k", None),
    ("metadata with a NUL character", {"metadata": {"k": "a\x00b"}}, I, "metadata", None),
    ("parallel_tool_calls a string is invalid", {"parallel_tool_calls": "no"}, I, "parallel_tool_calls", None),
    ("the audio modality is refused", {"modalities": ["text", "audio"]}, U, "modalities", UP),
    ("functions is refused", {"functions": [{"name": "f", "parameters": {}}]}, U, "functions", UP),
    ("function_call is refused", {"function_call": "auto"}, U, "function_call", UP),
    ("audio is refused", {"audio": {"voice": "alloy", "format": "wav"}}, U, "audio", UP),
    ("prediction is refused", {"prediction": {"type": "content", "content": "x"}}, U, "prediction", UP),
    ("verbosity is refused", {"verbosity": "low"}, U, "verbosity", UP),
    ("web_search_options is refused", {"web_search_options": {}}, U, "web_search_options", UP),
    ("tool_choice required without tools is invalid", {"tool_choice": "required"}, I, "tool_choice", None),
    ("a named tool_choice naming no tool is invalid",
     {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
     I, "tool_choice.function.name", None),
    ("a named tool_choice without function is invalid",
     {"tools": [TOOL], "tool_choice": {"type": "function"}}, I, "tool_choice.function", None),
    ("a named tool_choice without a name is invalid",
     {"tools": [TOOL], "tool_choice": {"type": "function", "function": {}}}, I, "tool_choice.function.name", None),
    ("an allowed_tools tool_choice is refused",
     {"tools": [TOOL], "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}},
     U, "tool_choice.type", UP),
    ("an unknown tool_choice string is invalid", {"tool_choice": "always"}, I, "tool_choice", None),
    ("a tool_choice of the wrong type is invalid", {"tool_choice": 1}, I, "tool_choice", None),
    ("an unknown reasoning_effort is invalid", {"reasoning_effort": "maximum"}, I, "reasoning_effort", None),
    ("reasoning_effort of the wrong type", {"reasoning_effort": 3}, I, "reasoning_effort", None),
    ("an unknown reasoning.effort is invalid", {"reasoning": {"effort": "max"}}, I, "reasoning.effort", None),
    ("reasoning that is not an object", {"reasoning": "high"}, I, "reasoning", None),
    ("think of the wrong type", {"think": 1}, I, "think", None),
    ("top_logprobs above 20", {"logprobs": True, "top_logprobs": 21}, I, "top_logprobs", None),
    ("negative top_logprobs", {"logprobs": True, "top_logprobs": -1}, I, "top_logprobs", None),
    ("top_logprobs without logprobs", {"top_logprobs": 2}, I, "top_logprobs", None),
    ("max_tokens 0", {"max_tokens": 0}, I, "max_tokens", None),
    ("negative max_completion_tokens", {"max_completion_tokens": -5}, I, "max_completion_tokens", None),
    ("an unknown response_format type", {"response_format": {"type": "xml"}}, I, "response_format.type", None),
    ("response_format without a type", {"response_format": {}}, I, "response_format.type", None),
    ("json_schema without json_schema", {"response_format": {"type": "json_schema"}},
     I, "response_format.json_schema", None),
    ("json_schema without a schema", {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     I, "response_format.json_schema.schema", None),
    ("json_schema with a non-object schema",
     {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": "s"}}},
     I, "response_format.json_schema.schema", None),
    ("response_format that is not an object", {"response_format": "json"}, I, "response_format", None),
    ("model missing", {"model": None}, I, "model", None),
    ("model empty", {"model": ""}, I, "model", None),
    ("model not a string", {"model": 7}, I, "model", None),
    ("messages missing", {"messages": None}, I, "messages", None),
    ("messages not an array", {"messages": "hi"}, I, "messages", None),
    ("messages empty", {"messages": []}, I, "messages", None),
    ("temperature a string", {"temperature": "hot"}, I, "temperature", None),
    ("top_p a boolean", {"top_p": True}, I, "top_p", None),
    ("seed fractional", {"seed": 1.5}, I, "seed", None),
    ("seed a string", {"seed": "1"}, I, "seed", None),
    ("stop a number", {"stop": 5}, I, "stop", None),
    ("stop list with a non-string", {"stop": ["a", 1]}, I, "stop", None),
    ("frequency_penalty a string", {"frequency_penalty": "high"}, I, "frequency_penalty", None),
    ("presence_penalty a list", {"presence_penalty": [1]}, I, "presence_penalty", None),
    ("max_tokens a string", {"max_tokens": "10"}, I, "max_tokens", None),
    ("max_completion_tokens fractional", {"max_completion_tokens": 10.5}, I, "max_completion_tokens", None),
    ("stream a string", {"stream": "yes"}, I, "stream", None),
    ("stream_options not an object", {"stream_options": True}, I, "stream_options", None),
    ("stream_options.include_usage not a boolean", {"stream_options": {"include_usage": "yes"}},
     I, "stream_options.include_usage", None),
    ("logprobs not a boolean", {"logprobs": "true"}, I, "logprobs", None),
    ("top_logprobs not an integer", {"logprobs": True, "top_logprobs": "3"}, I, "top_logprobs", None),
    ("n a string", {"n": "1"}, I, "n", None),
    ("logit_bias not an object", {"logit_bias": [1]}, I, "logit_bias", None),
    ("parallel_tool_calls not a boolean", {"parallel_tool_calls": "no"}, I, "parallel_tool_calls", None),
    ("store not a boolean", {"store": "yes"}, I, "store", None),
    ("modalities not a list", {"modalities": "text"}, U, "modalities", UP),
    ("tools not an array", {"tools": {"type": "function"}}, I, "tools", None),
    ("a tool that is not an object", {"tools": ["get_weather"]}, I, "tools[0]", None),
    ("a non-function tool is refused", {"tools": [TOOL, {"type": "code_interpreter"}]}, U, "tools[1].type", UP),
    ("a tool without function", {"tools": [{"type": "function"}]}, I, "tools[0].function", None),
    ("a tool function without a name", {"tools": [{"type": "function", "function": {"parameters": {}}}]},
     I, "tools[0].function.name", None),
    ("tool parameters not an object",
     {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
     I, "tools[0].function.parameters", None),
    ("tool description not a string",
     {"tools": [{"type": "function", "function": {"name": "f", "description": 1}}]},
     I, "tools[0].function.description", None),
    ("keep_alive a boolean", {"keep_alive": True}, I, "keep_alive", None),
    ("keep_alive an object", {"keep_alive": {}}, I, "keep_alive", None),
    ("options not an object", {"options": "fast"}, I, "options", None),
    ("num_ctx a string", {"num_ctx": "big"}, I, "num_ctx", None),
    ("top_k a boolean", {"top_k": True}, I, "top_k", None),
]  # fmt: skip


@pytest.mark.parametrize(
    "extra, cls, param, code", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_request_refused(extra: dict[str, Any], cls: type[ProxyError], param: str, code: str | None) -> None:
    assert_refused(request(**extra), cls, param, code)


# ---- request: messages -------------------------------------------------------------------

OUSER = {"role": "user", "content": "Hi"}

MESSAGE_RULES = [
    ("system stays system", [{"role": "system", "content": "Be brief."}, USER],
     [{"role": "system", "content": "Be brief."}, OUSER]),
    ("developer becomes system", [{"role": "developer", "content": "Be brief."}, USER],
     [{"role": "system", "content": "Be brief."}, OUSER]),
    ("user stays user", [USER], [OUSER]),
    ("assistant stays assistant", [USER, {"role": "assistant", "content": "Hello!"}, USER],
     [OUSER, {"role": "assistant", "content": "Hello!"}, OUSER]),
    ("text parts join with newlines", [{"role": "user", "content": [text("a"), text("b"), text("c")]}],
     [{"role": "user", "content": "a\nb\nc"}]),
    ("an empty parts list is empty text", [{"role": "user", "content": []}], [{"role": "user", "content": ""}]),
    ("system text parts join too", [{"role": "system", "content": [text("x"), text("y")]}, USER],
     [{"role": "system", "content": "x\ny"}, OUSER]),
    ("an image data URL becomes a base64 image",
     [{"role": "user", "content": [text("What is this?"), image("data:image/png;base64," + PNG)]}],
     [{"role": "user", "content": "What is this?", "images": [PNG]}]),
    ("jpeg, webp and gif data URLs are images in order",
     [{"role": "user", "content": [image("data:image/jpeg;base64," + PNG), text("a"),
                                   image("data:image/webp;base64," + PNG), image("data:image/gif;base64," + GIF)]}],
     [{"role": "user", "content": "a", "images": [PNG, PNG, GIF]}]),
    ("image detail is ignored",
     [{"role": "user", "content": [image("data:image/png;base64," + PNG, detail="high")]}],
     [{"role": "user", "content": "", "images": [PNG]}]),
    ("a data URL without media type is accepted",
     [{"role": "user", "content": [image("data:;base64," + PNG)]}],
     [{"role": "user", "content": "", "images": [PNG]}]),
    ("assistant tool_calls arguments string becomes an object, content None becomes empty",
     [USER, TOOL_TURN], [OUSER, OLLAMA_TOOL_TURN]),
    ("an empty arguments string becomes an empty object",
     [USER, {"role": "assistant", "content": "",
             "tool_calls": [{"id": "c", "type": "function", "function": {"name": "now", "arguments": ""}}]}],
     [OUSER, {"role": "assistant", "content": "",
              "tool_calls": [{"function": {"name": "now", "arguments": {}}, "id": "c"}]}]),
    ("a tool call without id is passed without id",
     [USER, {"role": "assistant",
             "tool_calls": [{"type": "function", "function": {"name": "now", "arguments": "{}"}}]}],
     [OUSER, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "now", "arguments": {}}}]}]),
    ("a tool message gets tool_name from its tool_call_id",
     [USER, TOOL_TURN, {"role": "tool", "tool_call_id": "call_1", "content": "18°C, sunny"}],
     [OUSER, OLLAMA_TOOL_TURN,
      {"role": "tool", "content": "18°C, sunny", "tool_name": "get_weather", "tool_call_id": "call_1"}]),
    ("two tool calls resolve to their own tool names",
     [USER,
      {"role": "assistant", "content": None, "tool_calls": [
          CALL, {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
      {"role": "tool", "tool_call_id": "call_1", "content": [text("sunny")]}],
     [OUSER,
      {"role": "assistant", "content": "", "tool_calls": [
          {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}, "id": "call_1"},
          {"function": {"name": "get_time", "arguments": {}}, "id": "call_2"}]},
      {"role": "tool", "content": "12:00", "tool_name": "get_time", "tool_call_id": "call_2"},
      {"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": "call_1"}]),
    ("assistant reasoning becomes thinking",
     [USER, {"role": "assistant", "content": "4", "reasoning": "2+2 is 4"}, USER],
     [OUSER, {"role": "assistant", "content": "4", "thinking": "2+2 is 4"}, OUSER]),
    ("assistant reasoning_content becomes thinking",
     [USER, {"role": "assistant", "content": "4", "reasoning_content": "2+2 is 4"}, USER],
     [OUSER, {"role": "assistant", "content": "4", "thinking": "2+2 is 4"}, OUSER]),
    ("assistant refusal part becomes text",
     [USER, {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]}, USER],
     [OUSER, {"role": "assistant", "content": "I can't."}, OUSER]),
    ("unicode text passes unchanged", [{"role": "user", "content": "Grüße 👋 日本語"}],
     [{"role": "user", "content": "Grüße 👋 日本語"}]),
    ("message name is ignored", [{"role": "user", "content": "Hi", "name": "bob"}], [OUSER]),
]  # fmt: skip


@pytest.mark.parametrize(
    "messages, expected", [r[1:] for r in MESSAGE_RULES], ids=[r[0] for r in MESSAGE_RULES]
)
def test_message_rule(messages: list[Any], expected: list[dict[str, Any]]) -> None:
    assert from_openai(request(messages=messages)).body == {
        "model": MODEL, "messages": expected, "stream": False,
    }  # fmt: skip


def _bad_call(arguments: Any) -> list[Any]:
    return [USER, {"role": "assistant", "content": None, "tool_calls": [
        CALL, {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": arguments}}]}]


MESSAGE_REFUSALS = [
    ("an unknown role", [{"role": "function", "content": "x"}], I, "messages[0].role", None),
    ("a missing role", [USER, {"content": "x"}], I, "messages[1].role", None),
    ("a message that is not an object", [USER, "hi"], I, "messages[1]", None),
    ("user content missing", [{"role": "user"}], I, "messages[0].content", None),
    ("content a number", [{"role": "user", "content": 5}], I, "messages[0].content", None),
    ("a content part that is not an object", [{"role": "user", "content": ["hi"]}],
     I, "messages[0].content[0]", None),
    ("an unknown content part type", [{"role": "user", "content": [text("a"), {"type": "video"}]}],
     I, "messages[0].content[1].type", None),
    ("a text part without text", [{"role": "user", "content": [{"type": "text"}]}],
     I, "messages[0].content[0].text", None),
    ("a text part with non-string text", [{"role": "user", "content": [{"type": "text", "text": 1}]}],
     I, "messages[0].content[0].text", None),
    ("an http image URL is refused, never fetched",
     [USER, {"role": "user", "content": [text("see"), image("http://example.com/cat.png")]}],
     U, "messages[1].content[1].image_url.url", UP),
    ("an https image URL is refused, never fetched",
     [{"role": "user", "content": [image("https://169.254.169.254/latest/meta-data")]}],
     U, "messages[0].content[0].image_url.url", UP),
    ("bad base64 in a data URL",
     [USER, {"role": "user", "content": [text("a"), image("data:image/png;base64,not base64!!")]}],
     I, "messages[1].content[1].image_url.url", None),
    ("truncated base64 in a data URL",
     [{"role": "user", "content": [image("data:image/png;base64," + PNG[:-3])]}],
     I, "messages[0].content[0].image_url.url", None),
    ("a non-image data URL", [{"role": "user", "content": [image("data:text/plain;base64,aGk=")]}],
     I, "messages[0].content[0].image_url.url", None),
    ("a file path as image URL", [{"role": "user", "content": [image("file:///etc/passwd")]}],
     I, "messages[0].content[0].image_url.url", None),
    ("image_url without url", [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
     I, "messages[0].content[0].image_url.url", None),
    ("image_url that is not an object",
     [{"role": "user", "content": [{"type": "image_url", "image_url": "data:image/png;base64," + PNG}]}],
     I, "messages[0].content[0].image_url", None),
    ("an image in a system message",
     [{"role": "system", "content": [image("data:image/png;base64," + PNG)]}, USER],
     U, "messages[0].content[0].type", UP),
    ("an image in an assistant message",
     [USER, {"role": "assistant", "content": [image("data:image/png;base64," + PNG)]}],
     U, "messages[1].content[0].type", UP),
    ("an input_audio part", [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
     U, "messages[0].content[0].type", UP),
    ("a file part", [{"role": "user", "content": [{"type": "file", "file": {}}]}],
     U, "messages[0].content[0].type", UP),
    ("a refusal part in a user message", [{"role": "user", "content": [{"type": "refusal", "refusal": "x"}]}],
     I, "messages[0].content[0].type", None),
    ("invalid JSON tool-call arguments", _bad_call('{"city": "Par'),
     I, "messages[1].tool_calls[1].function.arguments", None),
    ("tool-call arguments a JSON array", _bad_call("[1, 2]"),
     I, "messages[1].tool_calls[1].function.arguments", None),
    ("tool-call arguments an object instead of a string", _bad_call({"city": "Paris"}),
     I, "messages[1].tool_calls[1].function.arguments", None),
    ("tool_calls not an array", [USER, {"role": "assistant", "tool_calls": CALL}],
     I, "messages[1].tool_calls", None),
    ("a tool call that is not an object", [USER, {"role": "assistant", "tool_calls": ["call_1"]}],
     I, "messages[1].tool_calls[0]", None),
    ("a tool call without function", [USER, {"role": "assistant", "tool_calls": [{"id": "c"}]}],
     I, "messages[1].tool_calls[0].function", None),
    ("a tool call without a name",
     [USER, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}],
     I, "messages[1].tool_calls[0].function.name", None),
    ("a tool message with an unmatched tool_call_id",
     [USER, TOOL_TURN, {"role": "tool", "tool_call_id": "call_9", "content": "x"}],
     I, "messages[2].tool_call_id", None),
    ("a tool message without tool_call_id", [USER, TOOL_TURN, {"role": "tool", "content": "x"}],
     I, "messages[2].tool_call_id", None),
    ("a tool message before any tool call", [USER, {"role": "tool", "tool_call_id": "call_1", "content": "x"}],
     I, "messages[1].tool_call_id", None),
    ("a tool message matching only a later call",
     [USER, {"role": "tool", "tool_call_id": "call_1", "content": "x"}, TOOL_TURN],
     I, "messages[1].tool_call_id", None),
    ("a tool message without content", [USER, TOOL_TURN, {"role": "tool", "tool_call_id": "call_1"}],
     I, "messages[2].content", None),
]  # fmt: skip


@pytest.mark.parametrize(
    "messages, cls, param, code", [r[1:] for r in MESSAGE_REFUSALS], ids=[r[0] for r in MESSAGE_REFUSALS]
)
def test_message_refused(messages: list[Any], cls: type[ProxyError], param: str, code: str | None) -> None:
    assert_refused(request(messages=messages), cls, param, code)


@pytest.mark.parametrize(
    "role", [["user"], {"name": "user"}, 1, True], ids=["a list role", "an object role", "a number role", "a boolean role"]
)
def test_a_role_that_is_not_a_string_is_a_400(role: Any) -> None:
    assert_refused(request(messages=[USER, {"role": role, "content": "x"}]), I, "messages[1].role", None)


# ---- request: no client input is a 500 ---------------------------------------------------

RICH = request(
    messages=[
        {"role": "system", "content": [text("Be brief.")]},
        {"role": "user", "content": [text("look"), image("data:image/png;base64," + PNG)]},
        {"role": "assistant", "content": None, "tool_calls": [CALL], "reasoning": "hmm"},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ],
    tools=[TOOL], tool_choice="auto", stream=True, stream_options={"include_usage": True},
    response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}},
    reasoning={"effort": "low"}, logprobs=True, top_logprobs=2, stop=["x"], options={"top_k": 3},
)  # fmt: skip
WEIRD: list[Any] = [None, True, 0, -1, 1.5, "", "x", [], ["x"], [{}], {}, {"a": 1}]
PATHS = [
    ("model",), ("messages",), ("messages", 0), ("messages", 0, "role"), ("messages", 0, "content"),
    ("messages", 0, "content", 0), ("messages", 0, "content", 0, "type"), ("messages", 0, "content", 0, "text"),
    ("messages", 1, "content", 1, "image_url"), ("messages", 1, "content", 1, "image_url", "url"),
    ("messages", 2, "tool_calls"), ("messages", 2, "tool_calls", 0), ("messages", 2, "tool_calls", 0, "id"),
    ("messages", 2, "tool_calls", 0, "function"), ("messages", 2, "tool_calls", 0, "function", "name"),
    ("messages", 2, "tool_calls", 0, "function", "arguments"), ("messages", 2, "reasoning"),
    ("messages", 3, "tool_call_id"), ("messages", 3, "content"), ("tools",), ("tools", 0), ("tools", 0, "type"),
    ("tools", 0, "function"), ("tools", 0, "function", "name"), ("tools", 0, "function", "parameters"),
    ("tool_choice",), ("stream",), ("stream_options",), ("stream_options", "include_usage"),
    ("response_format",), ("response_format", "type"), ("response_format", "json_schema"),
    ("response_format", "json_schema", "schema"), ("reasoning",), ("reasoning", "effort"), ("reasoning_effort",),
    ("think",), ("logprobs",), ("top_logprobs",), ("stop",), ("options",), ("keep_alive",), ("n",),
    ("logit_bias",), ("modalities",), ("store",), ("parallel_tool_calls",), ("temperature",), ("seed",),
    ("max_tokens",), ("max_completion_tokens",), ("num_ctx",),
]  # fmt: skip


def _path_id(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


@pytest.mark.parametrize("path", PATHS, ids=[f"any JSON at {_path_id(p)} is translated or a 4xx" for p in PATHS])
def test_any_json_value_in_a_field_is_never_a_crash(path: tuple[str | int, ...]) -> None:
    """"Never a 500 for client input": every JSON value in every field either translates or is
    refused with a 4xx that names a parameter."""
    for value in WEIRD:
        body = copy.deepcopy(RICH)
        target: Any = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        try:
            chat = from_openai(body)
        except ProxyError as error:
            assert 400 <= error.status < 500, (value, error.message)
            assert error.param, (value, error.message)
        else:
            assert chat.body["model"] == chat.model


# ---- response: to_completion -------------------------------------------------------------

DONE = {"done": True, "total_duration": 1_523_876_542, "load_duration": 27_612_875,
        "prompt_eval_duration": 96_511_000, "eval_duration": 1_398_016_000}  # fmt: skip


def answer(message: dict[str, Any] | None, done_reason: str = "stop", prompt: int | None = 26,
           completion: int | None = 9, **extra: Any) -> dict[str, Any]:
    """Ollama's ``stream: false`` answer as it comes off the wire."""
    out: dict[str, Any] = {"model": MODEL, "created_at": "2025-06-01T12:00:00.123456789Z"}
    if message is not None:
        out["message"] = {"role": "assistant", **message}
    out.update(DONE, done_reason=done_reason)
    if prompt is not None:
        out["prompt_eval_count"] = prompt
    if completion is not None:
        out["eval_count"] = completion
    out.update(extra)
    return out


def completion(message: dict[str, Any], finish: str, usage: tuple[int, int] = (26, 9),
               logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "logprobs": logprobs,
                     "finish_reason": finish}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }  # fmt: skip


def context() -> ResponseContext:
    counter = itertools.count()
    return ResponseContext("chatcmpl-test", 1700000000, MODEL, lambda: f"call_{next(counter)}")


def ocall(name: str, arguments: Any, index: int = 0, **extra: Any) -> dict[str, Any]:
    """An Ollama tool call as Ollama 0.12 sends it (``function.index`` included)."""
    return {**extra, "function": {"index": index, "name": name, "arguments": arguments}}


def fcall(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


LOGPROBS = [
    {"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
     "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                      {"token": "Hey", "logprob": -2.5, "bytes": [72, 101, 121]}]},
    {"token": "!", "logprob": -0.01, "bytes": [33]},
]  # fmt: skip
OPENAI_LOGPROBS = {"content": [
    {"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
     "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                      {"token": "Hey", "logprob": -2.5, "bytes": [72, 101, 121]}]},
    {"token": "!", "logprob": -0.01, "bytes": [33], "top_logprobs": []},
]}  # fmt: skip

RESPONSE_RULES = [
    ("content becomes the message content", answer({"content": "Hello!"}),
     completion({"content": "Hello!"}, "stop")),
    ("unicode content passes unchanged", answer({"content": "Grüße 👋 \"quoted\"\n日本語"}),
     completion({"content": "Grüße 👋 \"quoted\"\n日本語"}, "stop")),
    ("tool calls get ids from new_call_id and JSON-string arguments without index",
     answer({"content": "", "tool_calls": [ocall("get_weather", {"city": "Paris"}),
                                           ocall("get_time", {"tz": "Europe/Paris"}, 1)]}),
     completion({"content": None, "tool_calls": [fcall("call_0", "get_weather", '{"city":"Paris"}'),
                                                 fcall("call_1", "get_time", '{"tz":"Europe/Paris"}')]},
                "tool_calls")),
    ("content None when only tool calls, even without a content key",
     answer({"tool_calls": [ocall("now", {})]}),
     completion({"content": None, "tool_calls": [fcall("call_0", "now", "{}")]}, "tool_calls")),
    ("content is kept next to tool calls",
     answer({"content": "Let me check.", "tool_calls": [ocall("get_weather", {"city": "Zürich"})]}),
     completion({"content": "Let me check.",
                 "tool_calls": [fcall("call_0", "get_weather", '{"city":"Zürich"}')]}, "tool_calls")),
    ("Ollama's own tool-call id is kept",
     answer({"content": "", "tool_calls": [ocall("now", {}, id="call_k3j2"), ocall("now", {}, 1)]}),
     completion({"content": None, "tool_calls": [fcall("call_k3j2", "now", "{}"), fcall("call_0", "now", "{}")]},
                "tool_calls")),
    ("missing tool-call arguments become {}",
     answer({"content": "", "tool_calls": [{"function": {"name": "now"}}]}),
     completion({"content": None, "tool_calls": [fcall("call_0", "now", "{}")]}, "tool_calls")),
    ("nested arguments serialise as one JSON string",
     answer({"content": "", "tool_calls": [ocall("book", {"who": ["a", "b"], "opts": {"n": 2, "ok": True}})]}),
     completion({"content": None,
                 "tool_calls": [fcall("call_0", "book", '{"who":["a","b"],"opts":{"n":2,"ok":true}}')]},
                "tool_calls")),
    ("thinking becomes reasoning", answer({"content": "4", "thinking": "2+2 is 4."}),
     completion({"content": "4", "reasoning": "2+2 is 4."}, "stop")),
    ("empty thinking adds no reasoning", answer({"content": "4", "thinking": ""}),
     completion({"content": "4"}, "stop")),
    ("done_reason length gives finish_reason length", answer({"content": "Once upon"}, "length"),
     completion({"content": "Once upon"}, "length")),
    ("done_reason stop gives finish_reason stop", answer({"content": "."}, "stop"),
     completion({"content": "."}, "stop")),
    ("an unknown done_reason gives stop", answer({"content": "."}, "unload"), completion({"content": "."}, "stop")),
    ("usage comes from prompt_eval_count and eval_count", answer({"content": "x"}, prompt=1234, completion=567),
     completion({"content": "x"}, "stop", (1234, 567))),
    ("missing counts count as 0", answer({"content": "x"}, prompt=None, completion=None),
     completion({"content": "x"}, "stop", (0, 0))),
    ("a missing prompt_eval_count (cached prompt) counts as 0", answer({"content": "x"}, prompt=None),
     completion({"content": "x"}, "stop", (0, 9))),
    ("logprobs map to OpenAI's content list", answer({"content": "Hi!"}, logprobs=LOGPROBS),
     completion({"content": "Hi!"}, "stop", logprobs=OPENAI_LOGPROBS)),
    ("empty logprobs are null", answer({"content": "Hi!"}, logprobs=[]), completion({"content": "Hi!"}, "stop")),
    ("a missing message gives empty content", answer(None), completion({"content": ""}, "stop")),
]  # fmt: skip


@pytest.mark.parametrize(
    "ollama_answer, expected", [r[1:] for r in RESPONSE_RULES], ids=[r[0] for r in RESPONSE_RULES]
)
def test_response_rule(ollama_answer: dict[str, Any], expected: dict[str, Any]) -> None:
    assert to_completion(ollama_answer, context()) == expected


FORCED = from_openai(request(tools=[TOOL], tool_choice=NAMED_CHOICE)).forced


@pytest.mark.parametrize("keys, expected", [
    (("reasoning",), {"reasoning": "2+2 is 4."}),
    (("reasoning_content",), {"reasoning_content": "2+2 is 4."}),
    (("reasoning", "reasoning_content"), {"reasoning": "2+2 is 4.", "reasoning_content": "2+2 is 4."}),
], ids=["reasoning", "reasoning_content", "both"])
def test_thinking_goes_under_the_configured_keys(keys: tuple[str, ...], expected: dict[str, str]) -> None:
    got = to_completion(answer({"content": "4", "thinking": "2+2 is 4."}), context(), ReplyShape(keys))
    assert got == completion({"content": "4", **expected}, "stop")


def test_parallel_tool_calls_false_keeps_the_first_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="proxy.translate")
    data = answer({"content": "", "tool_calls": [ocall("a", {}), ocall("b", {}, 1)]})
    got = to_completion(data, context(), ReplyShape(one_tool_call=True))
    assert got == completion({"content": None, "tool_calls": [fcall("call_0", "a", "{}")]}, "tool_calls")
    assert any("dropped 1 of 2" in r.getMessage() for r in caplog.records)


FORCED_RESPONSES = [
    ("the JSON becomes one call, content null",
     answer({"content": '{"city": "Paris"}'}),
     completion({"content": None, "tool_calls": [fcall("call_0", "get_weather", '{"city":"Paris"}')]},
                "tool_calls")),
    ("thinking stays next to the call",
     answer({"content": '{"city": "Oslo"}', "thinking": "Oslo it is."}),
     completion({"content": None, "reasoning": "Oslo it is.",
                 "tool_calls": [fcall("call_0", "get_weather", '{"city":"Oslo"}')]}, "tool_calls")),
    ("cut off by max_tokens: as generated, finish_reason length",
     answer({"content": '{"city": "Os'}, "length"),
     completion({"content": None, "tool_calls": [fcall("call_0", "get_weather", '{"city": "Os')]}, "length")),
]  # fmt: skip


@pytest.mark.parametrize("data, expected", [r[1:] for r in FORCED_RESPONSES], ids=[r[0] for r in FORCED_RESPONSES])
def test_forced_response(data: dict[str, Any], expected: dict[str, Any]) -> None:
    assert to_completion(data, context(), ReplyShape(forced=FORCED)) == expected


def test_a_forced_answer_that_is_no_call_is_a_502() -> None:
    with pytest.raises(UpstreamError) as info:
        to_completion(answer({"content": "It is sunny."}), context(), ReplyShape(forced=FORCED))
    assert info.value.status == 502 and "get_weather" in info.value.message


def test_n_answers_become_choices_with_usage_summed() -> None:
    answers = [answer({"content": "red"}, prompt=5, completion=1), answer({"content": "blue"}, "length", 5, 2)]
    got = to_completion(answers, context())
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in got["choices"]] == [
        (0, "red", "stop"), (1, "blue", "length")]
    assert got["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}


def test_to_completion_mutates_nothing() -> None:
    data = answer({"content": "", "thinking": "t", "tool_calls": [ocall("f", {"a": 1})]}, logprobs=LOGPROBS)
    before = copy.deepcopy(data)
    to_completion(data, context())
    assert data == before


FINISH = [
    ("stop is stop", "stop", False, "stop"),
    ("tool calls sent make tool_calls", "stop", True, "tool_calls"),
    ("length is length", "length", False, "length"),
    ("length wins over tool calls", "length", True, "length"),
    ("no done_reason is stop", None, False, "stop"),
    ("unload is stop", "unload", False, "stop"),
]


@pytest.mark.parametrize("done_reason, calls, expected", [r[1:] for r in FINISH], ids=[r[0] for r in FINISH])
def test_finish_reason(done_reason: str | None, calls: bool, expected: str) -> None:
    assert finish_reason(done_reason, calls) == expected


USAGE = [
    ("both counts", {"prompt_eval_count": 3, "eval_count": 4}, (3, 4, 7)),
    ("no counts", {}, (0, 0, 0)),
    ("null counts", {"prompt_eval_count": None, "eval_count": None}, (0, 0, 0)),
    ("only eval_count", {"eval_count": 5}, (0, 5, 5)),
]


@pytest.mark.parametrize("done, expected", [r[1:] for r in USAGE], ids=[r[0] for r in USAGE])
def test_to_usage(done: dict[str, Any], expected: tuple[int, int, int]) -> None:
    assert to_usage(done) == dict(zip(("prompt_tokens", "completion_tokens", "total_tokens"), expected))


def test_to_tool_calls_numbers_from_first_index() -> None:
    calls = to_tool_calls([ocall("a", {}), ocall("b", {"x": 1}, 1)], 3, context())
    assert calls == [
        {"index": 3, **fcall("call_0", "a", "{}")},
        {"index": 4, **fcall("call_1", "b", '{"x":1}')},
    ]


def test_to_logprobs_none_and_empty() -> None:
    assert to_logprobs(None) is None
    assert to_logprobs([]) is None
    assert to_logprobs(LOGPROBS) == OPENAI_LOGPROBS


@pytest.mark.parametrize("extra, store, metadata", [
    ({}, None, None),
    ({"store": True}, True, None),
    ({"store": False, "metadata": {"topic": "x"}}, False, {"topic": "x"}),
    ({"store": True, "metadata": {"k" * 64: "v" * 512}}, True, {"k" * 64: "v" * 512}),
], ids=["absent store stays None", "store true is recorded for the [store] policy",
        "metadata is kept with store false", "metadata at OpenAI's bounds is accepted"])
def test_store_and_metadata_are_recorded(extra: dict[str, Any], store: bool | None,
                                         metadata: dict[str, str] | None) -> None:
    chat = from_openai(request(**extra))
    assert (chat.store, chat.metadata) == (store, metadata)
    assert "store" not in chat.body and "metadata" not in chat.body  # never sent to Ollama
