"""Legacy ``/v1/completions`` end to end: the OpenAI SDK → the proxy → the stand-in Ollama's
``/api/generate`` NDJSON, streaming and not."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import ProxyFactory
from tests.fake_ollama import FakeOllama, Reply

MODEL = "llama3.2"


def generate_bodies(fake: FakeOllama) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/api/generate"]


async def test_non_streaming(client: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    fake_ollama.push(Reply(content="upon a time", prompt_eval_count=3, eval_count=4))
    result = await client.completions.create(
        model=MODEL,
        prompt="Once",
        max_tokens=20,
        temperature=0.5,
        stop=["\n"],
        seed=1,
        suffix=" The end.",
    )
    assert result.object == "text_completion"
    assert result.id.startswith("cmpl-")
    assert result.model == MODEL
    assert result.choices[0].text == "upon a time"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (
        result.usage.prompt_tokens,
        result.usage.completion_tokens,
        result.usage.total_tokens,
    ) == (3, 4, 7)
    assert generate_bodies(fake_ollama)[0] == {
        "model": MODEL, "prompt": "Once", "stream": False, "suffix": " The end.",
        "options": {"temperature": 0.5, "seed": 1, "stop": ["\n"], "num_predict": 20},
    }  # fmt: skip


async def test_streaming_reassembles_exactly(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    pieces = ["Once", " upon", " a tïme", " 🌍", "\n"]
    fake_ollama.push(Reply(chunks=pieces))
    stream = await client.completions.create(model=MODEL, prompt="Tell", stream=True)
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].text for c in chunks) == "".join(pieces)
    assert [c.choices[0].finish_reason for c in chunks] == [None] * len(pieces) + ["stop"]
    assert {c.id for c in chunks} == {chunks[0].id} and {c.created for c in chunks} == {
        chunks[0].created
    }
    assert all(c.object == "text_completion" and c.usage is None for c in chunks)
    assert generate_bodies(fake_ollama)[0]["stream"] is True


async def test_stream_include_usage(client: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    fake_ollama.push(Reply(chunks=["a", "b"], prompt_eval_count=5, eval_count=2))
    stream = await client.completions.create(
        model=MODEL, prompt="x", stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (
        5,
        2,
        7,
    )
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_ends_with_done(proxy_url: str) -> None:
    body = {"model": MODEL, "prompt": "x", "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(proxy_url + "/v1/completions", json=body) as response,
    ):
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = await response.read()
    assert raw.endswith(b'"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')


async def test_max_tokens_reached_is_length(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    fake_ollama.push(Reply(chunks=["a", "b", "c", "d"]))
    result = await client.completions.create(model=MODEL, prompt="x", max_tokens=2)
    assert (result.choices[0].text, result.choices[0].finish_reason) == ("ab", "length")


async def test_logprobs_in_the_legacy_shape(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    fake_ollama.push(Reply(chunks=["Hel", "lo"]))
    result = await client.completions.create(model=MODEL, prompt="x", logprobs=2)
    logprobs = result.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens == ["Hel", "lo"]
    assert logprobs.token_logprobs == [-0.25, -0.25]
    assert logprobs.text_offset == [0, 3]
    assert logprobs.top_logprobs == [{"Hel": -0.25, "alt1": -0.5}, {"lo": -0.25, "alt1": -0.5}]
    assert generate_bodies(fake_ollama)[0]["top_logprobs"] == 2


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"echo": True}, "echo"),
        ({"best_of": 3}, "best_of"),
        ({"n": 2}, "n"),
        ({"prompt": ["one", "two"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"logprobs": 50}, "logprobs"),
    ],
    ids=["echo", "best_of", "n", "several prompts", "token ids", "logprobs beyond ollama's 20"],
)
async def test_unsupported_is_400_naming_the_parameter(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(**{"model": MODEL, "prompt": "x", **kwargs})
    assert info.value.body["param"] == param  # type: ignore[index]
    assert fake_ollama.counts["/api/generate"] == 0


async def test_unknown_model_is_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.completions.create(model="nope", prompt="x")
    assert info.value.code == "model_not_found"


async def test_upstream_error_mid_stream_is_an_error_frame(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    fake_ollama.push(
        Reply(chunks=["a", "b", "c"], error_after_lines=2, error="model runner crashed")
    )
    stream = await client.completions.create(model=MODEL, prompt="x", stream=True)
    received = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            received.append(chunk.choices[0].text)
    assert received == ["a", "b"]
    # Ollama's text stays in the log; the client gets OpenAI's generic wording (issue 8, item 7)
    assert "model runner crashed" not in info.value.message
    assert info.value.message.startswith("The model server had an error")
    assert (await client.completions.create(model=MODEL, prompt="x")).choices[0].text


async def test_client_disconnect_closes_the_upstream_request(
    proxy_url: str, fake_ollama: FakeOllama
) -> None:
    fake_ollama.push(Reply(chunks=["first", "never"], hang=True))
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            proxy_url + "/v1/completions", json={"model": MODEL, "prompt": "x", "stream": True}
        )
        assert b'"first"' in await response.content.readuntil(b"\n\n")
        response.close()
    await asyncio.wait_for(fake_ollama.stream_closed.wait(), 5)
    assert fake_ollama.client_disconnects == 1


async def test_camel_key_style(proxy_factory: ProxyFactory, fake_ollama: FakeOllama) -> None:
    url = await proxy_factory({"response": {"keys": "camel"}})
    fake_ollama.push(Reply(chunks=["x"], prompt_eval_count=1, eval_count=1))
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/completions", json={"model": MODEL, "prompt": "x"}) as response,
    ):
        data = await response.json()
    assert data["choices"][0]["finishReason"] == "stop"
    assert data["usage"] == {"promptTokens": 1, "completionTokens": 1, "totalTokens": 2}
