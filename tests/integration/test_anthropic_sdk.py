"""The official ``anthropic`` Python SDK against the real proxy and the stand-in Ollama:
messages create and stream (text, tools, thinking, images), count_tokens, the model list,
errors with their SDK classes, retries, and Anthropic's event order checked on the wire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest

from proxy.access.keys import hash_key, new_key
from proxy.appkeys import ADMISSION, STORE_SERVICE
from tests.conftest import AppFactory
from tests.fake_ollama import BUSY_ERROR, FakeOllama, Reply, ToolCall

KEY = new_key()
USER: Any = [{"role": "user", "content": "Hi"}]
TOOL: Any = {"name": "get_weather", "description": "The weather in a city.",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
SLACK = 10.0


def sdk(url: str, **options: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key=options.pop("api_key", "unused"),
                                    max_retries=options.pop("max_retries", 0), **options)


def chats(fake: FakeOllama) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/api/chat"]


@pytest.fixture
async def url(app_factory: AppFactory) -> str:
    return (await app_factory())[0]


@pytest.fixture
async def client(url: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with sdk(url) as c:
        yield c


async def test_create_text(client: anthropic.AsyncAnthropic, fake_ollama: FakeOllama) -> None:
    raw = await client.messages.with_raw_response.create(
        model="llama3.2", max_tokens=50, messages=USER, system=[{"type": "text", "text": "Be kind.",
                                                                 "cache_control": {"type": "ephemeral"}}],
        metadata={"user_id": "user-7"}, extra_body={"temperature": 0.5, "top_k": 20})
    message = await raw.parse()
    assert raw.headers["request-id"] == raw.headers["x-request-id"]
    assert message.id.startswith("msg_") and message.role == "assistant" and message.model == "llama3.2"
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == "Hello from the stand-in."  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.usage.input_tokens == 11 and message.usage.output_tokens > 0
    body = chats(fake_ollama)[0]
    assert body["messages"][0] == {"role": "system", "content": "Be kind."}
    assert body["options"] == {"num_predict": 50, "temperature": 0.5, "top_k": 20}
    assert "user-7" not in orjson.dumps(body).decode()


async def test_create_ends_at_a_stop_sequence(client: anthropic.AsyncAnthropic, fake_ollama: FakeOllama) -> None:
    fake_ollama.push(Reply(content="one two three four five"))
    message = await client.messages.create(model="llama3.2", max_tokens=50, messages=USER, stop_sequences=["three"])
    assert message.content[0].text == "one two " and message.stop_reason == "stop_sequence"  # type: ignore[union-attr]
    assert message.stop_sequence == "three"
    fake_ollama.push(Reply(content="one two three four five six seven eight", line_delay=0.02))
    async with client.messages.stream(model="llama3.2", max_tokens=50, messages=USER,
                                      stop_sequences=["four"]) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "one two three " and final.stop_reason == "stop_sequence" and final.stop_sequence == "four"
    await asyncio.wait_for(fake_ollama.stream_closed.wait(), SLACK)  # Ollama's generation was stopped


async def test_stream_text_and_the_event_order_on_the_wire(url: str, client: anthropic.AsyncAnthropic) -> None:
    async with client.messages.stream(model="llama3.2", max_tokens=50, messages=USER) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "Hello from the stand-in." and final.stop_reason == "end_turn" and final.usage.input_tokens == 11
    async with aiohttp.ClientSession() as http, http.post(
            url + "/v1/messages?beta=true", json={"model": "llama3.2", "max_tokens": 50, "messages": USER,
                                                  "stream": True},
            headers={"anthropic-version": "2023-06-01", "x-api-key": "k"}) as response:
        raw = (await response.read()).decode()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["request-id"] == response.headers["X-Request-Id"]
    names = [line[7:] for line in raw.splitlines() if line.startswith("event: ")]
    deltas = names.count("content_block_delta")
    assert names == ["message_start", "ping", "content_block_start", *["content_block_delta"] * deltas,
                     "content_block_stop", "message_delta", "message_stop"] and deltas > 1


async def test_tools_round_trip(client: anthropic.AsyncAnthropic, fake_ollama: FakeOllama) -> None:
    fake_ollama.push(Reply(content="", tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
                     Reply(content="", tool_calls=[ToolCall("get_weather", {"city": "Rome"})]),
                     Reply(content="Sunny."))
    first = await client.messages.create(model="llama3.2", max_tokens=50, messages=USER, tools=[TOOL])
    call = first.content[0]
    assert call.type == "tool_use" and call.id.startswith("toolu_") and call.input == {"city": "Paris"}
    assert first.stop_reason == "tool_use"
    async with client.messages.stream(model="llama3.2", max_tokens=50, messages=USER, tools=[TOOL]) as stream:
        streamed = await stream.get_final_message()
    assert streamed.content[0].type == "tool_use" and streamed.content[0].input == {"city": "Rome"}
    turns: Any = [*USER, {"role": "assistant", "content": first.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}]}]
    final = await client.messages.create(model="llama3.2", max_tokens=50, messages=turns, tools=[TOOL])
    assert final.content[0].text == "Sunny."  # type: ignore[union-attr]
    tool_message = chats(fake_ollama)[-1]["messages"][-1]
    assert tool_message == {"role": "tool", "content": "Sunny", "tool_name": "get_weather", "tool_call_id": call.id}


async def test_forced_tool_choice_is_honoured(client: anthropic.AsyncAnthropic, fake_ollama: FakeOllama) -> None:
    other = {**TOOL, "name": "get_time"}
    message = await client.messages.create(model="llama3.2", max_tokens=50, messages=USER, tools=[TOOL, other],
                                           tool_choice={"type": "tool", "name": "get_time"})
    assert message.content[0].type == "tool_use" and message.content[0].name == "get_time"
    async with client.messages.stream(model="llama3.2", max_tokens=50, messages=USER, tools=[TOOL, other],
                                      tool_choice={"type": "any"}) as stream:
        streamed = await stream.get_final_message()
    assert streamed.content[0].type == "tool_use" and streamed.content[0].name in ("get_weather", "get_time")
    assert streamed.stop_reason == "tool_use"
    assert all("format" in body and "tools" not in body for body in chats(fake_ollama))


async def test_thinking_create_stream_and_back(client: anthropic.AsyncAnthropic, fake_ollama: FakeOllama) -> None:
    fake_ollama.push(Reply(content="4.", thinking="Two and two."), Reply(content="4.", thinking="Two and two."))
    message = await client.messages.create(model="qwen3:8b", max_tokens=50, messages=USER,
                                           thinking={"type": "enabled", "budget_tokens": 1024})
    thinking = message.content[0]
    assert thinking.type == "thinking" and thinking.thinking == "Two and two." and thinking.signature
    async with client.messages.stream(model="qwen3:8b", max_tokens=50, messages=USER,
                                      thinking={"type": "adaptive", "display": "omitted"},  # type: ignore[typeddict-unknown-key]
                                      output_config={"effort": "low"}) as stream:
        kinds = [event.type async for event in stream]
        streamed = await stream.get_final_message()
    assert "signature" in kinds and "thinking" not in kinds  # omitted: only the signature
    assert streamed.content[0].type == "thinking" and streamed.content[0].thinking == ""
    await client.messages.create(model="qwen3:8b", max_tokens=50, thinking={"type": "adaptive"}, messages=[
        *USER, {"role": "assistant", "content": streamed.content}, {"role": "user", "content": "Sure?"}])
    first, second, third = chats(fake_ollama)
    assert first["think"] is True and second["think"] == "low"
    assert third["messages"][1] == {"role": "assistant", "content": "4.", "thinking": "Two and two."}


async def test_images(client: anthropic.AsyncAnthropic, fake_ollama: FakeOllama) -> None:
    image: Any = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    await client.messages.create(model="llama3.2", max_tokens=50, messages=[
        {"role": "user", "content": [image, {"type": "text", "text": "What is it?"}]}])
    assert chats(fake_ollama)[0]["messages"] == [{"role": "user", "content": "What is it?", "images": ["iVBORw0KGgo="]}]
    url_image: Any = {"type": "image", "source": {"type": "url", "url": "http://169.254.169.254/x.png"}}
    with pytest.raises(anthropic.BadRequestError) as refused:
        await client.messages.create(model="llama3.2", max_tokens=50, messages=[{"role": "user", "content": [url_image]}])
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert len(chats(fake_ollama)) == 1


async def test_server_tools_are_left_out_and_named(url: str, fake_ollama: FakeOllama) -> None:
    async with sdk(url) as c:
        raw = await c.messages.with_raw_response.create(model="llama3.2", max_tokens=50, messages=USER, tools=[
            TOOL, {"type": "web_search_20250305", "name": "web_search"}])
        with pytest.raises(anthropic.BadRequestError):
            await c.messages.create(model="llama3.2", max_tokens=50, messages=USER, tools=[
                TOOL, {"type": "web_search_20250305", "name": "web_search"}],
                tool_choice={"type": "tool", "name": "web_search"})
    assert raw.headers["X-Ollama-Proxy-Dropped-Tools"] == "web_search"
    assert [t["function"]["name"] for t in chats(fake_ollama)[0]["tools"]] == ["get_weather"]


async def test_count_tokens_is_ollamas_prompt_count(client: anthropic.AsyncAnthropic, fake_ollama: FakeOllama) -> None:
    fake_ollama.push(Reply(prompt_eval_count=1234))
    counted = await client.messages.count_tokens(model="llama3.2", messages=USER, tools=[TOOL], system="Be brief.")
    assert counted.input_tokens == 1234
    body = chats(fake_ollama)[0]
    assert body["options"]["num_predict"] == 1 and body["stream"] is False and body["tools"]


async def test_models_list_in_anthropics_shape(client: anthropic.AsyncAnthropic) -> None:
    ids = [model.id async for model in client.models.list()]
    assert "llama3.2:latest" in ids
    model = await client.models.retrieve("llama3.2:latest")
    assert model.type == "model" and model.display_name == "llama3.2:latest"


@pytest.mark.parametrize("model, kind, error_type", [
    ("no-such-model", anthropic.NotFoundError, "not_found_error"),
])
async def test_error_classes(client: anthropic.AsyncAnthropic, model: str, kind: type[Exception],
                             error_type: str) -> None:
    with pytest.raises(kind) as caught:
        await client.messages.create(model=model, max_tokens=50, messages=USER)
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == error_type  # type: ignore[attr-defined]
    with pytest.raises(anthropic.BadRequestError) as missing:
        await client.post("/v1/messages", cast_to=object, body={"model": "llama3.2", "messages": USER})
    assert "max_tokens" in missing.value.message


async def test_keys_from_x_api_key_or_bearer(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, app = await app_factory({"auth": {"keys": [{"id": "team", "sha256": hash_key(KEY)}]},
                                  "store": {"enabled": True, "url": "sqlite://"}})
    async with sdk(url, api_key=KEY) as by_header, sdk(url, api_key=None, auth_token=KEY) as by_bearer, \
            sdk(url, api_key="sk-wrong-key-000") as wrong:
        await by_header.messages.create(model="llama3.2", max_tokens=50, messages=USER)
        async with by_bearer.messages.stream(model="llama3.2", max_tokens=50, messages=USER) as stream:
            await stream.get_final_message()
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await wrong.messages.create(model="llama3.2", max_tokens=50, messages=USER)
    assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    await app[STORE_SERVICE].flush()
    async with aiohttp.ClientSession() as http, http.get(
            url + f"/v1/organization/usage/completions?start_time={int(time.time()) - 3600}&group_by=api_key_id",
            headers={"Authorization": f"Bearer {KEY}"}) as response:
        usage = await response.json()
    results = [r for bucket in usage["data"] for r in bucket["results"]]
    assert sum(r["num_model_requests"] for r in results) == 2 and results[0]["api_key_id"] == "team"


async def test_a_busy_ollama_is_529_overloaded_and_the_sdk_retries(url: str, fake_ollama: FakeOllama) -> None:
    fake_ollama.push(Reply(status=503, error=BUSY_ERROR))
    async with sdk(url) as once:
        with pytest.raises(anthropic.OverloadedError) as caught:
            await once.messages.create(model="llama3.2", max_tokens=50, messages=USER)
    response = caught.value.response
    assert response.status_code == 529 and response.headers["retry-after"] == "1"
    assert response.headers["request-id"] and caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    fake_ollama.push(Reply(status=503, error=BUSY_ERROR), Reply(content="served on the retry"))
    async with sdk(url, max_retries=2) as retrying:
        message = await retrying.messages.create(model="llama3.2", max_tokens=50, messages=USER)
    assert message.content[0].text == "served on the retry"  # type: ignore[union-attr]


async def test_a_full_proxy_is_529_and_a_keys_limit_429(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, app = await app_factory({"admission": {"max_concurrent": 1, "max_queue": 0},
                                  "auth": {"keys": [{"id": "slow", "sha256": hash_key(KEY), "rpm": 2}]}})
    fake_ollama.push(Reply(hang=True))
    async with sdk(url, api_key=KEY) as c:
        async with c.messages.stream(model="llama3.2", max_tokens=50, messages=USER) as held:
            with pytest.raises(anthropic.OverloadedError):
                await c.messages.create(model="llama3.2", max_tokens=50, messages=USER)
            await held.close()
        await asyncio.wait_for(fake_ollama.stream_closed.wait(), SLACK)
        assert app[ADMISSION].active == 0
        with pytest.raises(anthropic.RateLimitError) as limited:
            await c.messages.create(model="llama3.2", max_tokens=50, messages=USER)
    assert limited.value.response.status_code == 429 and "retry-after" in limited.value.response.headers
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


async def test_a_fault_mid_stream_is_an_error_event(client: anthropic.AsyncAnthropic, fake_ollama: FakeOllama) -> None:
    fake_ollama.push(Reply(content="one two three four", error_after_lines=2, error="CUDA out of memory"))
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client.messages.stream(model="llama3.2", max_tokens=50, messages=USER) as stream:
            async for _ in stream:
                pass
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "CUDA" not in str(caught.value.body)


async def test_model_gates_apply(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, _ = await app_factory({"limits": {"allowed_models": ["llama3*", "qwen*"], "denied_models": ["*:8b"]}})
    async with sdk(url) as c:
        with pytest.raises(anthropic.NotFoundError):
            await c.messages.create(model="mistral", max_tokens=50, messages=USER)
        with pytest.raises(anthropic.PermissionDeniedError):
            await c.messages.count_tokens(model="qwen3:8b", messages=USER)
    assert chats(fake_ollama) == []


async def test_pings_while_ollama_is_silent(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, app = await app_factory({"anthropic": {"ping_interval": 0.05}})
    fake_ollama.push(Reply(hang=True))  # one line, then nothing until the client goes away
    async with aiohttp.ClientSession() as http, http.post(
            url + "/v1/messages", json={"model": "llama3.2", "max_tokens": 50, "messages": USER, "stream": True},
            headers={"anthropic-version": "2023-06-01"}) as response:
        seen = b""
        while seen.count(b"event: ping") < 3:
            seen += await asyncio.wait_for(response.content.readany(), SLACK)
    names = [line[7:] for line in seen.decode().splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"] and names[-1] == "ping"
    await asyncio.wait_for(fake_ollama.stream_closed.wait(), SLACK)
    assert app[ADMISSION].active == 0


async def test_server_tools_refused_when_configured(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, _ = await app_factory({"anthropic": {"server_tools": "refuse"}})
    async with sdk(url) as c:
        with pytest.raises(anthropic.BadRequestError) as refused:
            await c.messages.create(model="llama3.2", max_tokens=50, messages=USER, tools=[
                TOOL, {"type": "bash_20250124", "name": "bash"}])
    assert "bash" in refused.value.message and chats(fake_ollama) == []


async def test_limits_hold_images_and_tool_results(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, _ = await app_factory({"limits": {"max_images": 1, "max_image_bytes": 6, "max_message_chars": 10}})
    image: Any = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "aGVsbG8="}}
    big: Any = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "aGVsbG8gd29ybGQ="}}
    result: Any = [{"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                      "input": {}}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                 "content": "x" * 11}]}]
    async with sdk(url) as c:
        await c.messages.create(model="llama3.2", max_tokens=5, messages=[{"role": "user", "content": [image]}])
        for messages in ([{"role": "user", "content": [image, image]}], [{"role": "user", "content": [big]}],
                         [*USER, *result]):
            with pytest.raises(anthropic.BadRequestError):
                await c.messages.create(model="llama3.2", max_tokens=5, messages=messages)
    assert len(chats(fake_ollama)) == 1


async def test_a_browser_may_call_the_messages_api(app_factory: AppFactory) -> None:
    url, _ = await app_factory({"cors": {"origins": ["https://app.example"]}})
    wanted = "anthropic-version, anthropic-beta, anthropic-dangerous-direct-browser-access, x-api-key, content-type"
    async with aiohttp.ClientSession() as http:
        async with http.options(url + "/v1/messages", headers={
                "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": wanted}) as preflight:
            allowed = {h.strip() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
        async with http.post(url + "/v1/messages", json={"model": "llama3.2", "max_tokens": 5, "messages": USER},
                             headers={"Origin": "https://app.example", "anthropic-version": "2023-06-01"}) as answer:
            exposed = answer.headers["Access-Control-Expose-Headers"]
    assert preflight.status == 204 and allowed == {h.strip() for h in wanted.split(",")}
    assert answer.status == 200 and "request-id" in exposed


async def test_thinking_asked_of_a_model_that_cannot_think_is_left_out(client: anthropic.AsyncAnthropic,
                                                                       fake_ollama: FakeOllama) -> None:
    message = await client.messages.create(model="llama3.2", max_tokens=50, messages=USER,
                                           thinking={"type": "adaptive"}, output_config={"effort": "high"})
    assert message.content[0].type == "text"  # Ollama would have refused think with a 400
    await client.messages.create(model="qwen3:8b", max_tokens=50, messages=USER, thinking={"type": "adaptive"})
    assert [body.get("think") for body in chats(fake_ollama)] == [None, True]


async def test_metrics_and_the_access_record_count_messages(app_factory: AppFactory, fake_ollama: FakeOllama,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from tests.integration.test_metrics import scrape, total

    url, _ = await app_factory({"log": {"access": True, "format": "json"}})
    fake_ollama.push(Reply(prompt_eval_count=5, eval_count=3))
    with caplog.at_level("INFO", logger="proxy.access"):
        async with sdk(url) as c:
            async with c.messages.stream(model="llama3.2", max_tokens=50, messages=USER,
                                         metadata={"user_id": "dev-42"}) as stream:
                await stream.get_final_message()
            await c.messages.count_tokens(model="llama3.2", messages=USER)
    samples = await scrape(url)
    assert total(samples, "requests_total", endpoint="messages", status_code="200") == 1
    assert total(samples, "requests_total", endpoint="messages.count_tokens", status_code="200") == 1
    records = [r for r in caplog.records if r.name == "proxy.access" and getattr(r, "endpoint", "") == "messages"]
    assert records and records[0].user == "dev-42" and records[0].completion_tokens == 3  # type: ignore[attr-defined]


async def test_claude_ids_through_aliases_and_model_defaults(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, _ = await app_factory({"models": {"aliases": {"claude-*": "qwen3:8b"},
                                           "defaults": {"qwen3*": {"think": "low", "keep_alive": "30m"}}}})
    async with sdk(url) as c:
        message = await c.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=USER)
        async with c.messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=USER,
                                     thinking={"type": "disabled"}) as stream:
            streamed = await stream.get_final_message()
        listed = [m.id async for m in c.models.list()]
    assert message.model == streamed.model == "claude-sonnet-4-5"  # the id asked for, as Anthropic answers
    first, second = chats(fake_ollama)
    assert first["model"] == second["model"] == "qwen3:8b" and first["keep_alive"] == "30m"
    assert first["think"] == "low" and second["think"] is False  # a model default; the client's own wins
    assert "qwen3:8b" in listed
