"""Chat completions end to end: the official OpenAI SDK → the proxy on a real port → the
stand-in Ollama on another, speaking Ollama's NDJSON over TCP."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import ProxyFactory
from tests.fake_ollama import FakeOllama, Reply, ToolCall

USER = [{"role": "user", "content": "hi"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def last_chat_body(fake: FakeOllama) -> dict[str, Any]:
    return [body for path, body in fake.requests if path == "/api/chat"][-1]


async def test_non_streaming_reply_maps_content_usage_and_request(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    fake_ollama.push(Reply(content="Bonjour à tous 👋", prompt_eval_count=7, eval_count=5))
    reply = await client.chat.completions.create(
        model="llama3.2", messages=USER, temperature=0.2, top_p=0.9, seed=42, stop="END",
        max_completion_tokens=50, frequency_penalty=0.5, presence_penalty=0.1,
    )
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == "llama3.2"
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Bonjour à tous 👋"
    assert choice.finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (7, 5, 12)
    sent = last_chat_body(fake_ollama)
    assert sent["stream"] is False
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert sent["options"] == {
        "temperature": 0.2, "top_p": 0.9, "frequency_penalty": 0.5, "presence_penalty": 0.1,
        "seed": 42, "stop": ["END"], "num_predict": 50,
    }


async def test_stream_deltas_reassemble_exactly(client: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    pieces = ["Hel", "lo, ", "wörld", " 🌍", "!\n", "done"]
    fake_ollama.push(Reply(chunks=pieces))
    stream = await client.chat.completions.create(model="llama3.2", messages=USER, stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "".join(pieces)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert [c.choices[0].finish_reason for c in chunks] == [None] * len(pieces) + ["stop"]
    assert last_chat_body(fake_ollama)["stream"] is True


async def test_stream_include_usage_sends_a_final_usage_chunk(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    fake_ollama.push(Reply(chunks=["a", "b"], prompt_eval_count=3, eval_count=2))
    stream = await client.chat.completions.create(
        model="llama3.2", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])


async def test_tool_calls_non_streaming(client: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    fake_ollama.push(Reply(content="", tool_calls=[ToolCall("get_weather", {"city": "Paris"})]))
    reply = await client.chat.completions.create(model="llama3.2", messages=USER, tools=[WEATHER_TOOL])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert last_chat_body(fake_ollama)["tools"] == [WEATHER_TOOL]


async def test_tool_calls_streamed_are_assembled_by_the_sdk(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    fake_ollama.push(Reply(content="", tool_calls=[
        ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_weather", {"city": "Oslo"}),
    ]))
    async with client.chat.completions.stream(model="llama3.2", messages=USER, tools=[WEATHER_TOOL]) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert len({c.id for c in calls}) == 2


async def test_tool_result_turn_reaches_ollama_with_tool_name(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    messages: list[Any] = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C, sunny"},
    ]
    await client.chat.completions.create(model="llama3.2", messages=messages, tools=[WEATHER_TOOL])
    assert last_chat_body(fake_ollama)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}, "id": "call_1"}
        ]},
        {"role": "tool", "content": "18°C, sunny", "tool_name": "get_weather", "tool_call_id": "call_1"},
    ]


async def test_thinking_becomes_reasoning(client: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    fake_ollama.push(Reply(thinking="Let me think.", content="42"))
    reply = await client.chat.completions.create(model="qwen3:8b", messages=USER, reasoning_effort="high")
    assert reply.choices[0].message.content == "42"
    assert (reply.choices[0].message.model_extra or {})["reasoning"] == "Let me think."
    assert last_chat_body(fake_ollama)["think"] == "high"

    fake_ollama.push(Reply(thinking="Hmm.", content="42"))
    stream = await client.chat.completions.create(model="qwen3:8b", messages=USER, stream=True)
    deltas = [c.choices[0].delta async for c in stream if c.choices]
    assert "".join((d.model_extra or {}).get("reasoning", "") for d in deltas) == "Hmm."
    assert "".join(d.content or "" for d in deltas) == "42"


async def test_json_schema_and_images_reach_ollama(client: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    content: Any = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    await client.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": content}],
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
    )
    sent = last_chat_body(fake_ollama)
    assert sent["format"] == schema
    assert sent["messages"][0] == {"role": "user", "content": "What is this?", "images": ["iVBORw0KGgo="]}


async def test_done_reason_length_is_finish_reason_length(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    fake_ollama.push(Reply(chunks=["a", "b", "c", "d"]))
    reply = await client.chat.completions.create(model="llama3.2", messages=USER, max_tokens=2)
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == "ab"


async def test_unknown_model_is_404_model_not_found(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="no-such-model", messages=USER)
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"
    assert "no-such-model" in info.value.message


async def test_unsupported_parameter_is_400_naming_it(client: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="llama3.2", messages=USER, logit_bias={"50256": -100})
    assert info.value.param == "logit_bias"
    assert info.value.code == "unsupported_parameter"
    assert fake_ollama.counts["/api/chat"] == 0


async def test_ollama_unreachable_is_502(proxy_factory: ProxyFactory) -> None:
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    url = await proxy_factory(upstream_url=dead)
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        with pytest.raises(openai.InternalServerError) as info:
            await sdk.chat.completions.create(model="llama3.2", messages=USER)
    assert info.value.status_code == 502
    assert info.value.code == "upstream_unreachable"


async def test_first_byte_timeout_is_504(proxy_factory: ProxyFactory, fake_ollama: FakeOllama) -> None:
    url = await proxy_factory({"upstream": {"timeouts": {"first_byte": 0.2}}})
    fake_ollama.push(Reply(hang_before_headers=True))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        with pytest.raises(openai.InternalServerError) as info:
            await sdk.chat.completions.create(model="llama3.2", messages=USER)
    assert info.value.status_code == 504
    await asyncio.wait_for(fake_ollama.stream_closed.wait(), 5)


async def test_upstream_error_mid_stream_is_an_error_frame(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    fake_ollama.push(Reply(chunks=["a", "b", "c"], error_after_lines=2, error="model runner crashed"))
    stream = await client.chat.completions.create(model="llama3.2", messages=USER, stream=True)
    received = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["a", "b"]
    # Ollama's text stays in the log; the client gets OpenAI's generic wording (issue 8, item 7)
    assert "model runner crashed" not in info.value.message
    assert info.value.message.startswith("The model server had an error")
    # The proxy stays up and serves the next request normally.
    reply = await client.chat.completions.create(model="llama3.2", messages=USER)
    assert reply.choices[0].message.content


async def test_client_disconnect_closes_the_upstream_request(
    proxy_url: str, fake_ollama: FakeOllama
) -> None:
    fake_ollama.push(Reply(chunks=["first", "never"], hang=True))
    body = {"model": "llama3.2", "messages": USER, "stream": True}
    async with aiohttp.ClientSession() as session:
        response = await session.post(proxy_url + "/v1/chat/completions", json=body)
        first = await response.content.readuntil(b"\n\n")
        assert b'"first"' in first
        assert fake_ollama.open_streams == 1
        response.close()  # the client goes away mid-stream
    await asyncio.wait_for(fake_ollama.stream_closed.wait(), 5)
    assert fake_ollama.client_disconnects == 1


async def test_camel_case_keys_switch(proxy_factory: ProxyFactory, fake_ollama: FakeOllama) -> None:
    url = await proxy_factory({"response": {"keys": "camel"}})
    fake_ollama.push(Reply(chunks=["x"], prompt_eval_count=1, eval_count=1))
    body = {"model": "llama3.2", "messages": USER}
    async with aiohttp.ClientSession() as session, session.post(url + "/v1/chat/completions", json=body) as response:
        data = await response.json()
    assert data["choices"][0]["finishReason"] == "stop"
    assert data["usage"] == {"promptTokens": 1, "completionTokens": 1, "totalTokens": 2}


async def test_request_id_is_echoed_or_generated(proxy_url: str) -> None:
    body = {"model": "llama3.2", "messages": USER}
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy_url + "/v1/chat/completions", json=body,
                                headers={"X-Request-Id": "trace-123"}) as response:
            assert response.headers["X-Request-Id"] == "trace-123"
        async with session.post(proxy_url + "/v1/chat/completions", json={"model": 1}) as response:
            assert response.status == 400
            assert response.headers["X-Request-Id"].startswith("req_")
            assert (await response.json())["error"]["param"] == "model"


async def test_a_bug_mid_stream_ends_it_with_a_generic_error_frame(
    proxy_url: str, fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(state: object, data: bytes) -> bytes:
        raise RuntimeError("/secret/path/to/proxy.py exploded")

    monkeypatch.setattr("proxy.handlers.openai.chat.frames_for_read", broken)
    fake_ollama.push(Reply(chunks=["a", "b"]))
    body = {"model": "llama3.2", "messages": USER, "stream": True}
    async with aiohttp.ClientSession() as session, session.post(proxy_url + "/v1/chat/completions",
                                                                  json=body) as response:
        assert response.status == 200
        raw = await response.read()
    (event,) = [e for e in raw.split(b"\n\n") if e]
    error = json.loads(event.removeprefix(b"data: "))["error"]
    assert error["type"] == "api_error" and "internal error" in error["message"]
    assert response.headers["X-Request-Id"] in error["message"]
    assert b"secret" not in raw and b"Traceback" not in raw
    assert "exploded" in caplog.text  # the traceback stays in the log
