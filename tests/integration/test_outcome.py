"""Each request to Ollama reports one ``Outcome`` at its end: tokens, timings, how it ended."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import pytest

from proxy.upstream.outcome import CLIENT_CLOSED, OUTCOME_LISTENERS, Outcome
from tests.conftest import AppFactory
from tests.fake_ollama import FakeOllama, Reply

USER = [{"role": "user", "content": "hi"}]


async def start(app_factory: AppFactory) -> tuple[str, list[Outcome], asyncio.Event]:
    url, app = await app_factory()
    seen: list[Outcome] = []
    told = asyncio.Event()

    def listen(outcome: Outcome) -> None:
        seen.append(outcome)
        told.set()

    app[OUTCOME_LISTENERS].append(listen)
    return url, seen, told


async def test_non_streamed_chat_reports_ollamas_counts(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, seen, _ = await start(app_factory)
    fake_ollama.push(Reply(content="hello there", prompt_eval_count=7, eval_count=5))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        await sdk.chat.completions.create(model="llama3.2", messages=USER)
    [outcome] = seen
    assert (outcome.endpoint, outcome.model, outcome.key_id, outcome.stream) == (
        "chat.completions", "llama3.2", "anonymous", False)
    assert (outcome.prompt_tokens, outcome.completion_tokens, outcome.status, outcome.error) == (7, 5, 200, None)
    assert outcome.ended is not None and outcome.duration >= 0


async def test_streamed_chat_reports_counts_and_first_byte(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, seen, _ = await start(app_factory)
    fake_ollama.push(Reply(chunks=["a", "b", "c"], prompt_eval_count=3, eval_count=3))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="llama3.2", messages=USER, stream=True)
        async for _ in stream:
            pass
    [outcome] = seen
    assert outcome.stream and outcome.error is None
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (3, 3)
    assert outcome.time_to_first_byte is not None and 0 <= outcome.time_to_first_byte <= outcome.duration
    assert "total_duration" in outcome.timings


async def test_stream_fault_and_upstream_error_are_reported(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, seen, _ = await start(app_factory)
    fake_ollama.push(Reply(chunks=["a", "b", "c"], error_after_lines=2, error="boom"))
    fake_ollama.push(Reply(status=500, error="boom"))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="llama3.2", messages=USER, stream=True)
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
        with pytest.raises(openai.APIError):
            await sdk.chat.completions.create(model="llama3.2", messages=USER)
    faulted, failed = seen
    assert faulted.error == "mid_stream" and faulted.completion_tokens >= 1
    assert failed.status >= 500 and failed.error is not None


async def test_client_disconnect_is_reported_with_tokens_so_far(
    app_factory: AppFactory, fake_ollama: FakeOllama
) -> None:
    url, seen, told = await start(app_factory)
    fake_ollama.push(Reply(chunks=["first", "second", "never"], hang=True))
    body = {"model": "llama3.2", "messages": USER, "stream": True}
    async with aiohttp.ClientSession() as session:
        response = await session.post(url + "/v1/chat/completions", json=body)
        await response.content.readuntil(b"\n\n")
        response.close()
    await asyncio.wait_for(told.wait(), 5)
    [outcome] = seen
    assert (outcome.status, outcome.error) == (CLIENT_CLOSED, "client_disconnect")


async def test_embeddings_and_completions_report(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, seen, _ = await start(app_factory)
    fake_ollama.push(Reply(content="x y", prompt_eval_count=2, eval_count=2))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        await sdk.embeddings.create(model="nomic-embed-text", input=["a b", "c"])
        await sdk.completions.create(model="llama3.2", prompt="x")
    embed, legacy = seen
    assert embed.endpoint == "embeddings" and embed.prompt_tokens > 0
    assert (legacy.endpoint, legacy.prompt_tokens, legacy.completion_tokens) == ("completions", 2, 2)


async def test_a_failing_listener_does_not_fail_the_request(
    app_factory: AppFactory, fake_ollama: FakeOllama
) -> None:
    url, app = await app_factory()

    def broken(outcome: Outcome) -> None:
        raise RuntimeError("listener bug")

    app[OUTCOME_LISTENERS].append(broken)
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        reply = await sdk.chat.completions.create(model="llama3.2", messages=USER)
    assert reply.choices[0].message.content
