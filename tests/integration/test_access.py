"""API keys and per-key limits through the real app, driven by the official OpenAI SDK."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import httpx2 as httpx
import openai
import pytest

from proxy.access.keys import hash_key, new_key
from tests.conftest import AppFactory, ProxyFactory
from tests.fake_ollama import FakeOllama, Reply

ALICE, BOB, OLD, OFF = (new_key() for _ in range(4))
USER = [{"role": "user", "content": "hi"}]
JSON = {"Content-Type": "application/json"}


def keys(**alice: Any) -> dict[str, Any]:
    """A config with alice (limited to llama3*, with ``alice`` settings), admin bob, an expired
    and a disabled key."""
    return {"auth": {"keys": [
        {"id": "alice", "sha256": hash_key(ALICE), "models": ["llama3*"], **alice},
        {"id": "bob", "sha256": hash_key(BOB), "role": "admin"},
        {"id": "old", "sha256": hash_key(OLD), "expires_at": "2020-01-01T00:00:00Z"},
        {"id": "off", "sha256": hash_key(OFF), "enabled": False},
    ]}}


def sdk(url: str, key: str, retries: int = 0, **kwargs: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=retries, **kwargs)


@pytest.mark.parametrize("key, words", [
    ("sk-" + "z" * 43, "Incorrect API key provided: sk-zz…zz."),
    (OLD, "has expired"),
    (OFF, "is disabled"),
], ids=["unknown", "expired", "disabled"])
async def test_the_sdk_gets_401_invalid_api_key_with_the_key_masked(
        proxy_factory: ProxyFactory, fake_ollama: FakeOllama, key: str, words: str,
        caplog: pytest.LogCaptureFixture) -> None:
    url = await proxy_factory(keys())
    caplog.set_level(logging.DEBUG)
    async with sdk(url, key) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model="llama3.2", messages=USER)  # type: ignore[arg-type]
    error = caught.value
    assert error.status_code == 401 and error.code == "invalid_api_key"
    assert error.response.headers["WWW-Authenticate"] == "Bearer"
    assert words in error.message and key not in error.message
    assert fake_ollama.counts["/api/chat"] == 0
    assert all(key not in record.getMessage() for record in caplog.records)


async def test_no_key_at_all_is_401_in_openais_words(proxy_factory: ProxyFactory) -> None:
    url = await proxy_factory(keys())
    async with aiohttp.ClientSession() as session, session.get(url + "/v1/models") as r:
        body = await r.json()
    assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert body["error"]["code"] == "invalid_api_key" and "You didn't provide an API key" in body["error"]["message"]


@pytest.mark.parametrize("header", ["Authorization", "x-api-key", "api-key"])
async def test_a_key_is_accepted_in_each_header_and_never_sent_to_ollama(
        proxy_factory: ProxyFactory, fake_ollama: FakeOllama, header: str) -> None:
    url = await proxy_factory(keys())
    value = f"Bearer {ALICE}" if header == "Authorization" else ALICE
    body = {"model": "llama3.2", "messages": USER}
    async with aiohttp.ClientSession() as session, \
            session.post(url + "/v1/chat/completions", json=body, headers={header: value}) as r:
        assert r.status == 200, await r.text()
    assert fake_ollama.request_headers
    assert all(ALICE not in " ".join(h.values()) for h in fake_ollama.request_headers)


async def test_probes_need_no_key(proxy_factory: ProxyFactory) -> None:
    url = await proxy_factory(keys())
    async with aiohttp.ClientSession() as session:
        for path in ("/livez", "/readyz", "/v1/health"):
            async with session.get(url + path) as r:
                assert r.status == 200, path


async def test_a_model_outside_the_keys_list_does_not_exist_for_it(proxy_factory: ProxyFactory,
                                                                   fake_ollama: FakeOllama) -> None:
    url = await proxy_factory(keys())
    async with sdk(url, ALICE) as alice, sdk(url, BOB) as bob:
        with pytest.raises(openai.NotFoundError) as caught:
            await alice.chat.completions.create(model="qwen3:8b", messages=USER)  # type: ignore[arg-type]
        assert caught.value.code == "model_not_found"
        assert "does not exist or you do not have access to it" in caught.value.message
        with pytest.raises(openai.NotFoundError):
            await alice.embeddings.create(model="nomic-embed-text", input="x")
        assert [m.id async for m in alice.models.list()] == ["llama3.2:latest"]
        with pytest.raises(openai.NotFoundError):
            await alice.models.retrieve("qwen3:8b")
        assert (await alice.models.retrieve("llama3.2:latest")).id == "llama3.2:latest"
        assert len([m async for m in bob.models.list()]) == 4  # no list: every model
        await bob.chat.completions.create(model="qwen3:8b", messages=USER)  # type: ignore[arg-type]
    assert fake_ollama.counts["/api/chat"] == 1


async def test_every_answer_carries_openais_rate_limit_headers_streams_too(proxy_factory: ProxyFactory,
                                                                           fake_ollama: FakeOllama) -> None:
    url = await proxy_factory(keys(rpm=10, tpm=60_000))
    async with sdk(url, ALICE) as alice:
        raw = await alice.chat.completions.with_raw_response.create(
            model="llama3.2", messages=USER, max_tokens=100)  # type: ignore[arg-type]
        first = raw.headers
        async with alice.chat.completions.with_streaming_response.create(
                model="llama3.2", messages=USER, max_tokens=100, stream=True) as streamed:  # type: ignore[arg-type]
            second = streamed.headers
            async for _ in streamed.iter_lines():
                pass
    assert first["x-ratelimit-limit-requests"] == "10" and first["x-ratelimit-remaining-requests"] == "9"
    assert first["x-ratelimit-reset-requests"] == "6s"
    assert first["x-ratelimit-limit-tokens"] == "60000"
    reserved = 60_000 - int(first["x-ratelimit-remaining-tokens"])
    assert 100 < reserved < 200  # ceil(body bytes / 4) + max_tokens
    assert first["x-ratelimit-reset-tokens"].endswith("ms")
    assert second["x-ratelimit-remaining-requests"] == "8"
    # the first request was settled at Ollama's count (11 prompt + a few answer tokens), so the
    # second sees only that spent, plus its own reservation (less what refilled meanwhile)
    spent_before_second = 60_000 - int(second["x-ratelimit-remaining-tokens"]) - reserved
    assert 0 <= spent_before_second <= 20


async def test_the_429_is_openais_and_the_sdk_retries_after_retry_after(proxy_factory: ProxyFactory,
                                                                       fake_ollama: FakeOllama) -> None:
    url = await proxy_factory(keys(rpm=60))
    async with aiohttp.ClientSession() as session:
        for _ in range(60):  # a fresh bucket takes a whole minute's requests at once
            async with session.post(url + "/v1/chat/completions", json={"model": "llama3.2", "messages": USER},
                                    headers={"Authorization": f"Bearer {ALICE}"}) as r:
                assert r.status == 200
        async with session.post(url + "/v1/chat/completions", json={"model": "llama3.2", "messages": USER},
                                headers={"Authorization": f"Bearer {ALICE}"}) as r:
            refused = await r.json()
            assert r.status == 429 and r.headers["Retry-After"] == "1"
            assert r.headers["x-ratelimit-remaining-requests"] == "0"
    error = refused["error"]
    assert (error["type"], error["code"], error["param"]) == ("requests", "rate_limit_exceeded", None)
    assert error["message"].startswith("Rate limit reached for llama3.2 on requests per min (RPM): Limit 60, "
                                       "Used 60, Requested 1. Please try again in ")
    seen: list[int] = []

    async def note(response: httpx.Response) -> None:
        seen.append(response.status_code)

    http = httpx.AsyncClient(event_hooks={"response": [note]})
    async with sdk(url, ALICE, retries=2, http_client=http) as alice:
        reply = await alice.chat.completions.create(model="llama3.2", messages=USER)  # type: ignore[arg-type]
    assert reply.choices[0].message.content
    assert seen[0] == 429 and seen[-1] == 200  # refused, waited Retry-After, then served


async def test_a_reservation_above_tpm_is_refused_at_once_and_not_retried(proxy_factory: ProxyFactory,
                                                                         fake_ollama: FakeOllama) -> None:
    url = await proxy_factory(keys(tpm=1000))
    seen: list[int] = []

    async def note(response: httpx.Response) -> None:
        seen.append(response.status_code)

    http = httpx.AsyncClient(event_hooks={"response": [note]})
    async with sdk(url, ALICE, retries=2, http_client=http) as alice:
        with pytest.raises(openai.RateLimitError) as caught:
            await alice.chat.completions.create(model="llama3.2", messages=USER, max_tokens=5000)  # type: ignore[arg-type]
    assert ("Request too large for llama3.2 on tokens per min (TPM): Limit 1000, Requested "
            in caught.value.message)
    assert seen == [429] and fake_ollama.counts["/api/chat"] == 0


async def test_per_model_limits_count_apart(proxy_factory: ProxyFactory) -> None:
    url = await proxy_factory(keys(models=[], rpm=100, model_limits={"qwen*": {"rpm": 1}}))
    async with sdk(url, ALICE) as alice:
        await alice.chat.completions.create(model="qwen3:8b", messages=USER)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError):
            await alice.chat.completions.create(model="qwen3:8b", messages=USER)  # type: ignore[arg-type]
        raw = await alice.chat.completions.with_raw_response.create(model="llama3.2", messages=USER)  # type: ignore[arg-type]
    assert raw.headers["x-ratelimit-limit-requests"] == "100"


async def test_max_concurrent_holds_a_key_to_its_slots(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, _ = await app_factory({**keys(max_concurrent=1), "admission": {"max_queue": 0}})
    fake_ollama.push(Reply(hang=True))
    async with sdk(url, ALICE) as alice, sdk(url, BOB) as bob:
        held = await alice.chat.completions.create(
            model="llama3.2", messages=USER, stream=True)  # type: ignore[call-overload]
        await fake_ollama.stream_started.wait()
        with pytest.raises(openai.RateLimitError) as caught:
            await alice.chat.completions.create(model="llama3.2", messages=USER)  # type: ignore[arg-type]
        assert "alice" in caught.value.message
        await bob.chat.completions.create(model="llama3.2", messages=USER)  # type: ignore[arg-type]  # bob is apart
        await held.close()
