"""The Responses API end to end: the official OpenAI SDK → the proxy on a real port → the
stand-in Ollama on another. Stored responses use the in-memory records (the store's database
implements the same three methods)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from openai.types.responses import Response, ResponseItemList

from proxy.app import create_app
from proxy.caller import CALLER, Caller
from proxy.store.records import RESPONSE_RECORDS, MemoryResponseRecords, StoreMode
from proxy.upstream.outcome import OUTCOME_LISTENERS, Outcome
from tests.conftest import make_config
from tests.fake_ollama import FakeOllama, Reply, ToolCall

WEATHER = {
    "type": "function", "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()

Start = Callable[..., Awaitable[tuple[openai.AsyncOpenAI, str]]]


@web.middleware
async def key_from_header(request: web.Request, handler: Any) -> web.StreamResponse:
    """Test-only stand-in for the access layer: the caller named by a header."""
    key = request.headers.get("X-Test-Key")
    if key:
        request[CALLER] = Caller(key)
    return await handler(request)  # type: ignore[no-any-return]


@pytest.fixture
async def start(fake_ollama: FakeOllama) -> AsyncIterator[Start]:
    """``await start(records)`` → (SDK client, base URL) of a proxy with those records (None: store off)."""
    servers: list[TestServer] = []
    clients: list[openai.AsyncOpenAI] = []

    async def go(records: MemoryResponseRecords | None = None, toml: dict[str, Any] | None = None,
                 key: str | None = None) -> tuple[openai.AsyncOpenAI, str]:
        app = create_app(make_config(fake_ollama.url, toml))
        app.middlewares.append(key_from_header)
        if records is not None:
            app[RESPONSE_RECORDS] = records
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        url = f"http://127.0.0.1:{server.port}"
        headers = {"X-Test-Key": key} if key else None
        sdk = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, default_headers=headers)
        clients.append(sdk)
        return sdk, url

    yield go
    for sdk in clients:
        await sdk.close()
    for server in servers:
        await server.close()


@pytest.fixture
async def stored(start: Start) -> tuple[openai.AsyncOpenAI, MemoryResponseRecords]:
    records = MemoryResponseRecords()
    sdk, _ = await start(records)
    return sdk, records


def chat_bodies(fake: FakeOllama) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/api/chat"]


def normalized(response: Response) -> dict[str, Any]:
    """A response without what differs between two requests for the same answer."""
    data = response.model_dump(exclude_none=True)
    for key in ("id", "created_at", "completed_at"):
        data.pop(key, None)
    for item in data["output"]:
        item.pop("id", None)
        item.pop("call_id", None)
        for part in item.get("content") or ():
            part.pop("parsed", None)
        item.pop("parsed_arguments", None)
    return data


async def raw_json(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url + path, json=body) as response:
        return response.status, await response.json()


# ---- stateless --------------------------------------------------------------------------------


async def test_text_reply_maps_request_output_and_usage(start: Start, fake_ollama: FakeOllama) -> None:
    sdk, url = await start()
    fake_ollama.push(Reply(content="Bonjour à tous 👋", prompt_eval_count=7, eval_count=5))
    response = await sdk.responses.create(
        model="llama3.2", input="hi", instructions="Be brief.", max_output_tokens=50, temperature=0.2,
        top_p=0.9, metadata={"ticket": "42"}, parallel_tool_calls=True,
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.output_text == "Bonjour à tous 👋"
    (message,) = response.output
    assert message.type == "message" and message.id.startswith("msg_") and message.status == "completed"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (7, 5, 12)
    assert response.instructions == "Be brief." and response.metadata == {"ticket": "42"}
    assert (response.temperature, response.top_p, response.max_output_tokens) == (0.2, 0.9, 50)
    assert response.store is False  # no store on this proxy
    sent = chat_bodies(fake_ollama)[-1]
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert sent["options"] == {"temperature": 0.2, "top_p": 0.9, "num_predict": 50}
    assert sent["stream"] is False
    # The body validates strictly against the SDK's own model, not just its lenient parse.
    status, raw = await raw_json(url, "POST", "/v1/responses", {"model": "llama3.2", "input": "hi"})
    assert status == 200
    Response.model_validate(raw)


async def test_json_schema_format_reaches_ollama_and_parses(start: Start, fake_ollama: FakeOllama) -> None:
    sdk, _ = await start()
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    fake_ollama.push(Reply(chunks=['{"city": ', '"Paris"}'], ignore_format=True))  # scripted, schema-valid
    response = await sdk.responses.create(
        model="llama3.2", input="where?",
        text={"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}},
    )
    assert json.loads(response.output_text) == {"city": "Paris"}
    assert chat_bodies(fake_ollama)[-1]["format"] == schema
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    fake_ollama.push(Reply(content="{}"))
    await sdk.responses.create(model="llama3.2", input="x", text={"format": {"type": "json_object"}})
    assert chat_bodies(fake_ollama)[-1]["format"] == "json"


async def test_image_data_url_becomes_ollama_image(start: Start, fake_ollama: FakeOllama) -> None:
    sdk, _ = await start()
    await sdk.responses.create(model="llama3.2", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": PNG, "detail": "auto"},
    ]}])
    (message,) = chat_bodies(fake_ollama)[-1]["messages"]
    assert message == {"role": "user", "content": "What is this?", "images": [PNG.split(",", 1)[1]]}


async def test_stream_events_arrive_one_by_one(start: Start, fake_ollama: FakeOllama) -> None:
    sdk, _ = await start()
    fake_ollama.push(Reply(chunks=["first", "never"], hang=True))
    seen: list[str] = []
    async with sdk.responses.stream(model="llama3.2", input="hi") as stream:
        async for event in stream:
            seen.append(event.type)
            if event.type == "response.output_text.delta":
                assert event.delta == "first"
                break  # Ollama has sent nothing more: this event came on its own
    assert seen == ["response.created", "response.in_progress", "response.output_item.added",
                    "response.content_part.added", "response.output_text.delta"]
    await asyncio.wait_for(fake_ollama.stream_closed.wait(), 5)  # leaving closed Ollama's request
    assert fake_ollama.client_disconnects == 1


async def test_stream_final_response_equals_the_non_streamed_one(start: Start, fake_ollama: FakeOllama) -> None:
    sdk, _ = await start()
    reply = Reply(chunks=["Hel", "lo \"wörld\"", " 🌍\n"], thinking="Let me think about it",
                  tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_1")],
                  prompt_eval_count=9, eval_count=4)
    fake_ollama.push(reply, reply)
    plain = await sdk.responses.create(model="qwen3:8b", input="hi", tools=[WEATHER])  # type: ignore[list-item]
    numbers: list[int] = []
    async with sdk.responses.stream(model="qwen3:8b", input="hi", tools=[WEATHER]) as stream:  # type: ignore[list-item]
        async for event in stream:
            numbers.append(event.sequence_number)
        final = await stream.get_final_response()
    assert numbers == list(range(len(numbers)))
    assert normalized(final) == normalized(plain)
    assert [item.type for item in plain.output] == ["reasoning", "message", "function_call"]
    assert plain.output_text == 'Hello "wörld" 🌍\n'


async def test_function_tool_round_trip_stateless(start: Start, fake_ollama: FakeOllama) -> None:
    sdk, _ = await start()
    fake_ollama.push(Reply(content="", tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
                     Reply(content="It is sunny in Paris."))
    first = await sdk.responses.create(model="llama3.2", input="Weather in Paris?", tools=[WEATHER])  # type: ignore[list-item]
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert chat_bodies(fake_ollama)[-1]["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city", "parameters": WEATHER["parameters"]}}]
    second = await sdk.responses.create(model="llama3.2", tools=[WEATHER], input=[  # type: ignore[list-item]
        {"role": "user", "content": "Weather in Paris?"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "sunny"}'},
    ])
    assert second.output_text == "It is sunny in Paris."
    messages = chat_bodies(fake_ollama)[-1]["messages"]
    assert messages[1] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": call.call_id, "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    assert messages[2] == {"role": "tool", "content": '{"sky": "sunny"}', "tool_name": "get_weather",
                           "tool_call_id": call.call_id}


async def test_done_reason_length_is_incomplete(start: Start, fake_ollama: FakeOllama) -> None:
    sdk, _ = await start()
    fake_ollama.push(Reply(chunks=["a", "b"], done_reason="length"), Reply(chunks=["a", "b"], done_reason="length"))
    response = await sdk.responses.create(model="llama3.2", input="hi", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"  # type: ignore[union-attr]
    stream = await sdk.responses.create(model="llama3.2", input="hi", max_output_tokens=2, stream=True)
    events = [event async for event in stream]
    assert events[-1].type == "response.incomplete"
    assert [e.type for e in events].count("response.incomplete") == 1


async def test_upstream_fault_mid_stream_is_response_failed(start: Start, fake_ollama: FakeOllama) -> None:
    sdk, _ = await start()
    fake_ollama.push(Reply(chunks=["a", "b", "c"], error_after_lines=2, error="model runner crashed"),
                     Reply(chunks=["a", "b", "c"], die_after_lines=2))
    for expected in ("model runner crashed", "connection to Ollama broke"):
        stream = await sdk.responses.create(model="llama3.2", input="hi", stream=True)
        events = [event async for event in stream]
        terminal = [e for e in events if e.type.startswith("response.") and e.type.split(".")[1] in (
            "completed", "incomplete", "failed")]
        assert [e.type for e in terminal] == ["response.failed"]
        failed = events[-1]
        assert failed.type == "response.failed"
        assert failed.response.status == "failed" and failed.response.error is not None
        assert expected in failed.response.error.message
        assert failed.response.output_text == "ab"  # what came before the fault, marked incomplete
    # The proxy stays up and serves the next request normally.
    assert (await sdk.responses.create(model="llama3.2", input="hi")).output_text


@pytest.mark.parametrize(("body", "param"), [
    ({"tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"include": ["message.output_text.logprobs"]}, "include[0]"),
    ({"background": True}, "background"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),  # the store is off
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0].type"),
], ids=["forced web_search", "forced tool", "include", "background", "prompt", "conversation",
        "item_reference", "input_file"])
async def test_what_ollama_cannot_do_is_400_naming_it(start: Start, fake_ollama: FakeOllama,
                                                       body: dict[str, Any], param: str) -> None:
    sdk, _ = await start()
    request = {"model": "llama3.2", "input": "hi", **body}
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.responses.create(**request)
    assert info.value.status_code == 400
    assert isinstance(info.value.body, dict) and info.value.body["param"] == param
    assert not chat_bodies(fake_ollama)


async def test_limits_apply_to_responses_input(start: Start, fake_ollama: FakeOllama) -> None:
    sdk, _ = await start(toml={"limits": {"max_message_chars": 5, "max_tokens": 10}})
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.responses.create(model="llama3.2", input=[{"role": "user", "content": "far too long"}])
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "input[0].content"
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.responses.create(model="llama3.2", input="hi", max_output_tokens=11)
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "max_output_tokens"
    assert not chat_bodies(fake_ollama)


# ---- stateful ---------------------------------------------------------------------------------


async def test_previous_response_id_across_three_turns(
    stored: tuple[openai.AsyncOpenAI, MemoryResponseRecords], fake_ollama: FakeOllama
) -> None:
    sdk, _ = stored
    fake_ollama.push(Reply(content="Hi Ann."), Reply(content="", tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]),
                     Reply(content="Cold in Oslo, Ann."))
    first = await sdk.responses.create(model="llama3.2", input="I am Ann.", instructions="Be kind.")
    assert first.store is True
    second = await sdk.responses.create(model="llama3.2", input="Weather in Oslo?", tools=[WEATHER],  # type: ignore[list-item]
                                        previous_response_id=first.id, instructions="Be brief.")
    (call,) = second.output
    assert call.type == "function_call"
    async with sdk.responses.stream(model="llama3.2", previous_response_id=second.id, tools=[WEATHER], input=[  # type: ignore[list-item]
        {"type": "function_call_output", "call_id": call.call_id, "output": "-5C"}]) as stream:
        third = await stream.get_final_response()
    assert third.output_text == "Cold in Oslo, Ann." and third.previous_response_id == second.id
    turns = chat_bodies(fake_ollama)
    assert turns[1]["messages"] == [
        {"role": "system", "content": "Be brief."},  # instructions are not carried over (OpenAI)
        {"role": "user", "content": "I am Ann."},
        {"role": "assistant", "content": "Hi Ann."},
        {"role": "user", "content": "Weather in Oslo?"},
    ]
    assert turns[2]["messages"] == [
        {"role": "user", "content": "I am Ann."},
        {"role": "assistant", "content": "Hi Ann."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": call.call_id, "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "-5C", "tool_name": "get_weather", "tool_call_id": call.call_id},
    ]
    # Stored before the terminal event went out: the next request chains at once.
    fake_ollama.push(Reply(content="Bye."))
    fourth = await sdk.responses.create(model="llama3.2", input="Bye", previous_response_id=third.id)
    assert fourth.output_text == "Bye."
    assert len(chat_bodies(fake_ollama)[-1]["messages"]) == 7


async def test_retrieve_input_items_and_delete(
    stored: tuple[openai.AsyncOpenAI, MemoryResponseRecords], fake_ollama: FakeOllama
) -> None:
    sdk, records = stored
    fake_ollama.push(Reply(content="Seen."))
    created = await sdk.responses.create(model="llama3.2", input=[
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": [{"type": "input_text", "text": "Look"},
                                     {"type": "input_image", "image_url": PNG, "detail": "low"}]},
    ])
    got = await sdk.responses.retrieve(created.id)
    assert got.model_dump() == created.model_dump()
    items = await sdk.responses.input_items.list(created.id)
    ResponseItemList.model_validate(items.model_dump())
    assert [item.role for item in items.data] == ["user", "developer"]  # type: ignore[union-attr]
    ascending = await sdk.responses.input_items.list(created.id, order="asc", limit=1)
    assert [item.role for item in ascending.data] == ["developer"] and ascending.has_more  # type: ignore[union-attr]
    rest = await sdk.responses.input_items.list(created.id, order="asc", after=ascending.data[0].id)  # type: ignore[union-attr]
    assert [item.role for item in rest.data] == ["user"] and not rest.has_more  # type: ignore[union-attr]
    assert rest.data[0].content[1].type == "input_image"  # type: ignore[union-attr]
    deleted = await sdk.responses.delete(created.id)
    assert deleted is None  # the SDK returns nothing for a 200 delete
    assert len(records) == 0
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.create(model="llama3.2", input="again", previous_response_id=created.id)


async def test_a_key_sees_only_its_own_responses(start: Start, fake_ollama: FakeOllama) -> None:
    records = MemoryResponseRecords()
    alice, _ = await start(records, key="alice")
    bob, _ = await start(records, key="bob")
    mine = await alice.responses.create(model="llama3.2", input="secret")
    for attempt in (bob.responses.retrieve(mine.id), bob.responses.delete(mine.id),
                    bob.responses.input_items.list(mine.id),
                    bob.responses.create(model="llama3.2", input="x", previous_response_id=mine.id)):
        with pytest.raises(openai.NotFoundError):
            await attempt
    assert (await alice.responses.retrieve(mine.id)).id == mine.id


@pytest.mark.parametrize(("mode", "store", "kept"), [
    ("on_request", None, True), ("on_request", False, False), ("always", False, True), ("never", True, False),
], ids=["default is store", "store false", "always keeps", "never keeps"])
async def test_store_modes(start: Start, mode: StoreMode, store: bool | None, kept: bool) -> None:
    records = MemoryResponseRecords(mode=mode)
    sdk, _ = await start(records)
    extra = {} if store is None else {"store": store}
    response = await sdk.responses.create(model="llama3.2", input="hi", **extra)  # type: ignore[arg-type]
    assert response.store is kept and len(records) == int(kept)


async def test_store_off_refuses_previous_response_id(start: Start, fake_ollama: FakeOllama) -> None:
    sdk, url = await start()
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.responses.create(model="llama3.2", input="hi", previous_response_id="resp_123")
    assert "[store] enabled = true" in info.value.message
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "previous_response_id"
    status, body = await raw_json(url, "GET", "/v1/responses/resp_123")
    assert status == 404 and "[store] enabled = true" in body["error"]["message"]
    assert not chat_bodies(fake_ollama)


async def test_a_store_that_fails_is_response_failed_not_completed(
    start: Start, fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = MemoryResponseRecords()

    async def broken(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(records, "put_response", broken)
    sdk, _ = await start(records)
    stream = await sdk.responses.create(model="llama3.2", input="hi", stream=True)
    events = [event async for event in stream]
    assert events[-1].type == "response.failed"
    assert "could not be stored" in events[-1].response.error.message  # type: ignore[union-attr]
    assert "response.completed" not in [e.type for e in events]


# ---- accounting and bugs ----------------------------------------------------------------------


async def test_each_response_reports_one_outcome(app_factory: Any, fake_ollama: FakeOllama) -> None:
    url, app = await app_factory()
    seen: list[Outcome] = []
    app[OUTCOME_LISTENERS].append(seen.append)
    fake_ollama.push(Reply(chunks=["a", "b"], prompt_eval_count=4, eval_count=2),
                     Reply(chunks=["a", "b", "c"], prompt_eval_count=4, eval_count=3),
                     Reply(chunks=["a", "b", "c"], error_after_lines=2, error="boom"))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        await sdk.responses.create(model="llama3.2", input="hi")
        async with sdk.responses.stream(model="llama3.2", input="hi") as stream:
            await stream.get_final_response()
        events = [event async for event in await sdk.responses.create(model="llama3.2", input="hi", stream=True)]
    assert events[-1].type == "response.failed"
    plain, streamed, faulted = seen
    assert (plain.endpoint, plain.stream, plain.prompt_tokens, plain.completion_tokens, plain.error) == (
        "responses", False, 4, 2, None)
    assert (streamed.stream, streamed.prompt_tokens, streamed.completion_tokens, streamed.error) == (True, 4, 3, None)
    assert streamed.time_to_first_byte is not None
    assert faulted.error == "mid_stream" and faulted.completion_tokens >= 1


async def test_a_bug_mid_stream_ends_it_with_a_generic_response_failed(
    start: Start, fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(state: object, data: bytes) -> bytes:
        raise RuntimeError("/secret/path/to/proxy.py exploded")

    monkeypatch.setattr("proxy.handlers.openai.responses.frames_for_read", broken)
    _, url = await start()
    body = {"model": "llama3.2", "input": "hi", "stream": True}
    async with aiohttp.ClientSession() as session, session.post(url + "/v1/responses", json=body) as response:
        assert response.status == 200
        raw = await response.read()
    events = [json.loads(block.split(b"\ndata: ", 1)[1]) for block in raw.split(b"\n\n") if block]
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.failed"]
    error = events[-1]["response"]["error"]
    assert "internal error" in error["message"] and response.headers["X-Request-Id"] in error["message"]
    assert b"secret" not in raw and b"Traceback" not in raw
    assert "exploded" in caplog.text


SEAL_KEY = {"responses": {"reasoning_key": "a-test-secret-of-at-least-32-characters"}}


async def test_stateless_reasoning_round_trip_with_include(start: Start, fake_ollama: FakeOllama) -> None:
    sdk, _ = await start(toml=SEAL_KEY, key="alice")
    fake_ollama.push(Reply(content="Four.", thinking="2+2 is 4"), Reply(content="Yes."))
    async with sdk.responses.stream(model="qwen3:8b", input="2+2?", store=False,
                                    include=["reasoning.encrypted_content"]) as stream:
        first = await stream.get_final_response()
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    await sdk.responses.create(model="qwen3:8b", store=False, include=["reasoning.encrypted_content"], input=[
        {"role": "user", "content": "2+2?"},
        {"type": "reasoning", "id": reasoning.id, "summary": [], "encrypted_content": reasoning.encrypted_content},
        first.output[1].model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "user", "content": "Sure?"},
    ])
    assert chat_bodies(fake_ollama)[-1]["messages"][1] == {
        "role": "assistant", "content": "Four.", "thinking": "2+2 is 4"}


async def test_item_references_resolve_to_the_callers_stored_items(start: Start, fake_ollama: FakeOllama) -> None:
    records = MemoryResponseRecords()
    sdk, _ = await start(records, key="alice")
    other, _ = await start(records, key="bob")
    fake_ollama.push(Reply(content="", thinking="need weather", tool_calls=[ToolCall("get_weather", {"city": "Rome"})]),
                     Reply(content="Warm."))
    first = await sdk.responses.create(model="qwen3:8b", input="Weather in Rome?", tools=[WEATHER])  # type: ignore[list-item]
    reasoning, call = first.output
    (asked,) = (await sdk.responses.input_items.list(first.id)).data
    # Codex and the Vercel AI SDK resend the conversation, naming stored items by id.
    conversation: Any = [
        {"type": "item_reference", "id": asked.id},
        {"type": "item_reference", "id": reasoning.id},
        {"type": "item_reference", "id": call.id},
        {"type": "function_call_output", "call_id": call.call_id, "output": "28C"},  # type: ignore[union-attr]
    ]
    await sdk.responses.create(model="qwen3:8b", tools=[WEATHER], input=conversation)  # type: ignore[list-item]
    assert chat_bodies(fake_ollama)[-1]["messages"] == [
        {"role": "user", "content": "Weather in Rome?"},
        {"role": "assistant", "content": "", "thinking": "need weather", "tool_calls": [
            {"id": call.call_id, "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]},  # type: ignore[union-attr]
        {"role": "tool", "content": "28C", "tool_name": "get_weather", "tool_call_id": call.call_id},  # type: ignore[union-attr]
    ]
    for client, item_id in ((sdk, "msg_" + "0" * 24 + "1"), (sdk, "msg_nothere"), (other, call.id)):
        with pytest.raises(openai.NotFoundError) as info:
            await client.responses.create(model="qwen3:8b", input=[{"type": "item_reference", "id": item_id}])
        assert isinstance(info.value.body, dict) and info.value.body["param"] == "input[0].id"


async def test_stored_routes_refuse_bad_ids_and_paging(start: Start) -> None:
    records = MemoryResponseRecords()
    sdk, url = await start(records)
    created = await sdk.responses.create(model="llama3.2", input="hi")
    base = f"/v1/responses/{created.id}"
    for path, status, param in [
        ("/v1/responses/" + "x" * 300, 404, "response_id"),
        ("/v1/responses/resp_%00%0a", 404, "response_id"),
        (base + "/input_items?limit=0", 400, "limit"),
        (base + "/input_items?limit=many", 400, "limit"),
        (base + "/input_items?order=up", 400, "order"),
        (base + "/input_items?after=msg_nope", 400, "after"),
        (base + "?stream=true", 400, "stream"),
        (base + "?include=file_search_call.results", 400, "include"),
    ]:
        status_got, body = await raw_json(url, "GET", path)
        assert (status_got, body["error"]["param"]) == (status, param), path
        assert len(body["error"]["message"]) < 400
    status_got, body = await raw_json(url, "DELETE", base)
    assert status_got == 200 and body == {"id": created.id, "object": "response", "deleted": True}
    status_got, _ = await raw_json(url, "DELETE", base)
    assert status_got == 404
