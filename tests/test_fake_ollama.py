"""Self-test of the Ollama stand-in: the proxy's tests are only as good as its fidelity."""

from __future__ import annotations

import asyncio
import datetime
import enum
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import aiohttp
import orjson
import pytest
from pydantic import BaseModel, Field

from tests.fake_ollama import FakeOllama, Reply, ToolCall, schema_instance

CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
GEN = {"model": "llama3.2", "prompt": "hi"}
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
FINAL_KEYS = {"total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
              "eval_count", "eval_duration"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    server = FakeOllama()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def post_lines(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[
        aiohttp.ClientResponse, list[bytes]]:
    """Raw NDJSON lines of a streamed answer."""
    async with http.post(url, json=body) as resp:
        raw = await resp.read()
    return resp, raw.splitlines(keepends=True)


async def test_chat_stream_shape(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    resp, lines = await post_lines(http, fake.url + "/api/chat", CHAT)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    assert all(line.endswith(b"\n") for line in lines)
    objs = [orjson.loads(line) for line in lines]
    *parts, final = objs
    assert "".join(o["message"]["content"] for o in parts) == "Hello from the stand-in."
    for o in parts:
        assert list(o) == ["model", "created_at", "message", "done"]
        assert o["model"] == "llama3.2" and o["done"] is False
        assert o["message"]["role"] == "assistant" and "thinking" not in o["message"]
        assert RFC3339_NANO.match(o["created_at"])
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["message"] == {"role": "assistant", "content": ""}
    assert FINAL_KEYS <= set(final) and final["eval_count"] == len(parts)
    assert fake.counts["/api/chat"] == 1 and fake.requests[-1] == ("/api/chat", CHAT)
    assert fake.open_streams == 0


async def test_chat_non_stream_and_thinking(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    fake.push(Reply(content="Four.", thinking="2+2 is 4"), Reply(thinking="hidden"))
    async with http.post(fake.url + "/api/chat", json={**CHAT, "model": "qwen3:8b",
                                                       "stream": False}) as resp:
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        body = await resp.json()
    assert body["message"] == {"role": "assistant", "content": "Four.", "thinking": "2+2 is 4"}
    assert body["done"] is True and FINAL_KEYS <= set(body)
    _, lines = await post_lines(http, fake.url + "/api/chat",
                                {**CHAT, "model": "qwen3:8b", "think": False})
    assert all("thinking" not in orjson.loads(x)["message"] for x in lines)


async def test_thinking_lines_come_first(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    fake.push(Reply(content="ok", thinking="a b"))
    _, lines = await post_lines(http, fake.url + "/api/chat", {**CHAT, "model": "qwen3:8b"})
    msgs = [orjson.loads(x)["message"] for x in lines]
    assert [m.get("thinking") for m in msgs] == ["a ", "b", None, None]
    assert [m["content"] for m in msgs] == ["", "", "ok", ""]


async def test_num_predict_cuts_off(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    fake.push(Reply(chunks=["a", "b", "c", "d"]))
    body = {**CHAT, "options": {"num_predict": 2}}
    _, lines = await post_lines(http, fake.url + "/api/chat", body)
    objs = [orjson.loads(x) for x in lines]
    assert [o["message"]["content"] for o in objs] == ["a", "b", ""]
    assert objs[-1]["done_reason"] == "length" and objs[-1]["eval_count"] == 2


async def test_tool_call_line(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    fake.push(Reply(content="", tool_calls=[ToolCall("get_weather", {"city": "Tokyo"}),
                                            ToolCall("f", {}, id="call_fixed")]))
    _, lines = await post_lines(http, fake.url + "/api/chat", CHAT)
    tool_line, final = (orjson.loads(x) for x in lines)
    calls = tool_line["message"]["tool_calls"]
    assert tool_line["message"]["content"] == "" and tool_line["done"] is False
    assert re.fullmatch(r"call_[0-9a-f]{8}", calls[0]["id"]) and calls[1]["id"] == "call_fixed"
    assert calls[0]["function"] == {"index": 0, "name": "get_weather",
                                    "arguments": {"city": "Tokyo"}}
    assert calls[1]["function"]["index"] == 1 and final["done"] is True


async def test_logprobs(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    fake.push(Reply(chunks=["é"]))
    _, lines = await post_lines(http, fake.url + "/api/chat",
                                {**CHAT, "logprobs": True, "top_logprobs": 2})
    first, final = (orjson.loads(x) for x in lines)
    (lp,) = first["logprobs"]
    assert lp["token"] == "é" and lp["bytes"] == [195, 169] and isinstance(lp["logprob"], float)
    assert lp["top_logprobs"][0]["token"] == "é" and len(lp["top_logprobs"]) == 2
    assert "logprobs" not in final


async def test_generate_stream_and_non_stream(fake: FakeOllama,
                                              http: aiohttp.ClientSession) -> None:
    fake.push(Reply(chunks=["x", "y"], thinking="t"), Reply(content="whole"))
    _, lines = await post_lines(http, fake.url + "/api/generate", {**GEN, "model": "qwen3:8b"})
    objs = [orjson.loads(x) for x in lines]
    assert objs[0]["thinking"] == "t" and objs[0]["response"] == ""
    assert [o["response"] for o in objs[1:]] == ["x", "y", ""]
    assert list(objs[1]) == ["model", "created_at", "response", "done"]
    assert objs[-1]["done_reason"] == "stop" and FINAL_KEYS <= set(objs[-1])
    async with http.post(fake.url + "/api/generate", json={**GEN, "stream": False}) as resp:
        body = await resp.json()
    assert body["response"] == "whole" and body["done"] is True and "context" in body


async def test_errors_and_validation(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    async def call(path: str, data: bytes) -> tuple[int, Any]:
        async with http.post(fake.url + path, data=data) as resp:
            return resp.status, await resp.json()

    assert await call("/api/chat", orjson.dumps({**CHAT, "model": "nope"})) == (
        404, {"error": "model 'nope' not found"})
    assert await call("/api/chat", b'{"messages": []}') == (400, {"error": "model is required"})
    assert await call("/api/generate", b"{}") == (404, {"error": "model '' not found"})
    status, body = await call("/api/chat", b"{nope")
    assert status == 400 and body["error"].startswith("invalid character")
    assert await call("/api/chat", b"") == (400, {"error": "missing request body"})
    assert await call("/api/show", b'{"model": "nope"}') == (
        404, {"error": "model 'nope:latest' not found"})
    assert (await call("/api/chat", orjson.dumps({**CHAT, "think": True})))[0] == 400
    status, body = await call("/api/chat", orjson.dumps({**CHAT, "model": "nomic-embed-text",
                                                         "tools": [{"type": "function"}]}))
    assert (status, body) == (400, {"error": '"nomic-embed-text" does not support chat'})


async def test_status_error_and_html(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    busy = "server busy, please try again.  maximum pending requests exceeded"
    fake.push(Reply(status=503, error=busy), Reply(status=502, html_error=True))
    async with http.post(fake.url + "/api/chat", json=CHAT) as resp:
        assert (resp.status, await resp.json()) == (503, {"error": busy})
    async with http.post(fake.url + "/api/chat", json=CHAT) as resp:
        assert resp.status == 502 and resp.content_type == "text/html"
        assert "<html>" in await resp.text()


async def test_error_after_lines(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    fake.push(Reply(chunks=["a", "b", "c"], error_after_lines=2, error="boom"),
              Reply(error_after_lines=0))
    resp, lines = await post_lines(http, fake.url + "/api/chat", CHAT)
    assert resp.status == 200 and [orjson.loads(x) for x in lines][2:] == [{"error": "boom"}]
    assert len(lines) == 3
    async with http.post(fake.url + "/api/chat", json=CHAT) as resp:  # before any line: a status
        assert resp.status == 500
        assert await resp.json() == {"error": "an error was encountered while running the model"}


async def test_garbage_and_huge_line(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    fake.push(Reply(chunks=["a", "b"], garbage_after_lines=1, huge_line_bytes=200_000))
    _, lines = await post_lines(http, fake.url + "/api/chat", CHAT)
    assert lines[1] == b"this is not json\n" and len(lines) == 5
    assert orjson.loads(lines[0])["message"]["content"] == "x" * 200_000
    assert orjson.loads(lines[-1])["done"] is True


async def test_die_after_lines(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    fake.push(Reply(chunks=["a", "b", "c"], die_after_lines=2))
    got: list[bytes] = []
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(fake.url + "/api/chat", json=CHAT) as resp:
            async for line in resp.content:
                got.append(line)
    assert [orjson.loads(x)["message"]["content"] for x in got] == ["a", "b"]
    assert fake.client_disconnects == 0 and not fake.stream_closed.is_set()


async def test_hang_then_client_disconnect(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    fake.push(Reply(hang=True))
    resp = await http.post(fake.url + "/api/chat", json=CHAT)
    first = await resp.content.readline()
    assert orjson.loads(first)["done"] is False and fake.open_streams == 1
    resp.close()
    await asyncio.wait_for(fake.stream_closed.wait(), 5)
    assert fake.client_disconnects == 1 and fake.open_streams == 0


async def test_hang_before_headers_disconnect(fake: FakeOllama,
                                              http: aiohttp.ClientSession) -> None:
    fake.push(Reply(hang_before_headers=True))
    task = asyncio.create_task(http.post(fake.url + "/api/generate", json=GEN))
    await asyncio.wait_for(fake.stream_started.wait(), 5)
    task.cancel()
    await asyncio.wait_for(fake.stream_closed.wait(), 5)
    assert fake.client_disconnects == 1
    fake.reset_events()
    assert not fake.stream_closed.is_set()


async def test_delays(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    fake.push(Reply(chunks=["a", "b"], first_byte_delay=0.05, line_delay=0.02))
    loop = asyncio.get_running_loop()
    start = loop.time()
    _, lines = await post_lines(http, fake.url + "/api/chat", CHAT)
    assert len(lines) == 3 and loop.time() - start >= 0.09


async def test_metadata_endpoints(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    async with http.get(fake.url + "/api/version") as resp:
        assert await resp.json() == {"version": "0.12.6"}
    fake.set_digest("llama3.2", "ab" * 32)
    async with http.get(fake.url + "/api/tags") as resp:
        models = (await resp.json())["models"]
    assert [m["name"] for m in models] == ["llama3.2:latest", "qwen3:8b", "hf.co/org/repo:Q4_K_M",
                                           "nomic-embed-text:latest"]
    assert models[0]["digest"] == "ab" * 32 and len(models[1]["digest"]) == 64
    assert models[0]["details"]["quantization_level"] == "Q4_K_M"
    caps: dict[str, list[str]] = {}
    for name in ("llama3.2", "qwen3:8b", "hf.co/org/repo:Q4_K_M", "nomic-embed-text"):
        async with http.post(fake.url + "/api/show", json={"model": name}) as resp:
            show = await resp.json()
            caps[name] = show["capabilities"]
    assert caps == {"llama3.2": ["completion", "tools"],
                    "qwen3:8b": ["completion", "tools", "thinking"],
                    "hf.co/org/repo:Q4_K_M": ["completion", "vision"],
                    "nomic-embed-text": ["embedding"]}
    async with http.post(fake.url + "/api/show", json={"model": "llama3.2"}) as resp:
        info = (await resp.json())["model_info"]
    assert info["llama.context_length"] == 131072 and info["general.architecture"] == "llama"
    async with http.get(fake.url + "/api/ps") as resp:
        assert (await resp.json())["models"] == []


async def test_embed(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    body = {"model": "nomic-embed-text", "input": ["a", "b"]}
    async with http.post(fake.url + "/api/embed", json=body) as resp:
        out = await resp.json()
    async with http.post(fake.url + "/api/embed", json={**body, "input": "a",
                                                         "dimensions": 4}) as resp:
        short = await resp.json()
    assert out["model"] == "nomic-embed-text" and len(out["embeddings"]) == 2
    first, second = out["embeddings"]
    assert len(first) == len(second) == 8 and first != second
    assert abs(sum(x * x for x in first) - 1) < 1e-5  # unit length, as Ollama normalizes
    assert len(short["embeddings"][0]) == 4 and out["prompt_eval_count"] == 2
    async with http.get(fake.url + "/api/ps") as resp:
        assert [m["name"] for m in (await resp.json())["models"]] == ["nomic-embed-text:latest"]


async def test_stop_start_same_port(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    url = fake.url
    await fake.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(url + "/api/version"):
            pass
    assert await fake.start() == url
    async with http.get(url + "/api/version") as resp:
        assert resp.status == 200


async def test_one_line_per_http_chunk(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    fake.push(Reply(chunks=["a", "b", "c"], line_delay=0.01))
    chunks: list[bytes] = []
    async with http.post(fake.url + "/api/chat", json=CHAT) as resp:
        buf = b""
        async for data, end_of_chunk in resp.content.iter_chunks():
            buf += data
            if end_of_chunk:
                chunks.append(buf)
                buf = b""
    assert len(chunks) == 4 and all(c.count(b"\n") == 1 and c.endswith(b"\n") for c in chunks)


async def test_disconnect_mid_stream(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    fake.push(Reply(chunks=["a"] * 50, line_delay=0.01))
    resp = await http.post(fake.url + "/api/generate", json=GEN)
    await resp.content.readline()
    resp.close()
    await asyncio.wait_for(fake.stream_closed.wait(), 5)
    assert fake.client_disconnects == 1 and fake.open_streams == 0


async def test_stop_drops_hanging_stream(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    fake.push(Reply(hang=True))
    resp = await http.post(fake.url + "/api/chat", json=CHAT)
    await resp.content.readline()
    await asyncio.wait_for(fake.stop(), 2)
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    assert fake.client_disconnects == 0 and fake.open_streams == 0
    await fake.start()


async def test_root_and_unknown_route(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    async with http.get(fake.url + "/") as resp:
        assert await resp.text() == "Ollama is running"
    async with http.get(fake.url + "/v2/nothing") as resp:
        assert (resp.status, await resp.text()) == (404, "404 page not found")
    fake.push(Reply(html_error=True))
    async with http.post(fake.url + "/api/generate", json=GEN) as resp:
        assert resp.status == 502


# ---- format: constrained decoding -------------------------------------------------------------


class _Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class _Tag(BaseModel):
    label: Annotated[str, Field(min_length=3, max_length=5)]


class _Shape(BaseModel):
    """Most of what pydantic emits: nested models ($defs/$ref), enums, Literal, optionals,
    unions, bounded numbers, lists with bounds, dicts, dates."""

    name: str
    count: Annotated[int, Field(ge=10, le=20)]
    ratio: Annotated[float, Field(gt=0, lt=1)]
    flag: bool
    colour: _Colour
    kind: Literal["a", "b"]
    tags: Annotated[list[_Tag], Field(min_length=2, max_length=3)]
    maybe: _Tag | None = None
    either: int | str
    when: datetime.date
    pair: tuple[int, str]
    extra: dict[str, int]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_schema_instance_validates_against_the_pydantic_model(seed: int) -> None:
    value = schema_instance(_Shape.model_json_schema(), seed=seed)
    _Shape.model_validate(value)  # raises if the stand-in ever produced schema-invalid JSON


async def test_a_schema_format_is_decoded_and_streamed_in_pieces(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    schema = _Shape.model_json_schema()
    _, lines = await post_lines(http, fake.url + "/api/chat", {**CHAT, "format": schema})
    parts = [orjson.loads(line)["message"]["content"] for line in lines[:-1]]
    assert len(parts) > 5
    _Shape.model_validate_json("".join(parts))
    fake.push(Reply(content="not json", ignore_format=True))
    async with http.post(fake.url + "/api/chat", json={**CHAT, "format": schema, "stream": False}) as r:
        assert (await r.json())["message"]["content"] == "not json"


async def test_format_json_leaves_the_reply_as_scripted(fake: FakeOllama, http: aiohttp.ClientSession) -> None:
    fake.push(Reply(content='{"a": 1}'))
    async with http.post(fake.url + "/api/chat", json={**CHAT, "format": "json", "stream": False}) as r:
        assert (await r.json())["message"]["content"] == '{"a": 1}'
