"""``n`` > 1 end to end with the official SDK: one concurrent Ollama request per choice, each
under its own admission slot, merged into ``choices[i]`` (or interleaved frames) with usage summed."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from tests.conftest import AppFactory, ProxyFactory
from tests.fake_ollama import FakeOllama, Reply

USER = [{"role": "user", "content": "Name a colour."}]


def chat_bodies(fake: FakeOllama) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/api/chat"]


async def test_n_answers_are_merged_into_choices_with_usage_summed(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    fake_ollama.push(Reply(content="red", prompt_eval_count=5, eval_count=1),
                     Reply(content="green", prompt_eval_count=5, eval_count=2),
                     Reply(content="blue", prompt_eval_count=5, eval_count=3))
    reply = await client.chat.completions.create(model="llama3.2", messages=USER, n=3, seed=7)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert sorted(c.message.content or "" for c in reply.choices) == ["blue", "green", "red"]
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (15, 6, 21)
    assert sorted(b["options"]["seed"] for b in chat_bodies(fake_ollama)) == [7, 8, 9]


async def test_n_without_seed_sends_the_same_body_n_times(client: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    await client.chat.completions.create(model="llama3.2", messages=USER, n=2, temperature=0.9)
    first, second = chat_bodies(fake_ollama)
    assert first == second and "seed" not in first["options"]


async def test_n_streams_interleave_with_their_index_and_end_once(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    fake_ollama.push(Reply(chunks=["a", "b", "c"], prompt_eval_count=4, eval_count=3, line_delay=0.001),
                     Reply(chunks=["x", "y"], prompt_eval_count=4, eval_count=2, line_delay=0.001))
    stream = await client.chat.completions.create(model="llama3.2", messages=USER, n=2, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    texts: dict[int, str] = {0: "", 1: ""}
    roles: dict[int, int] = {0: 0, 1: 0}
    finishes: dict[int, list[str]] = {0: [], 1: []}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            roles[choice.index] += choice.delta.role == "assistant"
            if choice.finish_reason:
                finishes[choice.index].append(choice.finish_reason)
    assert sorted(texts.values()) == ["abc", "xy"]
    assert roles == {0: 1, 1: 1} and finishes == {0: ["stop"], 1: ["stop"]}
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 4 + 3 + 4 + 2
    assert all(c.usage is None for c in chunks[:-1])


async def test_a_fault_in_one_choice_ends_the_stream(client: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    fake_ollama.push(Reply(chunks=["a", "b", "c"], error_after_lines=2, error="CUDA error"),
                     Reply(chunks=["x", "y"]))
    with pytest.raises(openai.APIError) as info:
        async for _ in await client.chat.completions.create(model="llama3.2", messages=USER, n=2, stream=True):
            pass
    assert "The model server had an error" in info.value.message  # Ollama's text stays in the log


async def test_a_refusal_before_any_frame_is_an_http_status(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="no-such-model", messages=USER, n=2, stream=True)
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="no-such-model", messages=USER, n=2)


async def test_each_choice_holds_its_own_slot(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    """One slot per model: the second choice waits for the first to be read to its end."""
    from proxy.appkeys import ADMISSION

    url, app = await app_factory({"admission": {"max_concurrent_per_model": 1}})
    fake_ollama.push(Reply(chunks=["a", "b"]), Reply(chunks=["c", "d"]))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="llama3.2", messages=USER, n=2, stream=True)
        texts = sorted("".join(c.choices[0].delta.content or "" for c in chunks)
                       for chunks in _by_index([c async for c in stream]).values())
        reply = await sdk.chat.completions.create(model="llama3.2", messages=USER, n=2)
    assert texts == ["ab", "cd"]
    assert len(reply.choices) == 2
    assert app[ADMISSION].active == 0 and app[ADMISSION].waiting == 0


def _by_index(chunks: list[Any]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            out.setdefault(choice.index, []).append(chunk)
    return out


async def test_n_above_max_n_is_a_400(proxy_factory: ProxyFactory, fake_ollama: FakeOllama) -> None:
    url = await proxy_factory({"limits": {"max_n": 2}})
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError) as info:
            await sdk.chat.completions.create(model="llama3.2", messages=USER, n=3)
    assert info.value.param == "n" and "limits.max_n" in info.value.message
    assert fake_ollama.counts["/api/chat"] == 0


async def test_a_client_leaving_closes_every_upstream(
    proxy_url: str, fake_ollama: FakeOllama
) -> None:
    import aiohttp

    fake_ollama.push(Reply(hang=True), Reply(hang=True))
    body = {"model": "llama3.2", "messages": USER, "n": 2, "stream": True}
    async with aiohttp.ClientSession() as session:
        response = await session.post(proxy_url + "/v1/chat/completions", json=body)
        assert response.status == 200
        await response.content.readline()
        response.close()
    async with asyncio.timeout(5):
        while fake_ollama.open_streams:
            await fake_ollama.stream_closed.wait()
            fake_ollama.stream_closed.clear()
    assert fake_ollama.client_disconnects == 2


async def test_a_bug_after_the_stream_started_ends_it_with_a_generic_error_frame(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from proxy.handlers.openai import choices

    def broken(states: Any) -> bytes:
        raise RuntimeError("a bug in the merger")

    monkeypatch.setattr(choices, "closing_frames", broken)
    with pytest.raises(openai.APIError) as info:
        async for _ in await client.chat.completions.create(model="llama3.2", messages=USER, n=2, stream=True):
            pass
    assert "internal error" in info.value.message and "a bug" not in info.value.message
    assert any("a bug in the merger" in (r.exc_text or "") for r in caplog.records)
