"""Hundreds of concurrent streams through the real proxy to the stand-in Ollama: every client
gets every chunk of its own answer, in order, then ``[DONE]`` (nothing lost, duplicated or
interleaved); and hundreds of clients walking away mid-stream leave nothing behind: no upstream
connection held, no stream open at Ollama, no admission slot taken, no client socket or task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.app import create_app
from proxy.appkeys import ADMISSION, CLIENT
from tests.conftest import make_config
from tests.fake_ollama import FakeOllama, Reply

STREAMS = 300
CHUNKS = 20
DISCONNECTS = 200
BOUND = 30.0  # seconds: a hang guard for the whole exchange, not a speed claim

Start = Callable[..., Awaitable[tuple[str, web.Application, TestServer]]]


@pytest.fixture
async def start_proxy(fake_ollama: FakeOllama) -> AsyncIterator[Start]:
    servers: list[TestServer] = []

    async def start(toml: dict[str, Any] | None = None) -> tuple[str, web.Application, TestServer]:
        app = create_app(make_config(fake_ollama.url, toml))
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}", app, server

    yield start
    for server in servers:
        await server.close()


async def until(condition: Callable[[], bool], timeout: float = BOUND) -> None:
    """Wait for a condition no event signals (counts at the far end of a socket close)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def body() -> dict[str, Any]:
    return {"model": "llama3.2", "messages": [{"role": "user", "content": "go"}], "stream": True}


async def read_stream(session: aiohttp.ClientSession, url: str) -> list[Any]:
    async with session.post(url + "/v1/chat/completions", json=body()) as response:
        assert response.status == 200
        raw = await response.read()
    return [e[6:] if e[6:] == b"[DONE]" else orjson.loads(e[6:]) for e in raw.split(b"\n\n") if e]


async def test_hundreds_of_concurrent_streams_each_arrive_whole_and_in_order(
    start_proxy: Start, fake_ollama: FakeOllama
) -> None:
    url, app, _ = await start_proxy({"admission": {"max_concurrent": 0}})
    answers = {i: [f"s{i}.{k} " for k in range(CHUNKS)] for i in range(STREAMS)}
    fake_ollama.push(*(Reply(chunks=chunks) for chunks in answers.values()))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(BOUND):
        streams = await asyncio.gather(*(read_stream(session, url) for _ in range(STREAMS)))
    seen = set()
    for events in streams:
        assert events[-1] == b"[DONE]"
        chunks = events[:-1]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        assert len({c["id"] for c in chunks}) == 1
        contents = [c["choices"][0]["delta"].get("content") for c in chunks[:-1]]
        which = int(contents[0][1:].split(".")[0])
        assert contents == answers[which]  # its own answer, every chunk, in order
        seen.add(which)
    assert seen == set(answers)  # every answer went to exactly one client
    assert fake_ollama.counts["/api/chat"] == STREAMS
    assert app[ADMISSION].active == 0 and not app[CLIENT].session.connector._acquired  # type: ignore[union-attr]


async def test_hundreds_of_disconnects_leak_nothing(start_proxy: Start, fake_ollama: FakeOllama) -> None:
    url, app, server = await start_proxy({"admission": {"max_concurrent": 0}})
    fake_ollama.push(*(Reply(chunks=["first", "never"], hang=True) for _ in range(DISCONNECTS)))
    tasks_before = len(asyncio.all_tasks())
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def open_stream() -> aiohttp.ClientResponse:
            response = await session.post(url + "/v1/chat/completions", json=body())
            assert b'"first"' in await response.content.readuntil(b"\n\n")
            return response

        async with asyncio.timeout(BOUND):
            responses = await asyncio.gather(*(open_stream() for _ in range(DISCONNECTS)))
        assert fake_ollama.open_streams == DISCONNECTS
        assert app[ADMISSION].active == DISCONNECTS
        assert len(app[CLIENT].session.connector._acquired) == DISCONNECTS  # type: ignore[union-attr]
        for response in responses:
            response.close()  # every client walks away mid-stream
        await until(lambda: fake_ollama.open_streams == 0)
    pool = app[CLIENT].session.connector
    assert pool is not None and not pool._acquired  # no upstream connection held
    assert fake_ollama.client_disconnects == DISCONNECTS  # Ollama saw each request closed
    assert (app[ADMISSION].active, app[ADMISSION].waiting, app[ADMISSION].by_model) == (0, 0, {})
    await until(lambda: not server.runner.server.connections)  # type: ignore[union-attr]
    await until(lambda: len(asyncio.all_tasks()) <= tasks_before)
    fake_ollama.push(Reply(chunks=["still", " here"]))
    async with aiohttp.ClientSession() as session:
        events = await read_stream(session, url)
    assert events[-1] == b"[DONE]"
