"""Forced tool calls end to end with the official SDK: ``tool_choice`` "required" or a named
function becomes Ollama's ``format``, and the stand-in decodes to the schema as Ollama does."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.conftest import ProxyFactory
from tests.fake_ollama import FakeOllama, Reply, schema_instance

USER = [{"role": "user", "content": "Weather in Paris?"}]
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7},
                   "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "days", "unit"],
}
TIME = {"type": "object", "properties": {"zone": {"type": "string"}, "exact": {"type": "boolean"}},
        "required": ["zone", "exact"]}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": TIME}},
]
NAMED: Any = {"type": "function", "function": {"name": "get_weather"}}


def chat_bodies(fake: FakeOllama) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/api/chat"]


async def test_named_choice_is_one_call_decoded_from_the_schema(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    reply = await client.chat.completions.create(model="llama3.2", messages=USER, tools=TOOLS, tool_choice=NAMED)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function" and calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == schema_instance(WEATHER)
    sent = chat_bodies(fake_ollama)[-1]
    assert sent["format"] == WEATHER
    assert "tools" not in sent  # Ollama's tool parser must not read the JSON as a call of its own
    assert sent["messages"][0]["role"] == "system" and "get_weather" in sent["messages"][0]["content"]
    assert sent["messages"][1:] == [{"role": "user", "content": "Weather in Paris?"}]


async def test_named_choice_streams_the_arguments_as_they_are_generated(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    fake_ollama.push(Reply(thinking="The user wants weather."))
    stream = await client.chat.completions.create(model="qwen3:8b", messages=USER, tools=TOOLS, tool_choice=NAMED,
                                                  reasoning_effort="low", stream=True)
    chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thinking = "".join((d.model_extra or {}).get("reasoning", "") for d in deltas)
    assert thinking == "The user wants weather."
    tool_deltas = [call for d in deltas for call in d.tool_calls or []]
    first = tool_deltas[0]
    assert (first.index, first.type, first.function and first.function.name) == (0, "function", "get_weather")
    assert first.id and first.id.startswith("call_")
    fragments = [call.function.arguments for call in tool_deltas[1:] if call.function]
    assert len(fragments) > 3, "the arguments come in pieces, as OpenAI streams them"
    assert all(call.id is None and call.index == 0 for call in tool_deltas[1:])
    assert json.loads("".join(f or "" for f in fragments)) == schema_instance(WEATHER)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert chat_bodies(fake_ollama)[-1]["think"] == "low"  # thinking models keep thinking


async def test_the_sdk_stream_helper_assembles_a_forced_call(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    async with client.chat.completions.stream(model="llama3.2", messages=USER, tools=TOOLS,
                                              tool_choice="required", seed=1) as stream:
        final = await stream.get_final_completion()
    call = (final.choices[0].message.tool_calls or [])[0]
    assert call.function.name == "get_time"  # the branch seed 1 picks in the stand-in
    assert json.loads(call.function.arguments) == schema_instance(TIME, seed=1)
    assert final.choices[0].finish_reason == "tool_calls"


async def test_required_choice_names_one_of_the_tools(client: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    reply = await client.chat.completions.create(model="llama3.2", messages=USER, tools=TOOLS,
                                                 tool_choice="required")
    call = (reply.choices[0].message.tool_calls or [])[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == schema_instance(WEATHER)
    fmt = chat_bodies(fake_ollama)[-1]["format"]
    assert [b["properties"]["name"] for b in fmt["anyOf"]] == [
        {"type": "string", "enum": ["get_weather"]}, {"type": "string", "enum": ["get_time"]}]


async def test_required_stream_announces_the_tool_before_its_arguments(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    stream = await client.chat.completions.create(model="llama3.2", messages=USER, tools=TOOLS,
                                                  tool_choice="required", stream=True)
    calls = [call async for c in stream if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert calls[0].function and calls[0].function.name == "get_weather" and calls[0].function.arguments == ""
    assert json.loads("".join(c.function.arguments or "" for c in calls if c.function)) == schema_instance(WEATHER)


@pytest.mark.parametrize("stream", [False, True], ids=["non-streaming", "streaming"])
async def test_output_that_breaks_the_schema_is_a_502(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama, stream: bool
) -> None:
    fake_ollama.push(Reply(content="Sure! The weather in Paris is", ignore_format=True))
    with pytest.raises(openai.APIError) as info:
        if stream:
            async for _ in await client.chat.completions.create(
                    model="llama3.2", messages=USER, tools=TOOLS, tool_choice=NAMED, stream=True):
                pass
        else:
            await client.chat.completions.create(model="llama3.2", messages=USER, tools=TOOLS, tool_choice=NAMED)
    assert "did not produce a valid call of the tool 'get_weather'" in info.value.message
    if not stream:
        assert isinstance(info.value, openai.InternalServerError) and info.value.status_code == 502


async def test_a_named_tool_that_is_not_offered_is_a_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="llama3.2", messages=USER, tools=TOOLS,
                                             tool_choice={"type": "function", "function": {"name": "nope"}})
    assert info.value.param == "tool_choice.function.name"


async def test_parallel_tool_calls_false_keeps_the_first_call(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.fake_ollama import ToolCall

    url = await proxy_factory({"log": {"level": "debug"}})
    two = [ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_weather", {"city": "Oslo"})]
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        fake_ollama.push(Reply(content="", tool_calls=two), Reply(content="", tool_calls=two))
        with caplog.at_level("DEBUG", logger="proxy.translate"):
            reply = await sdk.chat.completions.create(model="llama3.2", messages=USER, tools=TOOLS,
                                                      parallel_tool_calls=False)
            stream = await sdk.chat.completions.create(model="llama3.2", messages=USER, tools=TOOLS,
                                                       parallel_tool_calls=False, stream=True)
            streamed = [call async for c in stream if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert [json.loads(c.function.arguments) for c in reply.choices[0].message.tool_calls or []] == [{"city": "Paris"}]
    assert [json.loads(c.function.arguments or "") for c in streamed if c.function] == [{"city": "Paris"}]
    assert sum("parallel_tool_calls is false" in r.getMessage() for r in caplog.records) == 2


async def test_n_forced_calls_stream_side_by_side(client: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    stream = await client.chat.completions.create(model="llama3.2", messages=USER, tools=TOOLS, tool_choice="required",
                                                  n=2, seed=0, stream=True)
    arguments: dict[int, str] = {0: "", 1: ""}
    names: dict[int, str] = {}
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                if call.function and call.function.name:
                    names[choice.index] = call.function.name
                arguments[choice.index] += (call.function.arguments or "") if call.function else ""
    assert names == {0: "get_weather", 1: "get_time"}  # seeds 0 and 1 pick the branches
    assert json.loads(arguments[0]) == schema_instance(WEATHER, seed=0)
    assert json.loads(arguments[1]) == schema_instance(TIME, seed=1)


async def test_reasoning_content_in_the_history_reaches_ollama_as_thinking(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    history: Any = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Two and two."},
        {"role": "user", "content": "And 3+3?"},
    ]
    await client.chat.completions.create(model="qwen3:8b", messages=history)
    assert chat_bodies(fake_ollama)[-1]["messages"][1] == {"role": "assistant", "content": "4",
                                                            "thinking": "Two and two."}
