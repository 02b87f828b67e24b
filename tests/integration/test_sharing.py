"""Fair queuing end to end: two keys through the real app, the official SDK, and a stand-in
Ollama that holds every answer until the test lets it go, so the order requests reach Ollama
is the order admission granted them. Fairness is counted in requests, never in seconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from proxy.access.keys import hash_key, new_key
from proxy.appkeys import ADMISSION
from tests.conftest import AppFactory
from tests.fake_ollama import FakeOllama

A, B = new_key(), new_key()
BOUND = 10.0


class HeldOllama(FakeOllama):
    """Answers each chat only when the test releases it; records who arrived, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[str] = []
        self.held: dict[str, asyncio.Event] = {}
        self.changed = asyncio.Event()
        self.open = False  # once set, answers at once

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        tag = body["messages"][-1]["content"]
        self.arrived.append(tag)
        self.changed.set()
        if not self.open:
            gate = self.held[tag] = asyncio.Event()
            await gate.wait()
        return await super()._complete(request)

    async def finish(self, *tasks: asyncio.Task[Any]) -> list[Any]:
        """Let everything through and collect the answers."""
        self.open = True
        for gate in self.held.values():
            gate.set()
        self.held.clear()
        return await asyncio.gather(*tasks)

    def release(self, tag: str) -> None:
        self.held.pop(tag).set()

    def oldest_held(self) -> str:
        return next(iter(self.held))


@pytest.fixture
async def held() -> AsyncIterator[HeldOllama]:
    fake = HeldOllama()
    await fake.start()
    yield fake
    await fake.stop()


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a condition the app signals no event for (its queue length)."""
    async with asyncio.timeout(BOUND):
        while not condition():
            await asyncio.sleep(0.005)


def config(**extra: Any) -> dict[str, Any]:
    a = {"id": "a", "sha256": hash_key(A), **extra.pop("a", {})}
    b = {"id": "b", "sha256": hash_key(B), **extra.pop("b", {})}
    return {"auth": {"keys": [a, b]}, "admission": {"max_concurrent": 2, "max_queue": 256, **extra}}


def ask(client: openai.AsyncOpenAI, tag: str, **kwargs: Any) -> asyncio.Task[Any]:
    return asyncio.create_task(client.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": tag}], **kwargs))


async def test_a_backlog_of_one_key_does_not_hold_up_another(app_factory: AppFactory, held: HeldOllama) -> None:
    """A fires 40 at once; B then sends 5 one after another. Each of B's requests reaches Ollama
    with no more than one of A's admitted between its arrival and its own (measured: 0)."""
    url, app = await app_factory(config(), held.url)
    admission = app[ADMISSION]
    async with (openai.AsyncOpenAI(base_url=url + "/v1", api_key=A, max_retries=0) as a,
                openai.AsyncOpenAI(base_url=url + "/v1", api_key=B, max_retries=0) as b):
        a_tasks = [ask(a, f"a{i}") for i in range(40)]
        await until(lambda: len(held.held) == 2 and admission.waiting == 38)
        a_ahead = []
        for i in range(5):
            queued = admission.waiting
            b_task = ask(b, f"b{i}")
            await until(lambda q=queued: admission.waiting == q + 1)  # B is queued
            before = len(held.arrived)
            while f"b{i}" not in held.held:  # A's requests end one at a time until B's reaches Ollama
                held.changed.clear()
                held.release(held.oldest_held())
                await asyncio.wait_for(held.changed.wait(), BOUND)
            a_ahead.append(sum(tag.startswith("a") for tag in held.arrived[before:]))
            held.release(f"b{i}")
            await b_task
        assert max(a_ahead) <= 1 and a_ahead == [0] * 5  # FIFO would have put all of A's first
        await held.finish(*a_tasks)


async def test_weights_three_to_one_share_the_slots_three_to_one(app_factory: AppFactory, held: HeldOllama) -> None:
    url, app = await app_factory(config(a={"weight": 3}), held.url)
    admission = app[ADMISSION]
    async with (openai.AsyncOpenAI(base_url=url + "/v1", api_key=A, max_retries=0) as a,
                openai.AsyncOpenAI(base_url=url + "/v1", api_key=B, max_retries=0) as b):
        blockers = [ask(a, "block0"), ask(a, "block1")]
        await until(lambda: len(held.held) == 2)
        tasks = []
        for i in range(24):  # both keys backlogged before any slot frees
            tasks += [ask(a, f"a{i}"), ask(b, f"b{i}")]
        await until(lambda: admission.waiting == 48)
        start = len(held.arrived)
        while len(held.arrived) - start < 24:  # serve 24 while both still have a backlog
            held.changed.clear()
            held.release(held.oldest_held())
            await asyncio.wait_for(held.changed.wait(), BOUND)
        served = held.arrived[start:start + 24]
        assert (sum(t.startswith("a") for t in served), sum(t.startswith("b") for t in served)) == (18, 6)
        await held.finish(*blockers, *tasks)


async def test_flex_waits_behind_default_and_the_answer_says_which_tier(app_factory: AppFactory,
                                                                        held: HeldOllama) -> None:
    url, app = await app_factory(config(a={"max_priority": "high"}), held.url)
    admission = app[ADMISSION]
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=A, max_retries=0) as a:
        blockers = [ask(a, "block0"), ask(a, "block1")]
        await until(lambda: len(held.held) == 2)
        flex = ask(a, "flex", service_tier="flex")
        await until(lambda: admission.waiting == 1)
        default = [ask(a, f"d{i}") for i in range(2)]
        high = ask(a, "high", service_tier="priority")
        await until(lambda: admission.waiting == 4)
        while len(held.arrived) < 6:  # one slot frees at a time: who reaches Ollama next
            held.changed.clear()
            held.release(held.oldest_held())
            await asyncio.wait_for(held.changed.wait(), BOUND)
        assert held.arrived[2:] == ["high", "d0", "d1", "flex"]
        results = await held.finish(*blockers, flex, *default, high)
    assert [r.service_tier for r in results] == [None, None, "flex", None, None, "priority"]
    async with (aiohttp.ClientSession() as session,
                session.get(url + "/metrics", headers={"Authorization": f"Bearer {A}"}) as scraped):
        text = await scraped.text()
    for priority, count in (("high", 1), ("default", 2), ("low", 1)):  # the queued ones, by class
        assert f'ollama_proxy_admission_wait_seconds_count{{priority="{priority}"}} {count}.0' in text
        assert f'ollama_proxy_admission_waiting{{priority="{priority}"}} 0.0' in text


async def test_priority_beyond_a_keys_ceiling_runs_as_default_and_says_so(app_factory: AppFactory) -> None:
    url, _ = await app_factory(config())
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=B, max_retries=0) as b:
        answer = await b.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "x"}],
                                                 service_tier="priority")
        assert answer.service_tier == "default"
        chunks = [c async for c in await b.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "x"}], service_tier="flex", stream=True)]
        assert {c.service_tier for c in chunks} == {"flex"}
        response = await b.responses.create(model="llama3.2", input="x", service_tier="flex")
        assert response.service_tier == "flex"
        with pytest.raises(openai.BadRequestError) as caught:
            await b.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "x"}],
                                            service_tier="fastest")  # type: ignore[arg-type]
        assert caught.value.body["param"] == "service_tier"  # type: ignore[index]


async def test_a_per_key_queue_bound_refuses_only_that_key(app_factory: AppFactory, held: HeldOllama) -> None:
    url, app = await app_factory(config(max_queue_per_key=2), held.url)
    admission = app[ADMISSION]
    async with (openai.AsyncOpenAI(base_url=url + "/v1", api_key=A, max_retries=0) as a,
                openai.AsyncOpenAI(base_url=url + "/v1", api_key=B, max_retries=0) as b):
        tasks = [ask(a, f"a{i}") for i in range(4)]
        await until(lambda: len(held.held) == 2 and admission.waiting == 2)
        with pytest.raises(openai.RateLimitError) as caught:
            await a.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "a9"}])
        assert "max_queue_per_key" in caught.value.message
        assert caught.value.response.headers["Retry-After"] == "1"
        b_task = ask(b, "b0")
        await until(lambda: admission.waiting == 3)  # B still queues
        await held.finish(*tasks, b_task)
