"""Three stand-in Ollama servers behind one proxy, each on its own real port with its own models:
placement by residency and in-flight count, failover before the first byte, ejection and
return, streams that fault after their first byte, the merged model list and per-server health.

Probe, discovery and back-off intervals are set small; every wait is for an event (the pool's
change notifications, a stream's first frame), bounded, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from proxy.appkeys import CLIENT
from proxy.upstream.outcome import OUTCOME_LISTENERS, Outcome
from proxy.upstream.pool import Pool
from tests.conftest import AppFactory
from tests.fake_ollama import FakeOllama, Reply

LLAMA, QWEN, EMBED, GEMMA = "llama3.2:latest", "qwen3:8b", "nomic-embed-text:latest", "hf.co/org/repo:Q4_K_M"
MODELS = {"a": [LLAMA, QWEN], "b": [LLAMA, EMBED], "c": [LLAMA, GEMMA]}
# X-Upstream is off by default; these tests read which server answered from it.
FAST = {"expose_upstream": True, "probe_interval": 0.05, "probe_timeout": 1.0, "discovery_interval": 0.1,
        "discovery_timeout": 1.0, "eject_after": 3, "eject_base": 0.3, "eject_max": 1.0}
USER = [{"role": "user", "content": "hi"}]
WAIT = 10.0  # bound on any wait for the pool to notice something (never reached when it works)

Fakes = dict[str, FakeOllama]


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    servers = {name: FakeOllama(models) for name, models in MODELS.items()}
    for server in servers.values():
        await server.start()
    yield servers
    for server in servers.values():
        await server.stop()


async def start_pool(app_factory: AppFactory, fakes: Fakes, **routing: Any) -> tuple[str, web.Application, Pool]:
    """A proxy over the three stand-ins, once every server has been read."""
    upstreams = [{"name": name, "base_url": fake.url} for name, fake in fakes.items()]
    url, app = await app_factory({"upstreams": upstreams, "routing": {**FAST, **routing}})
    pool = app[CLIENT]
    await pool.wait_for(lambda: all(s.models is not None and s.health.reachable for s in pool.servers), WAIT)
    return url, app, pool


def sdk(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def chats(fake: FakeOllama) -> int:
    return fake.counts["/api/chat"]


async def chat(client: openai.AsyncOpenAI, model: str = "llama3.2", **extra: Any) -> str:
    """One chat completion; the X-Upstream that answered it."""
    raw = await client.chat.completions.with_raw_response.create(model=model, messages=USER, **extra)  # type: ignore[call-overload]
    raw.parse()
    return str(raw.headers.get("x-upstream"))


async def loaded_on(pool: Pool, server: str, model: str) -> None:
    await pool.wait_for(lambda: model in pool.by_name[server].loaded, WAIT)


# ---- placement ---------------------------------------------------------------------------------

async def test_a_loaded_model_draws_its_requests_fully_in_vram_above_partly(
        app_factory: AppFactory, fakes: Fakes) -> None:
    fakes["a"].load(LLAMA, size_vram=1000)  # partly in VRAM
    fakes["c"].load(LLAMA)  # fully
    url, _, pool = await start_pool(app_factory, fakes)
    await loaded_on(pool, "a", LLAMA)
    await loaded_on(pool, "c", LLAMA)
    async with sdk(url) as client:
        served = [await chat(client) for _ in range(5)]
    assert served == ["c"] * 5
    assert (chats(fakes["a"]), chats(fakes["b"]), chats(fakes["c"])) == (0, 0, 5)


async def test_a_model_goes_to_the_server_that_has_it_for_every_endpoint(
        app_factory: AppFactory, fakes: Fakes) -> None:
    url, _, _ = await start_pool(app_factory, fakes)
    async with sdk(url) as client:
        assert await chat(client, "qwen3:8b") == "a"
        embedded = await client.embeddings.with_raw_response.create(model="nomic-embed-text", input="hi")
        assert embedded.headers["x-upstream"] == "b" and embedded.parse().data
        legacy = await client.completions.with_raw_response.create(model=GEMMA, prompt="once")
        assert legacy.headers["x-upstream"] == "c" and legacy.parse().choices
    assert (chats(fakes["a"]), fakes["b"].counts["/api/embed"], fakes["c"].counts["/api/generate"]) == (1, 1, 1)


async def test_a_model_no_server_has_is_404_model_not_found(app_factory: AppFactory, fakes: Fakes) -> None:
    url, _, _ = await start_pool(app_factory, fakes)
    async with sdk(url) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await chat(client, "mistral:7b")
    assert caught.value.code == "model_not_found"
    assert sum(chats(f) for f in fakes.values()) == 0


async def test_load_spreads_by_requests_in_flight(app_factory: AppFactory, fakes: Fakes) -> None:
    for fake in fakes.values():
        fake.load(LLAMA)
        fake.push(Reply(hang=True), Reply(hang=True))  # first line, then held open
    url, _, pool = await start_pool(app_factory, fakes)
    for name in fakes:
        await loaded_on(pool, name, LLAMA)
    body = {"model": "llama3.2", "messages": USER, "stream": True}
    async with aiohttp.ClientSession() as session:
        held = []
        for _ in range(6):  # one after another: each sees the others in flight
            response = await session.post(url + "/v1/chat/completions", json=body)
            assert response.status == 200
            await response.content.readline()  # its first frame: it is in flight
            held.append(response)
        assert sorted(r.headers["X-Upstream"] for r in held) == ["a", "a", "b", "b", "c", "c"]
        assert [f.open_streams for f in fakes.values()] == [2, 2, 2]
        assert [s.in_flight for s in pool.servers] == [2, 2, 2]
        for response in held:
            response.close()
    await pool.wait_for(lambda: all(s.in_flight == 0 for s in pool.servers), WAIT)


@pytest.mark.parametrize("header", ["X-Session-Id", "session-id"], ids=["X-Session-Id", "Codex's session-id"])
async def test_stickiness_sends_a_session_back_to_its_server(app_factory: AppFactory, fakes: Fakes,
                                                             header: str) -> None:
    for fake in fakes.values():
        fake.load(LLAMA)
    url, _, _ = await start_pool(app_factory, fakes, sticky=True)
    async with sdk(url) as client:
        first = await chat(client, extra_headers={header: "conv-1"})
        again = {await chat(client, extra_headers={header: "conv-1"}) for _ in range(4)}
        others = {await chat(client, extra_headers={header: f"other-{i}"}) for i in range(6)}
    assert again == {first}
    assert len(others) > 1  # other sessions still spread


async def test_stickiness_sends_a_conversation_back_by_its_first_turn(app_factory: AppFactory, fakes: Fakes) -> None:
    for fake in fakes.values():
        fake.load(LLAMA)
    url, _, _ = await start_pool(app_factory, fakes, sticky=True)
    body: dict[str, Any] = {"model": "llama3.2", "stream": False}
    firsts, seconds = [], []
    async with aiohttp.ClientSession() as session:
        for i in range(4):
            turn1 = [{"role": "system", "content": "brief"}, {"role": "user", "content": f"question {i}"}]
            turn2 = [*turn1, {"role": "assistant", "content": "answer"}, {"role": "user", "content": "and?"}]
            for messages, served in ((turn1, firsts), (turn2, seconds)):
                async with session.post(url + "/v1/chat/completions", json={**body, "messages": messages}) as r:
                    assert r.status == 200
                    served.append(r.headers["X-Upstream"])
    assert seconds == firsts  # each second turn where its first went
    assert len(set(firsts)) > 1  # while conversations spread


async def test_a_request_that_loads_a_model_refreshes_discovery_at_once(
        app_factory: AppFactory, fakes: Fakes) -> None:
    url, _, pool = await start_pool(app_factory, fakes, discovery_interval=300.0)  # no regular poll
    assert not any(s.loaded for s in pool.servers)
    async with sdk(url) as client:
        server = await chat(client, "qwen3:8b")
    await loaded_on(pool, server, QWEN)  # read right after the request, not 300 s later


# ---- failover, ejection, return ------------------------------------------------------------------

async def test_a_killed_server_costs_no_request_and_is_used_again_after_its_backoff(
        app_factory: AppFactory, fakes: Fakes) -> None:
    for fake in fakes.values():
        fake.load(LLAMA)
    # Probes far apart: only the requests themselves find out that "b" is gone.
    url, _, pool = await start_pool(app_factory, fakes, probe_interval=60.0, eject_base=1.0, eject_max=2.0)
    for name in fakes:
        await loaded_on(pool, name, LLAMA)
    b = pool.by_name["b"]
    await fakes["b"].stop()
    async with sdk(url) as client:
        served = [await chat(client) for _ in range(9)]  # none fails: "b" refuses, the next serves
        served += await asyncio.gather(*(chat(client) for _ in range(9)))
        assert "b" not in served and len(served) == 18
        assert b.health.ejections >= 1 and b.in_flight == 0  # its turns failed over, then it was out
        before = chats(fakes["b"])
        await fakes["b"].start()  # back, on the same port
        await pool.wait_for(lambda: b.health.available(time.monotonic()), WAIT)  # after the back-off
        served = [await chat(client) for _ in range(6)]
    assert "b" in served and chats(fakes["b"]) > before
    assert b.health.failures == 0


async def test_a_server_answering_503_at_once_is_ejected(app_factory: AppFactory, fakes: Fakes) -> None:
    for fake in fakes.values():
        fake.load(LLAMA)
    fakes["c"].busy = True
    url, _, pool = await start_pool(app_factory, fakes, eject_base=60.0, eject_max=60.0)
    for name in fakes:
        await loaded_on(pool, name, LLAMA)
    async with sdk(url) as client:
        served = [await chat(client) for _ in range(15)]
    assert "c" not in served  # every request answered by a or b after failing over
    assert chats(fakes["c"]) == 3  # eject_after: then it draws nothing, however idle it looks
    assert pool.by_name["c"].health.ejected(time.monotonic())
    async with aiohttp.ClientSession() as session, session.get(url + "/v1/health") as response:
        health = {s["name"]: s for s in (await response.json())["upstreams"]}
    assert health["c"]["eligible"] is False and health["c"]["ejected_for_s"] > 0
    assert health["c"]["reachable"] is True  # it answers /api/version: only traffic shows the fault


async def test_a_4xx_never_ejects(app_factory: AppFactory, fakes: Fakes) -> None:
    url, _, pool = await start_pool(app_factory, fakes)
    async with sdk(url) as client:
        for _ in range(5):
            with pytest.raises(openai.BadRequestError):
                await chat(client, "nomic-embed-text")  # an embedding model cannot chat: Ollama's 400
    b = pool.by_name["b"]
    assert chats(fakes["b"]) == 5 and b.health.failures == 0 and b.health.ejected_until == 0


async def test_a_stream_faulting_after_its_first_byte_ends_with_an_error_frame_and_is_not_resent(
        app_factory: AppFactory, fakes: Fakes) -> None:
    fakes["a"].load(QWEN)
    fakes["a"].push(Reply(content="one two three four", die_after_lines=2))
    url, _, pool = await start_pool(app_factory, fakes)
    await loaded_on(pool, "a", QWEN)
    body = {"model": "qwen3:8b", "messages": USER, "stream": True}
    async with aiohttp.ClientSession() as session, session.post(url + "/v1/chat/completions", json=body) as r:
        assert r.status == 200 and r.headers["X-Upstream"] == "a"
        events = [e[6:] for e in (await r.read()).split(b"\n\n") if e.startswith(b"data: ")]
    assert b"[DONE]" not in events and "error" in orjson.loads(events[-1])
    assert [chats(f) for f in fakes.values()] == [1, 0, 0]


async def test_every_server_down_is_a_502_after_the_failovers(app_factory: AppFactory, fakes: Fakes) -> None:
    url, _, pool = await start_pool(app_factory, fakes, probe_interval=60.0)
    for fake in fakes.values():
        await fake.stop()
    async with sdk(url) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await chat(client)
    assert caught.value.status_code == 502
    assert all(s.in_flight == 0 for s in pool.servers)


async def test_a_full_server_is_waited_for(app_factory: AppFactory, fakes: Fakes) -> None:
    upstreams = [{"name": "a", "base_url": fakes["a"].url, "max_concurrent": 1},
                 {"name": "b", "base_url": fakes["b"].url}]
    url, app = await app_factory({"upstreams": upstreams, "routing": FAST, "admission": {"queue_timeout": 0.2}})
    pool = app[CLIENT]
    await pool.wait_for(lambda: all(s.models is not None for s in pool.servers), WAIT)
    fakes["a"].push(Reply(hang=True))
    body = {"model": "qwen3:8b", "messages": USER, "stream": True}
    async with aiohttp.ClientSession() as session:
        held = await session.post(url + "/v1/chat/completions", json=body)
        await held.content.readline()
        async with session.post(url + "/v1/chat/completions", json={**body, "stream": False}) as r:
            assert r.status == 429 and (await r.json())["error"]["code"] == "rate_limit_exceeded"
        held.close()
        await pool.wait_for(lambda: pool.by_name["a"].in_flight == 0, WAIT)
        async with session.post(url + "/v1/chat/completions", json={**body, "stream": False}) as r:
            assert r.status == 200 and r.headers["X-Upstream"] == "a"


# ---- what the pool reports ----------------------------------------------------------------------

async def test_models_are_the_union_each_once_with_where_they_are(app_factory: AppFactory, fakes: Fakes) -> None:
    fakes["c"].load(LLAMA)
    url, _, pool = await start_pool(app_factory, fakes)
    await loaded_on(pool, "c", LLAMA)
    async with sdk(url) as client:
        listed = (await client.models.list()).data
        one = await client.models.retrieve("qwen3:8b")
    ids = [m.id for m in listed]
    assert sorted(ids) == sorted({LLAMA, QWEN, EMBED, GEMMA})
    where = {m.id: m.model_extra["upstreams"] for m in listed if m.model_extra}
    assert where[LLAMA] == {"available": ["a", "b", "c"], "loaded": ["c"]}
    assert where[EMBED] == {"available": ["b"], "loaded": []}
    assert one.model_extra and one.model_extra["upstreams"] == {"available": ["a"], "loaded": []}


async def test_health_reports_every_server_and_readiness_follows_them(app_factory: AppFactory, fakes: Fakes) -> None:
    fakes["b"].load(EMBED, size_vram=100)
    url, _, pool = await start_pool(app_factory, fakes)
    await loaded_on(pool, "b", EMBED)
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/v1/health") as response:
            assert response.status == 200
            body = await response.json()
        assert body["status"] == "ok" and [s["name"] for s in body["upstreams"]] == ["a", "b", "c"]
        b = body["upstreams"][1]
        assert (b["reachable"], b["eligible"], b["version"], b["models"]) == (True, True, "0.12.6", 2)
        assert b["latency_ms"] >= 0
        (loaded,) = b["loaded"]
        assert (loaded["model"], loaded["size_vram"], loaded["size"]) == (EMBED, 100, 274302450)
        assert loaded["expires_at"].endswith("Z")
        for fake in fakes.values():
            await fake.stop()
        await pool.wait_for(lambda: not any(s.health.reachable for s in pool.servers), WAIT)
        async with session.get(url + "/readyz") as response:
            assert response.status == 503
            assert [s["reachable"] for s in (await response.json())["upstreams"]] == [False] * 3
        await fakes["a"].start()
        await pool.wait_for(lambda: bool(pool.by_name["a"].health.reachable), WAIT)
        async with session.get(url + "/readyz") as response:
            assert response.status == 200  # ready while at least one server is


async def test_x_upstream_goes_out_with_a_streams_headers_and_can_be_turned_off(
        app_factory: AppFactory, fakes: Fakes) -> None:
    body = {"model": "qwen3:8b", "messages": USER, "stream": True}
    url, _, _ = await start_pool(app_factory, fakes)
    quiet, _, _ = await start_pool(app_factory, fakes, expose_upstream=False)
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/chat/completions", json=body) as response:
            assert response.headers["X-Upstream"] == "a"
            await response.read()
        async with session.post(quiet + "/v1/chat/completions", json=body) as response:
            assert "X-Upstream" not in response.headers
            await response.read()
        async with session.get(url + "/livez") as response:
            assert "X-Upstream" not in response.headers  # no server was asked


async def test_the_passthrough_routes_show_by_name(app_factory: AppFactory, fakes: Fakes) -> None:
    upstreams = [{"name": name, "base_url": fake.url} for name, fake in fakes.items()]
    url, app = await app_factory({"upstreams": upstreams, "routing": FAST, "passthrough": {"enabled": True}})
    pool = app[CLIENT]
    await pool.wait_for(lambda: all(s.models is not None for s in pool.servers), WAIT)
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/api/show", json={"name": GEMMA}) as response:
            assert response.status == 200 and response.headers["X-Upstream"] == "c"
        async with session.post(url + "/api/chat", json={"model": "qwen3:8b", "messages": USER}) as response:
            assert response.status == 200 and response.headers["X-Upstream"] == "a"
            await response.read()


async def test_a_single_server_is_used_directly_with_no_background_calls(
        proxy_url: str, fake_ollama: FakeOllama) -> None:
    async with sdk(proxy_url) as client:
        served = await chat(client)
    assert served == "None"  # X-Upstream is off by default: no header names the server
    assert set(fake_ollama.counts) == {"/api/chat"}  # no probes, no /api/tags, no /api/ps


async def test_the_outcome_names_the_server_that_answered(app_factory: AppFactory, fakes: Fakes) -> None:
    url, app, _ = await start_pool(app_factory, fakes)
    seen: list[Outcome] = []
    app[OUTCOME_LISTENERS].append(seen.append)
    async with sdk(url) as client:
        await chat(client, "qwen3:8b")
        await client.embeddings.create(model="nomic-embed-text", input="hi")
    assert [(o.endpoint, o.extra["upstream"]) for o in seen] == [("chat.completions", "a"), ("embeddings", "b")]


async def test_the_passthrough_fails_over_a_503_before_relaying(app_factory: AppFactory, fakes: Fakes) -> None:
    for fake in fakes.values():
        fake.load(LLAMA)
    fakes["a"].busy = True
    upstreams = [{"name": name, "base_url": fake.url} for name, fake in fakes.items()]
    url, app = await app_factory({"upstreams": upstreams, "routing": FAST, "passthrough": {"enabled": True}})
    pool = app[CLIENT]
    await pool.wait_for(lambda: all(LLAMA in s.loaded for s in pool.servers), WAIT)
    body = {"model": "llama3.2", "messages": USER, "stream": False}
    async with aiohttp.ClientSession() as session:
        for _ in range(6):
            async with session.post(url + "/api/chat", json=body) as response:
                assert response.status == 200 and response.headers["X-Upstream"] in ("b", "c")
                assert (await response.json())["done"] is True
    assert chats(fakes["a"]) >= 1 and chats(fakes["b"]) + chats(fakes["c"]) == 6
