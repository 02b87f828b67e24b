"""The OpenAI Agents SDK, on the Responses API, runs an agent with one function tool to
completion against the proxy (the stand-in Ollama first calls the tool, then answers)."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

from tests.conftest import ProxyFactory
from tests.fake_ollama import FakeOllama, Reply, ToolCall


@pytest.fixture(autouse=True)
def no_tracing() -> None:
    set_tracing_disabled(True)  # no trace export to OpenAI's servers


def make_agent(sdk: openai.AsyncOpenAI, calls: list[str]) -> Agent[Any]:
    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"It is sunny in {city}."

    return Agent(name="Forecaster", instructions="Answer with the weather.", tools=[get_weather],
                 model=OpenAIResponsesModel(model="llama3.2", openai_client=sdk))


def chat_bodies(fake: FakeOllama) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/api/chat"]


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
async def test_agent_with_one_function_tool_runs_to_completion(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama, streamed: bool
) -> None:
    url = await proxy_factory()
    fake_ollama.push(Reply(content="", tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
                     Reply(content="Sunny in Paris."))
    calls: list[str] = []
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        agent = make_agent(sdk, calls)
        if streamed:
            run = Runner.run_streamed(agent, "What's the weather in Paris?")
            kinds = [event.type async for event in run.stream_events()]
            assert "raw_response_event" in kinds
            output = run.final_output
        else:
            output = (await Runner.run(agent, "What's the weather in Paris?")).final_output
    assert output == "Sunny in Paris."
    assert calls == ["Paris"]
    first, second = chat_bodies(fake_ollama)
    assert first["messages"][0] == {"role": "system", "content": "Answer with the weather."}
    assert first["tools"][0]["function"]["name"] == "get_weather"
    tool_turn = second["messages"][-1]
    assert tool_turn["role"] == "tool" and tool_turn["tool_name"] == "get_weather"
    assert tool_turn["content"] == "It is sunny in Paris."
