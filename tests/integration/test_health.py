"""Health probes end to end: a probe storm against the proxy, counted on the stand-in Ollama's
``/api/version``; readiness flipping with the stand-in stopped and restarted; liveness that never
asks Ollama; ``HEAD`` for load balancers that use it."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import ProxyFactory
from tests.fake_ollama import VERSION, FakeOllama

STORM = 400


class HangingVersionOllama(FakeOllama):
    """``/api/version`` never answers."""

    async def _version(self, request: web.Request) -> web.Response:
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")


@pytest.fixture
async def hanging() -> AsyncIterator[HangingVersionOllama]:
    fake = HangingVersionOllama()
    await fake.start()
    yield fake
    await fake.stop()


async def get(session: aiohttp.ClientSession, url: str, method: str = "GET") -> tuple[int, Any]:
    async with session.request(method, url) as response:
        raw = await response.read()
        return response.status, (await response.json() if raw else None)


async def test_ready_when_ollama_answers(proxy_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        status, body = await get(session, proxy_url + "/v1/health")
    assert status == 200
    assert body["status"] == "ok"
    ollama = body["ollama"]
    assert (ollama["reachable"], ollama["version"]) == (True, VERSION)
    assert isinstance(ollama["latency_ms"], float) and ollama["latency_ms"] >= 0


async def test_one_server_reports_its_loaded_models(proxy_url: str, fake_ollama: FakeOllama) -> None:
    """A single Ollama shows what it has in memory too (``/api/ps``), as every server of a pool does."""
    fake_ollama.load("qwen3:8b", size_vram=1 << 30)
    async with aiohttp.ClientSession() as session:
        status, body = await get(session, proxy_url + "/v1/health")
    assert status == 200
    [loaded] = body["ollama"]["loaded"]
    assert (loaded["model"], loaded["size_vram"]) == ("qwen3:8b", 1 << 30)
    assert loaded["size"] > loaded["size_vram"] and loaded["expires_at"]


async def test_loaded_models_unknown_never_make_the_proxy_unready(proxy_url: str, fake_ollama: FakeOllama) -> None:
    fake_ollama.ps_fails = True
    async with aiohttp.ClientSession() as session:
        status, body = await get(session, proxy_url + "/v1/health")
    assert status == 200 and body["ollama"]["loaded"] is None


async def storm(url: str) -> list[int]:
    """``STORM`` GET probes on ``/v1/health`` and ``/readyz`` and 50 HEADs, all at once."""
    connector = aiohttp.TCPConnector(limit=0)  # every probe on its own connection
    async with aiohttp.ClientSession(connector=connector) as session:
        calls = [get(session, url + p) for p in ["/v1/health", "/readyz"] * (STORM // 2)]
        calls += [get(session, url + "/v1/health", "HEAD") for _ in range(50)]
        return [status for status, _ in await asyncio.gather(*calls)]


async def test_probe_storm_costs_ollama_one_call(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama
) -> None:
    url = await proxy_factory({"health": {"interval": 60}})  # the whole storm in one interval
    assert set(await storm(url)) == {200}
    assert fake_ollama.counts["/api/version"] == 1


async def test_probe_storm_with_defaults_costs_one_call_per_interval(
    proxy_url: str, fake_ollama: FakeOllama
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert set(await storm(proxy_url)) == {200}
    elapsed = loop.time() - started
    # Default interval 1 s: one call, plus one per further second the storm lasted.
    assert 1 <= fake_ollama.counts["/api/version"] <= 1 + math.ceil(elapsed)


async def test_readiness_flips_with_ollama(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama
) -> None:
    url = await proxy_factory({"health": {"interval": 0}})  # every probe after a call asks again
    async with aiohttp.ClientSession() as session:
        assert (await get(session, url + "/v1/health"))[0] == 200

        await fake_ollama.stop()
        status, body = await get(session, url + "/v1/health")
        assert status == 503
        assert body["status"] == "unavailable"
        assert body["reason"] == "Could not connect to Ollama."
        assert body["ollama"]["reachable"] is False
        assert (await get(session, url + "/readyz"))[0] == 503
        assert (await get(session, url + "/v1/health", "HEAD")) == (503, None)
        assert (await get(session, url + "/livez"))[0] == 200  # the process itself is fine

        await fake_ollama.start()
        status, body = await get(session, url + "/v1/health")
        assert status == 200
        assert body["ollama"]["version"] == VERSION


async def test_hanging_ollama_is_503_within_the_timeout(
    proxy_factory: ProxyFactory, hanging: HangingVersionOllama
) -> None:
    url = await proxy_factory({"health": {"timeout": 0.2}}, upstream_url=hanging.url)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(get(session, url + "/v1/health") for _ in range(20)))
    assert loop.time() - started < 2
    assert {status for status, _ in answers} == {503}
    assert answers[0][1]["reason"] == "Ollama did not answer within 0.2 s."
    assert hanging.counts["/api/version"] == 1


async def test_liveness_never_asks_ollama(proxy_url: str, fake_ollama: FakeOllama) -> None:
    await fake_ollama.stop()
    async with aiohttp.ClientSession() as session:
        assert await get(session, proxy_url + "/livez") == (200, {"status": "ok"})
        assert await get(session, proxy_url + "/livez", "HEAD") == (200, None)
    assert fake_ollama.counts["/api/version"] == 0


@pytest.mark.parametrize(
    "path", ["/v1/health", "/readyz", "/livez"], ids=["health", "readyz", "livez"]
)
async def test_head_answers_the_status_without_a_body(proxy_url: str, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.head(proxy_url + path) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert await response.read() == b""


async def test_camel_key_style(proxy_factory: ProxyFactory) -> None:
    url = await proxy_factory({"response": {"keys": "camel"}})
    async with aiohttp.ClientSession() as session:
        status, body = await get(session, url + "/v1/health")
    assert status == 200
    assert set(body["ollama"]) == {"reachable", "version", "latencyMs", "loaded"}
