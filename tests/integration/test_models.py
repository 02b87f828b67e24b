"""``/v1/models`` end to end: the OpenAI SDK → the proxy → the stand-in Ollama's ``/api/tags`` and
``/api/show``, including the digest cache (counted on the stand-in) and the concurrency bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.conftest import ProxyFactory
from tests.fake_ollama import FakeOllama

DEFAULT_IDS = ["llama3.2:latest", "qwen3:8b", "hf.co/org/repo:Q4_K_M", "nomic-embed-text:latest"]


class GatedShowOllama(FakeOllama):
    """Holds every ``/api/show`` until released, recording how many were in flight at once."""

    def __init__(self, models: list[str] | None = None) -> None:
        super().__init__(models)
        self.release = asyncio.Event()
        self.inflight = 0
        self.most_inflight = 0
        self.waiting = asyncio.Event()
        self.wait_for = 1

    async def _show(self, request: web.Request) -> web.Response:
        self.inflight += 1
        self.most_inflight = max(self.most_inflight, self.inflight)
        if self.inflight >= self.wait_for:
            self.waiting.set()
        try:
            await self.release.wait()
            return await super()._show(request)
        finally:
            self.inflight -= 1


class FailingShowOllama(FakeOllama):
    """``/api/show`` answers 500 for the models named in ``failing``."""

    failing = frozenset({"qwen3:8b"})

    async def _show(self, request: web.Request) -> web.Response:
        if (await request.json()).get("model") in self.failing:
            return web.json_response({"error": "failed to read model file"}, status=500)
        return await super()._show(request)


@pytest.fixture
async def gated() -> AsyncIterator[GatedShowOllama]:
    fake = GatedShowOllama([f"model{i}:7b" for i in range(6)])
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def failing() -> AsyncIterator[FailingShowOllama]:
    fake = FailingShowOllama()
    await fake.start()
    yield fake
    await fake.stop()


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def test_list_has_every_model_with_its_metadata(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    assert [m.id for m in page.data] == DEFAULT_IDS
    llama = page.data[0]
    assert (llama.object, llama.created, llama.owned_by) == ("model", 1746405464, "library")
    assert llama.model_extra == {
        "display_label": "llama GGUF 3.2B Q4_K_M",
        "context_length": 131072,
        "capabilities": ["completion", "tools"],
        "metadata": {
            "family": "llama",
            "format": "gguf",
            "parameter_size": "3.2B",
            "quantization_level": "Q4_K_M",
        },
    }
    extras = {m.id: m.model_extra for m in page.data}
    assert extras["qwen3:8b"]["capabilities"] == ["completion", "tools", "thinking"]  # type: ignore[index]
    assert extras["hf.co/org/repo:Q4_K_M"]["capabilities"] == ["completion", "vision"]  # type: ignore[index]
    assert extras["nomic-embed-text:latest"]["context_length"] == 2048  # type: ignore[index]
    assert page.data[2].owned_by == "org"


@pytest.mark.parametrize(
    ("wanted", "found"),
    [
        ("hf.co/org/repo:Q4_K_M", "hf.co/org/repo:Q4_K_M"),
        ("library/llama3.2:latest", "llama3.2:latest"),
        ("llama3.2", "llama3.2:latest"),
    ],
    ids=["id with slash and colon", "default namespace spelled out", "tag defaults to latest"],
)
async def test_retrieve_routes_ids_with_slash_and_colon(
    client: openai.AsyncOpenAI, wanted: str, found: str
) -> None:
    model = await client.models.retrieve(wanted)
    assert model.id == found
    assert model.model_extra is not None and model.model_extra["context_length"]


async def test_retrieve_with_raw_slashes_in_the_path(proxy_url: str) -> None:
    status, body = await get_json(proxy_url + "/v1/models/hf.co/org/repo:Q4_K_M")
    assert status == 200
    assert body["id"] == "hf.co/org/repo:Q4_K_M"
    assert body["display_label"] == "gemma3 GGUF 4.3B Q4_K_M"


async def test_unknown_model_is_404_model_not_found(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("hf.co/org/other:Q8_0")
    assert info.value.code == "model_not_found"
    assert info.value.body["param"] == "model"  # type: ignore[index]


async def test_warm_listing_costs_one_tags_call_and_a_new_digest_refreshes(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    await client.models.list()
    assert fake_ollama.counts["/api/show"] == 4  # one per digest
    for _ in range(3):
        await client.models.list()
        await client.models.retrieve("llama3.2:latest")
    assert fake_ollama.counts["/api/show"] == 4
    assert fake_ollama.counts["/api/tags"] == 7

    fake_ollama.set_digest("qwen3:8b", "f" * 64)  # re-pulled: new content, new digest
    await client.models.list()
    shown = [body["model"] for path, body in fake_ollama.requests if path == "/api/show"]
    assert shown[4:] == ["qwen3:8b"]
    await client.models.list()
    assert fake_ollama.counts["/api/show"] == 5


async def test_concurrent_cold_listings_share_one_show_per_digest(
    client: openai.AsyncOpenAI, fake_ollama: FakeOllama
) -> None:
    pages = await asyncio.gather(*(client.models.list() for _ in range(20)))
    assert fake_ollama.counts["/api/show"] == 4
    assert all(len(page.data) == 4 for page in pages)


async def test_show_calls_run_concurrently_within_the_bound(
    proxy_factory: ProxyFactory, gated: GatedShowOllama
) -> None:
    url = await proxy_factory({"models": {"show_concurrency": 2}}, upstream_url=gated.url)
    gated.wait_for = 2
    listing = asyncio.create_task(get_json(url + "/v1/models"))
    await asyncio.wait_for(gated.waiting.wait(), 5)  # two calls in flight at once
    gated.release.set()
    status, body = await listing
    assert status == 200
    assert gated.most_inflight == 2
    assert gated.counts["/api/show"] == 6
    assert all(m["context_length"] == 131072 for m in body["data"])


async def test_a_model_whose_show_fails_is_listed_without_its_details(
    proxy_factory: ProxyFactory, failing: FailingShowOllama
) -> None:
    url = await proxy_factory(upstream_url=failing.url)
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        page = await sdk.models.list()
        qwen = next(m for m in page.data if m.id == "qwen3:8b")
        assert qwen.model_extra == {
            "display_label": "qwen3 GGUF 8.2B Q4_K_M",  # from /api/tags, which did answer
            "context_length": None,
            "capabilities": None,
            "metadata": {
                "family": "qwen3",
                "format": "gguf",
                "parameter_size": "8.2B",
                "quantization_level": "Q4_K_M",
            },
        }
        assert all(m.model_extra["context_length"] for m in page.data if m.id != "qwen3:8b")  # type: ignore[index]
        # A failure is not cached: the next listing asks again.
        await sdk.models.list()
    shown = [body["model"] for path, body in failing.requests if path == "/api/show"]
    assert shown.count("qwen3:8b") == 2
    assert shown.count("llama3.2:latest") == 1


async def test_camel_keys_are_exactly_the_front_ends(proxy_factory: ProxyFactory) -> None:
    url = await proxy_factory({"response": {"keys": "camel"}})
    status, body = await get_json(url + "/v1/models/llama3.2")
    assert status == 200
    assert body == {
        "id": "llama3.2:latest",
        "object": "model",
        "created": 1746405464,
        "ownedBy": "library",
        "displayLabel": "llama GGUF 3.2B Q4_K_M",
        "contextLength": 131072,
        "capabilities": ["completion", "tools"],
        "metadata": {
            "family": "llama",
            "format": "gguf",
            "parameterSize": "3.2B",
            "quantizationLevel": "Q4_K_M",
        },
    }


async def test_ollama_down_is_502_in_the_envelope(proxy_url: str, fake_ollama: FakeOllama) -> None:
    await fake_ollama.stop()
    status, body = await get_json(proxy_url + "/v1/models")
    assert status == 502
    assert body["error"]["code"] == "upstream_unreachable"


async def test_no_models_as_null_is_an_empty_list(client: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    for name in list(fake_ollama.models):
        fake_ollama.remove_model(name)
    fake_ollama.nil_models = True
    page = await client.models.list()
    assert page.data == []
