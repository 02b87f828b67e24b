"""``GET /metrics`` after real traffic: each series moves as the requests that went through say.

The proxy runs on a real port in front of the stand-in Ollama and is driven by the OpenAI SDK
and plain aiohttp; the scrape is parsed with prometheus-client's own parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from proxy.app import create_app
from proxy.errors import RateLimited
from proxy.observe.metrics import TPOT_BUCKETS, TTFT_BUCKETS
from proxy.upstream.outcome import OUTCOME_LISTENERS, Outcome
from tests.conftest import AppFactory, make_config
from tests.fake_ollama import FakeOllama, Reply
from tests.integration.test_cli import free_port

USER = [{"role": "user", "content": "hi"}]
LLAMA = "llama3.2:latest"  # the label: Ollama's canonical name, whatever spelling the client used

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when the series is not there (a counter that never moved)."""
    return samples.get((f"ollama_proxy_{name}", frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == f"ollama_proxy_{name}" and want <= ls)


async def scrape(url: str, **headers: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics", headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(await response.text())


def told(app: web.Application) -> Callable[[int], Any]:
    """``await told(n)``: until n outcomes have been reported."""
    seen: list[Outcome] = []
    another = asyncio.Event()

    def listen(outcome: Outcome) -> None:
        seen.append(outcome)
        another.set()

    app[OUTCOME_LISTENERS].append(listen)

    async def wait(n: int) -> None:
        while len(seen) < n:
            another.clear()
            await asyncio.wait_for(another.wait(), 5)

    return wait


async def test_each_series_moves_as_the_traffic_says(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, app = await app_factory({"admission": {"max_concurrent": 1, "max_queue": 0}})
    outcomes = told(app)
    before = await scrape(url)
    assert value(before, "requests_in_flight") == 0 and value(before, "admission_waiting") == 0
    fake_ollama.push(
        Reply(chunks=["a", "b", "c", "d"], prompt_eval_count=3, eval_count=4),  # a stream
        Reply(content="hello there", prompt_eval_count=7, eval_count=5),  # a whole answer
        Reply(status=500, error="boom"),  # Ollama fails
        Reply(chunks=["a", "b", "c"], error_after_lines=2, error="boom"),  # fails mid-stream
        Reply(chunks=["first", "second", "never"], hang=True),  # the client leaves
    )
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="llama3.2", messages=USER, stream=True)
        async for _ in stream:
            pass
        await sdk.chat.completions.create(model="LLAMA3.2", messages=USER)
        with pytest.raises(openai.BadRequestError):  # refused before Ollama
            await sdk.chat.completions.create(model="llama3.2", messages=USER, temperature=5)
        with pytest.raises(openai.NotFoundError):  # Ollama does not know it: never its own series
            await sdk.chat.completions.create(model="no-such-model\r\nx", messages=USER)
        with pytest.raises(openai.InternalServerError):
            await sdk.chat.completions.create(model="llama3.2", messages=USER)
        stream = await sdk.chat.completions.create(model="llama3.2", messages=USER, stream=True)
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
    body = {"model": "llama3.2", "messages": USER, "stream": True}
    async with aiohttp.ClientSession() as session:
        response = await session.post(url + "/v1/chat/completions", json=body)
        await response.content.readuntil(b"\n\n")
        held = await scrape(url)  # the stream holds the one slot: in flight, and the next is refused
        async with session.post(url + "/v1/chat/completions", json=body) as refused:
            assert refused.status == 429
        response.close()
    await outcomes(6)
    after = await scrape(url)

    assert value(held, "requests_in_flight", model=LLAMA) == 1
    assert value(after, "requests_in_flight", model=LLAMA) == 0
    ok = {"endpoint": "chat.completions", "model": LLAMA}
    assert value(after, "requests_total", **ok, status_code="200") == 3  # stream, answer, cut stream
    assert value(after, "requests_total", **ok, status_code="502") == 1
    assert value(after, "requests_total", **ok, status_code="499") == 1
    assert value(after, "requests_total", endpoint="chat.completions", model="other", status_code="404") == 1
    assert value(after, "requests_total", endpoint="chat.completions", model="none", status_code="400") == 1
    assert value(after, "requests_total", endpoint="chat.completions", model="none", status_code="429") == 1
    assert not [ls for (_, ls) in after if any("no-such-model" in v for _, v in ls)]
    assert value(after, "request_duration_seconds_count", **ok) == 5
    assert value(after, "tokens_total", model=LLAMA, type="prompt") >= 3 + 7
    assert value(after, "tokens_total", model=LLAMA, type="completion") >= 4 + 5
    # TTFT from completed streams only; time per output token from both completed requests.
    assert value(after, "time_to_first_token_seconds_count", model=LLAMA) == 1
    assert value(after, "time_per_output_token_seconds_count", model=LLAMA) == 2
    assert value(after, "upstream_load_duration_seconds_count", model=LLAMA) == 2
    assert value(after, "upstream_prompt_eval_seconds_count", model=LLAMA) == 2
    assert value(after, "upstream_prompt_eval_seconds_sum", model=LLAMA) == pytest.approx((3 + 7) * 1e-4)
    assert value(after, "upstream_errors_total", kind="5xx") == 1
    assert value(after, "upstream_errors_total", kind="mid_stream") == 1
    assert value(after, "upstream_errors_total", kind="refused") == 0
    assert value(after, "client_disconnects_total") == 1
    assert value(after, "admission_rejected_total") == 1
    assert value(after, "rate_limited_total", kind="concurrency") == 0  # capacity, not a rate limit
    # vLLM's bucket boundaries, all exported.
    ttft_bounds = {float(dict(ls)["le"]) for (n, ls) in after if n.endswith("first_token_seconds_bucket")}
    assert ttft_bounds == {*TTFT_BUCKETS, float("inf")}
    tpot_bounds = {float(dict(ls)["le"]) for (n, ls) in after if n.endswith("output_token_seconds_bucket")}
    assert tpot_bounds == {*TPOT_BUCKETS, float("inf")}


async def test_upstream_faults_are_counted_by_kind(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, _ = await app_factory({"upstream": {"timeouts": {"first_byte": 0.2}}})
    fake_ollama.push(Reply(status=503, error="server busy"), Reply(hang_before_headers=True))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        with pytest.raises(openai.APIStatusError):
            await sdk.chat.completions.create(model="llama3.2", messages=USER)
        with pytest.raises(openai.APIStatusError) as slow:
            await sdk.chat.completions.create(model="llama3.2", messages=USER, stream=True)
        assert slow.value.status_code == 504
        await fake_ollama.stop()  # nothing listens on Ollama's port any more
        with pytest.raises(openai.APIStatusError):
            await sdk.chat.completions.create(model="llama3.2", messages=USER)
        with pytest.raises(openai.APIStatusError):
            await sdk.models.list()  # a route without an outcome: counted by the middleware
    samples = await scrape(url)
    assert value(samples, "upstream_errors_total", kind="5xx") == 1
    assert value(samples, "upstream_errors_total", kind="timeout") == 1
    assert value(samples, "upstream_errors_total", kind="refused") == 2
    assert value(samples, "requests_total", endpoint="models", model="none", status_code="502") == 1


async def test_a_malformed_answer_is_its_own_kind(app_factory: AppFactory) -> None:
    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="<html>gateway</html>", content_type="text/html")

    upstream = web.Application()
    upstream.router.add_post("/api/chat", not_json)
    runner = web.AppRunner(upstream)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url, _ = await app_factory(upstream_url=f"http://127.0.0.1:{runner.addresses[0][1]}")
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
            with pytest.raises(openai.InternalServerError) as info:
                await sdk.chat.completions.create(model="llama3.2", messages=USER)
        assert info.value.code == "upstream_malformed"
        assert value(await scrape(url), "upstream_errors_total", kind="malformed") == 1
    finally:
        await runner.cleanup()


class TooManyTokens(RateLimited):
    """What the access layer's token limit raises: a 429 that says its kind."""

    kind = "tokens"


async def _refuse(request: web.Request) -> web.Response:
    raise TooManyTokens("slow down", retry_after=1)


@pytest.mark.parametrize("per_key", [False, True], ids=["no key label", "per_key_labels"])
async def test_rate_limits_count_by_kind_and_per_key_only_when_asked(fake_ollama: FakeOllama, per_key: bool) -> None:
    app = create_app(make_config(fake_ollama.url, {"metrics": {"per_key_labels": per_key}}))
    app.router.add_post("/v1/limited", _refuse)
    async with TestServer(app) as server:
        url = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as session, session.post(url + "/v1/limited") as response:
            assert response.status == 429
        samples = await scrape(url)
    if per_key:
        assert value(samples, "rate_limited_total", kind="tokens", key_id="anonymous") == 1
    else:
        assert value(samples, "rate_limited_total", kind="tokens") == 1
        assert not [ls for (_, ls) in samples if "key_id" in dict(ls)]
    assert total(samples, "requests_total", endpoint="limited", status_code="429") == 1


async def test_unknown_paths_are_one_series(proxy_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/v1/a", "/v1/b\x7f", "/whatever/%0d%0a"):
            async with session.get(proxy_url + path) as response:
                assert response.status == 404
    samples = await scrape(proxy_url)
    assert value(samples, "requests_total", endpoint="unknown", model="none", status_code="404") == 3
    assert value(samples, "requests_total", endpoint="livez", model="none", status_code="200") == 0


async def test_metrics_off_means_no_route_and_no_middleware(app_factory: AppFactory) -> None:
    url, app = await app_factory({"metrics": {"enabled": False}})
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        assert response.status == 404
    assert not [m for m in app.middlewares if "observe" in getattr(m, "__qualname__", "")]  # nothing per request


async def test_the_bearer_token_guards_the_scrape(app_factory: AppFactory) -> None:
    url, _ = await app_factory({"metrics": {"token": "s3cret"}})
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            async with session.get(url + "/metrics", headers=headers) as response:
                assert response.status == 401
                assert (await response.json())["error"]["code"] == "invalid_api_key"
    assert await scrape(url, Authorization="Bearer s3cret")


async def test_a_port_of_its_own(app_factory: AppFactory) -> None:
    port = free_port()
    url, _ = await app_factory({"metrics": {"port": port, "token": "t"}})
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        assert response.status == 404  # not on the API's port
    samples = await scrape(f"http://127.0.0.1:{port}", Authorization="Bearer t")
    assert ("ollama_proxy_admission_waiting", frozenset({("priority", "default")})) in samples
