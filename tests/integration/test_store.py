"""The store end to end: stored chat completions through the official SDK, the Usage API,
key scoping, and the store off; each against SQLite and PostgreSQL (``store_url``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from proxy.app import create_app
from proxy.appkeys import STORE, STORE_SERVICE
from proxy.caller import CALLER, Caller
from tests.conftest import make_config
from tests.fake_ollama import FakeOllama, Reply, ToolCall

USER = [{"role": "user", "content": "hi"}]
Start = Callable[..., Awaitable[tuple[str, web.Application]]]


@web.middleware
async def fake_keys(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stands in for the access layer: ``X-Test-Key`` / ``X-Test-Role`` name the caller."""
    key = request.headers.get("X-Test-Key")
    if key:
        request[CALLER] = Caller(key, "admin" if request.headers.get("X-Test-Role") == "admin" else "user", True)
    return await handler(request)


@pytest.fixture
async def start(fake_ollama: FakeOllama, store_url: str) -> AsyncIterator[Start]:
    servers: list[TestServer] = []

    async def run(store: dict[str, Any] | None = None, **toml: Any) -> tuple[str, web.Application]:
        config = make_config(fake_ollama.url, {"store": {"enabled": True, "url": store_url, **(store or {})}, **toml})
        app = create_app(config)
        app.middlewares.append(fake_keys)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}", app

    yield run
    for server in servers:
        await server.close()


def sdk(url: str, key: str | None = None, role: str = "user") -> openai.AsyncOpenAI:
    headers = {"X-Test-Key": key, "X-Test-Role": role} if key else {}
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, default_headers=headers)


async def test_a_stored_completion_through_the_sdk(start: Start, fake_ollama: FakeOllama) -> None:
    url, _ = await start()
    fake_ollama.push(Reply(content="Hello there.", prompt_eval_count=5, eval_count=3))
    async with sdk(url) as client:
        made = await client.chat.completions.create(model="llama3.2", messages=USER, store=True,  # type: ignore[arg-type]
                                                    metadata={"topic": "greeting"})
        got = await client.chat.completions.retrieve(made.id)
        assert got.model_dump(exclude={"metadata"}) == made.model_dump(exclude={"metadata"})
        assert got.metadata == {"topic": "greeting"}
        assert got.choices[0].message.content == "Hello there." and got.usage is not None
        assert got.usage.completion_tokens == 3
        messages = await client.chat.completions.messages.list(made.id)
        assert [(m.id, m.role, m.content) for m in messages.data] == [(f"{made.id}-0", "user", "hi")]
        page = await client.chat.completions.list(metadata={"topic": "greeting"})
        assert [c.id for c in page.data] == [made.id]
        assert (await client.chat.completions.list(metadata={"topic": "other"})).data == []
        updated = await client.chat.completions.update(made.id, metadata={"topic": "changed"})
        assert updated.metadata == {"topic": "changed"} and updated.id == made.id
        assert [c.id async for c in client.chat.completions.list(metadata={"topic": "greeting"})] == []
        gone = await client.chat.completions.delete(made.id)
        assert (gone.id, gone.deleted, gone.object) == (made.id, True, "chat.completion.deleted")
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.retrieve(made.id)
    sent = fake_ollama.requests[-1][1]
    assert "store" not in sent and "metadata" not in sent


async def test_a_streamed_answer_is_stored_whole(start: Start, fake_ollama: FakeOllama) -> None:
    url, _ = await start()
    fake_ollama.push(Reply(chunks=["Hel", "lo", " you"], thinking="hmm",
                           tool_calls=[ToolCall("get_weather", {"city": "Paris"})], prompt_eval_count=4))
    async with sdk(url) as client:
        stream = await client.chat.completions.create(model="llama3.2", messages=USER, stream=True, store=True)
        chunks = [c async for c in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or ()]
        stored = await client.chat.completions.retrieve(chunks[0].id)
    message = stored.choices[0].message
    assert message.content == text == "Hello you"
    assert message.tool_calls is not None and [(t.id, t.function.name, t.function.arguments) for t in message.tool_calls] \
        == [(calls[0].id, "get_weather", '{"city":"Paris"}')]
    assert stored.choices[0].finish_reason == "tool_calls"
    assert stored.usage is not None and stored.usage.prompt_tokens == 4
    assert stored.created == chunks[0].created


async def test_a_stream_cut_short_is_not_stored(start: Start, fake_ollama: FakeOllama) -> None:
    url, app = await start()
    fake_ollama.push(Reply(chunks=["a", "b", "c"], error_after_lines=2, error="boom"))
    async with sdk(url) as client:
        with pytest.raises(openai.APIError):
            async for _ in await client.chat.completions.create(model="llama3.2", messages=USER, stream=True,
                                                                store=True):
                pass
        assert (await client.chat.completions.list()).data == []
    await app[STORE_SERVICE].flush()
    [row] = await app[STORE_SERVICE].store.usage(0, 2**40)
    assert (row.requests, row.errors) == (1, 1)  # counted all the same


async def test_without_store_nothing_is_kept_and_always_keeps_everything(start: Start, fake_ollama: FakeOllama) -> None:
    url, _ = await start()
    async with sdk(url) as client:
        await client.chat.completions.create(model="llama3.2", messages=USER)
        assert (await client.chat.completions.list()).data == []
    url, _ = await start({"chat_completions": "always"})
    async with sdk(url) as client:
        made = await client.chat.completions.create(model="llama3.2", messages=USER, store=False)
        assert [c.id for c in (await client.chat.completions.list()).data] == [made.id]


async def test_never_refuses_store_true(start: Start) -> None:
    url, _ = await start({"chat_completions": "never"})
    async with sdk(url) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="llama3.2", messages=USER, store=True)
    assert caught.value.param == "store"  # type: ignore[attr-defined]


async def test_a_key_sees_and_deletes_only_its_own(start: Start) -> None:
    url, _ = await start()
    async with sdk(url, "alice") as alice, sdk(url, "bob") as bob:
        mine = await alice.chat.completions.create(model="llama3.2", messages=USER, store=True)
        for call in (bob.chat.completions.retrieve(mine.id), bob.chat.completions.messages.list(mine.id),
                     bob.chat.completions.update(mine.id, metadata={"a": "b"}), bob.chat.completions.delete(mine.id)):
            with pytest.raises(openai.NotFoundError):
                await call
        assert (await bob.chat.completions.list()).data == []
        assert [c.id for c in (await alice.chat.completions.list()).data] == [mine.id]


async def test_list_pages_like_openai(start: Start) -> None:
    url, _ = await start()
    async with sdk(url) as client:
        made = [await client.chat.completions.create(model="llama3.2", messages=USER, store=True) for _ in range(3)]
        first = await client.chat.completions.list(limit=2)
        assert len(first.data) == 2 and first.has_more
        everything = [c.id async for c in client.chat.completions.list(limit=2)]  # the SDK follows `after`
        assert sorted(everything) == sorted(c.id for c in made) and len(everything) == 3
        newest = await client.chat.completions.list(order="desc", limit=1)
        assert newest.data[0].id == everything[-1]
    async with aiohttp.ClientSession() as http, http.get(url + "/v1/chat/completions?limit=1") as resp:
        body = await resp.json()
    assert set(body) == {"object", "data", "first_id", "last_id", "has_more"}
    assert body["object"] == "list" and body["first_id"] == body["last_id"] == body["data"][0]["id"]


@pytest.mark.parametrize("query, param", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("order=up", "order"),
], ids=["limit 0", "limit over 100", "unknown order"])
async def test_bad_list_parameters_are_400s(start: Start, query: str, param: str) -> None:
    url, _ = await start()
    async with aiohttp.ClientSession() as http, http.get(f"{url}/v1/chat/completions?{query}") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == param


async def test_bad_metadata_update_is_a_400(start: Start) -> None:
    url, _ = await start()
    async with sdk(url) as client:
        made = await client.chat.completions.create(model="llama3.2", messages=USER, store=True)
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.update(made.id, metadata={f"k{i}": "v" for i in range(17)})


# ---- usage ---------------------------------------------------------------------------------


async def usage(url: str, path: str, query: str, key: str | None = None, role: str = "user") -> tuple[int, Any]:
    headers = {"X-Test-Key": key, "X-Test-Role": role} if key else {}
    async with aiohttp.ClientSession() as http, http.get(
            f"{url}/v1/organization/usage/{path}?{query}", headers=headers) as resp:
        return resp.status, await resp.json()


async def test_usage_api_counts_per_key_and_model(start: Start, fake_ollama: FakeOllama) -> None:
    url, _ = await start()
    day = int(time.time()) // 86400 * 86400
    async with sdk(url, "alice") as alice, sdk(url, "bob") as bob:
        fake_ollama.push(Reply(prompt_eval_count=5, eval_count=7), Reply(prompt_eval_count=1, eval_count=2))
        await alice.chat.completions.create(model="llama3.2", messages=USER)
        await bob.chat.completions.create(model="llama3.2", messages=USER)
        await alice.embeddings.create(model="nomic-embed-text", input="hello")
    status, page = await usage(url, "completions", f"start_time={day}&group_by=api_key_id&group_by=model",
                               "root", "admin")
    assert status == 200 and page["object"] == "page" and page["has_more"] is False
    [bucket] = page["data"]
    assert (bucket["object"], bucket["start_time"], bucket["end_time"]) == ("bucket", day, day + 86400)
    got = {(r["api_key_id"], r["model"]): (r["input_tokens"], r["output_tokens"], r["num_model_requests"])
           for r in bucket["results"]}
    assert got == {("alice", "llama3.2"): (5, 7, 1), ("bob", "llama3.2"): (1, 2, 1)}
    # a user key sees only its own, whatever it asks
    status, page = await usage(url, "completions", f"start_time={day}&group_by=api_key_id", "bob")
    assert [(r["api_key_id"], r["input_tokens"]) for r in page["data"][0]["results"]] == [("bob", 1)]
    status, page = await usage(url, "embeddings", f"start_time={day}", "alice")
    [result] = page["data"][0]["results"]
    assert result["object"] == "organization.usage.embeddings.result" and result["num_model_requests"] == 1


async def test_usage_api_pages_hourly_buckets(start: Start) -> None:
    url, _ = await start()
    now = int(time.time())
    status, page = await usage(url, "completions", f"start_time={now - 3 * 3600}&bucket_width=1h&limit=2")
    assert status == 200 and len(page["data"]) == 2 and page["has_more"]
    status, rest = await usage(url, "completions",
                               f"start_time={now - 3 * 3600}&bucket_width=1h&limit=2&page={page['next_page']}")
    assert rest["data"][0]["start_time"] == page["data"][-1]["end_time"]


@pytest.mark.parametrize("query, param", [
    ("", "start_time"), ("start_time=x", "start_time"), ("start_time=100&end_time=50", "end_time"),
    ("start_time=100&bucket_width=1m", "bucket_width"), ("start_time=100&group_by=project_id", "group_by"),
    ("start_time=100&limit=32", "limit"), ("start_time=100&project_ids=p", "project_ids"),
    ("start_time=100&page=nonsense", "page"),
], ids=["start_time missing", "start_time not a number", "end before start", "1m buckets",
        "unknown group_by", "limit over 31 days", "project filter", "foreign page cursor"])
async def test_bad_usage_queries_are_400s(start: Start, query: str, param: str) -> None:
    url, _ = await start()
    status, body = await usage(url, "completions", query)
    assert status == 400 and body["error"]["param"] == param


async def test_readyz_reports_the_store(start: Start) -> None:
    url, _ = await start()
    async with aiohttp.ClientSession() as http, http.get(url + "/readyz") as resp:
        body = await resp.json()
    assert body["store"] == {"ok": True, "pending_usage_rows": 0, "pending_completions": 0, "dropped": 0,
                             "last_error": None}


async def test_with_the_store_off_nothing_changes_and_no_file_is_made(
        proxy_factory: Callable[..., Awaitable[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = await proxy_factory()
    async with sdk(url) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="llama3.2", messages=USER, store=True)
        assert caught.value.param == "store"  # type: ignore[attr-defined]
        await client.chat.completions.create(model="llama3.2", messages=USER, store=False)
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/v1/chat/completions") as resp:
            assert resp.status == 405  # only POST, as before
        async with http.get(url + "/v1/organization/usage/completions?start_time=0") as resp:
            assert resp.status == 404
        async with http.get(url + "/readyz") as resp:
            assert "store" not in await resp.json()
    assert list(tmp_path.iterdir()) == []


async def test_the_app_exposes_the_store_for_stored_responses(start: Start) -> None:
    """What the Responses API uses: ``app[STORE]``, written at once, read per key."""
    _, app = await start()
    store = app[STORE]
    await store.put_response("resp_1", "anonymous", 1, {"id": "resp_1", "status": "completed"})
    assert await store.get_response("resp_1", "anonymous") == {"id": "resp_1", "status": "completed"}
    assert await store.get_response("resp_1", "other") is None
    assert await store.delete_response("resp_1", "anonymous")


async def test_an_unreachable_store_is_a_503_in_openais_envelope(start: Start) -> None:
    url, app = await start()
    await app[STORE].close()  # the database goes away under the running proxy
    async with sdk(url) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.list()
        made = await client.chat.completions.create(model="llama3.2", messages=USER)  # answering goes on
    assert caught.value.status_code == 503 and made.choices[0].message.content
    assert caught.value.body["code"] == "store_unavailable"  # type: ignore[index]
    assert not await app[STORE_SERVICE].flush()  # the next write fails: the row is kept
    async with aiohttp.ClientSession() as http, http.get(url + "/readyz") as resp:
        store = (await resp.json())["store"]
    assert store["ok"] is False and store["pending_usage_rows"] == 1


async def test_camel_keys_leave_the_clients_metadata_alone(start: Start) -> None:
    url, _ = await start(response={"keys": "camel"})
    async with sdk(url) as client:
        made = await client.chat.completions.create(model="llama3.2", messages=USER, store=True,
                                                    metadata={"user_name": "ann"})
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/v1/chat/completions/{made.id}") as resp:
            one = await resp.json()
        async with http.get(f"{url}/v1/chat/completions") as resp:
            page = await resp.json()
    assert one["metadata"] == {"user_name": "ann"} and "finishReason" in one["choices"][0]
    assert page["firstId"] == made.id and page["data"][0]["metadata"] == {"user_name": "ann"}


# ---- the Responses API on the store ------------------------------------------------------------


async def test_responses_chain_on_the_store_and_stay_per_key(start: Start, fake_ollama: FakeOllama) -> None:
    """``[store] enabled`` gives /v1/responses its records: a stream's response chains at once,
    retrieve/input_items/delete read the database, and another key's id is a 404."""
    url, _ = await start()
    fake_ollama.push(Reply(content="Hi Ann."), Reply(content="Your name is Ann."))
    async with sdk(url, "alice") as alice, sdk(url, "bob") as bob:
        async with alice.responses.stream(model="llama3.2", input="I am Ann.") as stream:
            first = await stream.get_final_response()
        second = await alice.responses.create(model="llama3.2", input="Who am I?", previous_response_id=first.id)
        assert second.output_text == "Your name is Ann."
        chats = [body for path, body in fake_ollama.requests if path == "/api/chat"]
        assert chats[-1]["messages"] == [
            {"role": "user", "content": "I am Ann."},
            {"role": "assistant", "content": "Hi Ann."},
            {"role": "user", "content": "Who am I?"},
        ]
        assert (await alice.responses.retrieve(second.id)).output_text == "Your name is Ann."
        items = await alice.responses.input_items.list(second.id)
        assert [item.type for item in items.data] == ["message"]
        with pytest.raises(openai.NotFoundError):
            await bob.responses.retrieve(second.id)
        with pytest.raises(openai.NotFoundError):
            await bob.responses.create(model="llama3.2", input="x", previous_response_id=second.id)
        await alice.responses.delete(second.id)
        with pytest.raises(openai.NotFoundError):
            await alice.responses.retrieve(second.id)


async def test_responses_store_never_keeps_nothing(start: Start, fake_ollama: FakeOllama) -> None:
    url, _ = await start({"responses": "never"})
    fake_ollama.push(Reply(content="Hi."))
    async with sdk(url, "alice") as alice:
        created = await alice.responses.create(model="llama3.2", input="hello")
        assert created.store is False
        with pytest.raises(openai.NotFoundError):
            await alice.responses.retrieve(created.id)
