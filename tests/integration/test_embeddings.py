"""``/v1/embeddings`` end to end: the OpenAI SDK (which asks for base64 by default and decodes it)
→ the proxy → the stand-in Ollama's ``/api/embed``."""

from __future__ import annotations

import struct
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import ProxyFactory
from tests.fake_ollama import FakeOllama

MODEL = "nomic-embed-text"


def as_float32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def embed_bodies(fake: FakeOllama) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/api/embed"]


async def direct_embed(fake: FakeOllama, texts: list[str], **extra: Any) -> list[list[float]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url + "/api/embed", json={"model": MODEL, "input": texts, **extra}) as r,
    ):
        vectors: list[list[float]] = (await r.json())["embeddings"]
        return vectors


async def test_default_encoding_is_base64_and_decodes_to_ollamas_vectors(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    result = await client.embeddings.create(
        model=MODEL, input=["Why is the sky blue?", "Why is grass green?"]
    )
    expected = await direct_embed(fake_ollama, ["Why is the sky blue?", "Why is grass green?"])
    assert [d.index for d in result.data] == [0, 1]
    # Ollama's values are float32 (printed shortest), so the float32 bytes decode to exactly them.
    assert [d.embedding for d in result.data] == [[as_float32(x) for x in v] for v in expected]
    assert result.model == MODEL
    assert result.object == "list"
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (
        9,
        9,
    )  # the stand-in counts words
    sent = embed_bodies(fake_ollama)[0]
    assert sent == {"model": MODEL, "input": ["Why is the sky blue?", "Why is grass green?"]}


async def test_float_encoding(client: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    result = await client.embeddings.create(
        model=MODEL, input="hello world", encoding_format="float"
    )
    assert [d.embedding for d in result.data] == await direct_embed(fake_ollama, ["hello world"])
    assert result.usage.prompt_tokens == 2


async def test_wire_format_of_base64(proxy_url: str) -> None:
    body = {"model": MODEL, "input": "hi", "encoding_format": "base64"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(proxy_url + "/v1/embeddings", json=body) as response,
    ):
        data = await response.json()
    embedding = data["data"][0]["embedding"]
    assert isinstance(embedding, str)
    assert len(embedding) == 44  # 8 float32 values = 32 bytes = 44 base64 characters


async def test_dimensions_passed_on(client: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    result = await client.embeddings.create(model=MODEL, input="hi", dimensions=16)
    assert len(result.data[0].embedding) == 16
    assert embed_bodies(fake_ollama)[0]["dimensions"] == 16


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"input": [[1, 2, 3]]}, "input"),
        ({"input": [1, 2, 3]}, "input"),
        ({"input": ""}, "input"),
        ({"input": "hi", "encoding_format": "int8"}, "encoding_format"),
    ],
    ids=["token-id arrays", "token ids", "empty string", "unknown encoding"],
)
async def test_refused_input_is_400_naming_the_parameter(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.embeddings.create(model=MODEL, **kwargs)
    assert info.value.body["param"] == param  # type: ignore[index]
    assert fake_ollama.counts["/api/embed"] == 0


async def test_unknown_model_is_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.embeddings.create(model="nope", input="hi")
    assert info.value.code == "model_not_found"


async def test_camel_key_style(proxy_factory: ProxyFactory) -> None:
    url = await proxy_factory({"response": {"keys": "camel"}})
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/embeddings", json={"model": MODEL, "input": "a b c"}) as response,
    ):
        data = await response.json()
    assert data["usage"] == {"promptTokens": 3, "totalTokens": 3}
