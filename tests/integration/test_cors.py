"""CORS and browser safety through the real app: preflight, headers on answers and streams."""

from __future__ import annotations

import aiohttp

from proxy.access.keys import hash_key, new_key
from tests.conftest import ProxyFactory
from tests.fake_ollama import FakeOllama

KEY = new_key()
ORIGIN = "http://localhost:5173"
BODY = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
SDK_HEADERS = ("authorization, content-type, openai-beta, openai-organization, openai-project, "
               "x-stainless-os, x-stainless-lang, x-stainless-retry-count, x-stainless-timeout")


def config(**cors: object) -> dict[str, object]:
    return {"auth": {"keys": [{"id": "web", "sha256": hash_key(KEY), "rpm": 100}]},
            "cors": {"origins": ["local"], **cors}}


async def test_a_preflight_names_what_the_js_sdk_sends(proxy_factory: ProxyFactory, fake_ollama: FakeOllama) -> None:
    url = await proxy_factory(config(max_age=300))
    async with aiohttp.ClientSession() as session, session.options(url + "/v1/chat/completions", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": SDK_HEADERS + ", x-evil"}) as r:
        assert r.status == 204
        h = r.headers
    assert h["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in h["Access-Control-Allow-Methods"]
    allowed = {x.strip() for x in h["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {x.strip() for x in SDK_HEADERS.split(",")}  # x-evil is not echoed
    assert h["Access-Control-Max-Age"] == "300" and "Origin" in h["Vary"]
    assert "Access-Control-Allow-Credentials" not in h
    assert not fake_ollama.requests


async def test_answers_and_streams_carry_the_origin_and_expose_the_limit_headers(proxy_factory: ProxyFactory) -> None:
    url = await proxy_factory(config(allow_credentials=True))
    headers = {"Origin": ORIGIN, "Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/chat/completions", json=BODY, headers=headers) as r:
            plain = r.headers
            assert r.status == 200
        async with session.post(url + "/v1/chat/completions", json={**BODY, "stream": True}, headers=headers) as r:
            streamed = r.headers
            assert r.status == 200 and (await r.read()).endswith(b"data: [DONE]\n\n")
        async with session.post(url + "/v1/chat/completions", json={**BODY, "model": 1}, headers=headers) as r:
            failed = r.headers
            assert r.status == 400
    for h in (plain, streamed, failed):
        assert h["Access-Control-Allow-Origin"] == ORIGIN and h["Vary"] == "Origin"
        assert h["Access-Control-Allow-Credentials"] == "true"
        exposed = {x.strip().lower() for x in h["Access-Control-Expose-Headers"].split(",")}
        assert {"x-request-id", "retry-after", "x-ratelimit-remaining-requests", "x-ratelimit-reset-tokens"} <= exposed
    assert streamed["x-ratelimit-remaining-requests"] == "98"


async def test_without_cors_config_any_origin_is_refused_even_on_loopback(proxy_factory: ProxyFactory,
                                                                          fake_ollama: FakeOllama) -> None:
    url = await proxy_factory()
    async with aiohttp.ClientSession() as session, session.post(
            url + "/v1/chat/completions", data=b'{"model": "llama3.2"}',
            headers={"Origin": "https://evil.example", "Content-Type": "text/plain"}) as r:
        body = await r.json()
    assert r.status == 403 and body["error"]["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in r.headers and not fake_ollama.requests


async def test_a_text_plain_post_is_415_and_never_reaches_ollama(proxy_factory: ProxyFactory,
                                                                fake_ollama: FakeOllama) -> None:
    url = await proxy_factory()
    async with aiohttp.ClientSession() as session, session.post(
            url + "/v1/chat/completions", data=b'{"model": "llama3.2", "messages": []}',
            headers={"Content-Type": "text/plain"}) as r:
        body = await r.json()
    assert r.status == 415 and body["error"]["param"] == "Content-Type" and not fake_ollama.requests
