"""Ollama-native pass-through: off by default; when on, listed ``/api/*`` paths are relayed byte for
byte and as they arrive, model management is refused unless listed, all else is 404."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import ProxyFactory
from tests.fake_ollama import FakeOllama, Reply

ON = {"passthrough": {"enabled": True}}


async def call(url: str, method: str = "GET", json: Any = None) -> tuple[int, str, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=json) as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.read()


async def test_off_by_default(proxy_url: str, fake_ollama: FakeOllama) -> None:
    status, _, body = await call(proxy_url + "/api/tags")
    assert status == 404
    assert orjson.loads(body)["error"]["code"] == "unknown_url"
    assert fake_ollama.counts["/api/tags"] == 0


async def test_listed_paths_are_relayed_byte_for_byte(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama
) -> None:
    url = await proxy_factory(ON)
    direct = await call(fake_ollama.url + "/api/tags")
    relayed = await call(url + "/api/tags")
    assert relayed == direct  # same status, content type and bytes
    assert await call(url + "/api/version") == await call(fake_ollama.url + "/api/version")
    show = {"model": "hf.co/org/repo:Q4_K_M"}
    assert await call(url + "/api/show", "POST", show) == await call(
        fake_ollama.url + "/api/show", "POST", show
    )


async def test_ollamas_own_errors_stay_ollamas(proxy_factory: ProxyFactory) -> None:
    url = await proxy_factory(ON)
    status, content_type, body = await call(url + "/api/show", "POST", {"model": "nope"})
    assert status == 404
    assert content_type.startswith("application/json")
    assert orjson.loads(body) == {"error": "model 'nope:latest' not found"}


async def test_streams_are_relayed_as_they_arrive(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama
) -> None:
    url = await proxy_factory(ON)
    fake_ollama.push(Reply(chunks=["first", "never"], hang=True))  # one line, then nothing
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            url + "/api/generate", json={"model": "llama3.2", "prompt": "hi"}
        )
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/x-ndjson"
        first = await asyncio.wait_for(response.content.readline(), 5)  # not held back for more
        assert orjson.loads(first)["response"] == "first"
        response.close()  # the client goes away: the relay closes its upstream request
    await asyncio.wait_for(fake_ollama.stream_closed.wait(), 5)


async def test_a_whole_stream_arrives_intact(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama
) -> None:
    url = await proxy_factory(ON)
    fake_ollama.push(Reply(chunks=["a", "b", "c"]))
    status, _, body = await call(
        url + "/api/chat",
        "POST",
        {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]},
    )
    lines = [orjson.loads(line) for line in body.splitlines()]
    assert status == 200
    assert [line["message"]["content"] for line in lines] == ["a", "b", "c", ""]
    assert lines[-1]["done"] is True


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/pull"),
        ("POST", "/api/push"),
        ("POST", "/api/create"),
        ("POST", "/api/copy"),
        ("DELETE", "/api/delete"),
        ("HEAD", "/api/blobs/sha256:abc"),
    ],
    ids=["pull", "push", "create", "copy", "delete", "blobs"],
)
async def test_model_management_is_refused_unless_listed(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama, method: str, path: str
) -> None:
    url = await proxy_factory(ON)
    status, _, body = await call(
        url + path, method, {"model": "llama3.2"} if method != "HEAD" else None
    )
    assert status == 403
    if method != "HEAD":
        assert orjson.loads(body)["error"]["type"] == "permission_error"
    assert fake_ollama.counts[path] == 0


async def test_a_listed_management_path_is_relayed(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama
) -> None:
    url = await proxy_factory({"passthrough": {"enabled": True, "allowed_paths": ["/api/pull"]}})
    status, _, body = await call(url + "/api/pull", "POST", {"model": "llama3.2"})
    assert fake_ollama.counts["/api/pull"] == 1
    assert (status, body) == (
        404,
        b"404 page not found",
    )  # the stand-in has no pull: its answer, verbatim
    assert (await call(url + "/api/tags"))[0] == 404  # and only what is listed


async def test_unlisted_paths_are_404(proxy_factory: ProxyFactory, fake_ollama: FakeOllama) -> None:
    url = await proxy_factory(ON)
    status, _, body = await call(url + "/api/nonsense")
    assert status == 404
    assert orjson.loads(body)["error"]["code"] == "unknown_url"
    assert fake_ollama.counts["/api/nonsense"] == 0


async def test_ollama_down_is_502_in_the_envelope(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama
) -> None:
    url = await proxy_factory(ON)
    await fake_ollama.stop()
    status, _, body = await call(url + "/api/tags")
    assert status == 502
    assert orjson.loads(body)["error"]["code"] == "upstream_unreachable"
