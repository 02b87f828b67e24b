"""Operator-side models end to end (issue 19): the official SDK asks for an alias, the stand-in
Ollama sees the target with the configured defaults, the answer names the alias, and the usage
store, metrics and access record keep both names; ``/v1/models`` lists aliases; SIGHUP's reload
swaps them; an alias to a model Ollama lacks is a 404 naming both; no answer header carries the
upstream's address."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from proxy.app import create_app
from proxy.appkeys import STORE_SERVICE
from proxy.config import load_config
from proxy.gates.reload import reload_access
from tests.conftest import AppFactory
from tests.fake_ollama import FakeOllama, Reply
from tests.integration.test_access_process import log_lines, start  # noqa: F401 (a fixture)
from tests.integration.test_metrics import scrape, told, value

USER = [{"role": "user", "content": "hi"}]
CODEX = {
    "models": {
        "aliases": {"gpt-5*": "llama3.2", "fast": "llama3.2", "claude-*": "qwen3:8b"},
        "defaults": {"llama3*": {"options": {"num_ctx": 65536}, "keep_alive": "30m"}},
    },
}


def sdk(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def sent(fake: FakeOllama, path: str = "/api/chat") -> list[dict[str, Any]]:
    return [body for p, body in fake.requests if p == path]


async def test_the_sdk_asks_for_an_alias_and_ollama_serves_the_target_with_its_defaults(
        app_factory: AppFactory, fake_ollama: FakeOllama, caplog: pytest.LogCaptureFixture) -> None:
    url, app = await app_factory({**CODEX, "store": {"enabled": True, "url": "sqlite://"},
                                  "log": {"access": True, "format": "json"}})
    ended = told(app)
    caplog.set_level(logging.INFO, logger="proxy.access")
    fake_ollama.push(Reply(content="Hello there."), Reply(chunks=["a", "b"]))
    async with sdk(url) as client:
        whole = await client.chat.completions.create(model="gpt-5-mini", messages=USER)  # type: ignore[arg-type]
        chunks = [c async for c in await client.chat.completions.create(model="gpt-5-mini", messages=USER,  # type: ignore[arg-type]
                                                                         stream=True)]
        # The client's own value wins over the default.
        await client.chat.completions.create(model="gpt-5-mini", messages=USER,  # type: ignore[arg-type]
                                             extra_body={"options": {"num_ctx": 2048}})
    assert whole.model == "gpt-5-mini" and whole.choices[0].message.content == "Hello there."
    assert {c.model for c in chunks} == {"gpt-5-mini"}
    first, second, third = sent(fake_ollama)
    for body in (first, second):
        assert body["model"] == "llama3.2"
        assert body["options"]["num_ctx"] == 65536 and body["keep_alive"] == "30m"
    assert third["options"]["num_ctx"] == 2048 and third["keep_alive"] == "30m"
    await ended(3)

    await app[STORE_SERVICE].flush()
    [row] = await app[STORE_SERVICE].store.usage(0, 2**40)
    assert (row.model, row.requested, row.requests) == ("llama3.2", "gpt-5-mini", 3)
    samples = await scrape(url)
    assert value(samples, "alias_requests_total", requested="gpt-5-mini", model="llama3.2:latest") == 3
    assert value(samples, "requests_total", endpoint="chat.completions", model="llama3.2:latest",
                 status_code="200") == 3
    records = [vars(r) for r in caplog.records if r.name == "proxy.access" and vars(r).get("model")]
    assert {(r["model"], r["requested_model"]) for r in records} == {("llama3.2", "gpt-5-mini")}


async def test_every_route_with_a_model_takes_aliases(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    url, _ = await app_factory({**CODEX, "passthrough": {"enabled": True}})
    async with sdk(url) as client:
        completion = await client.completions.create(model="gpt-5-mini", prompt="hi")  # type: ignore[arg-type]
        embedded = await client.embeddings.create(model="fast", input="hi")
        response = await client.responses.create(model="claude-sonnet-4-5", input="hi")
    assert (completion.model, embedded.model, response.model) == ("gpt-5-mini", "fast", "claude-sonnet-4-5")
    assert sent(fake_ollama, "/api/generate")[-1]["model"] == "llama3.2"
    assert sent(fake_ollama, "/api/embed")[-1]["model"] == "llama3.2"
    assert sent(fake_ollama, "/api/embed")[-1]["options"] == {"num_ctx": 65536}
    assert sent(fake_ollama, "/api/chat")[-1]["model"] == "qwen3:8b"
    assert "options" not in sent(fake_ollama, "/api/chat")[-1]  # no defaults table matches qwen3
    async with aiohttp.ClientSession() as session:
        body = {"model": "gpt-5-mini", "messages": USER, "stream": False}
        async with session.post(url + "/api/chat", json=body) as r:
            assert r.status == 200
    native = sent(fake_ollama)[-1]
    assert (native["model"], native["options"], native["keep_alive"]) == ("llama3.2", {"num_ctx": 65536}, "30m")


async def test_models_lists_aliases_marked_with_their_target(app_factory: AppFactory) -> None:
    url, _ = await app_factory(CODEX)
    async with sdk(url) as client:
        listed = {m.id: m for m in (await client.models.list()).data}
        one = await client.models.retrieve("gpt-5-mini")
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("nothing-like-it")
        with pytest.raises(openai.BadRequestError):
            await client.models.retrieve("fast\u0000")
    # The exact alias is listed with the target's metadata; a glob names no one id to list.
    assert "fast" in listed and "gpt-5*" not in listed
    fast, target = listed["fast"].model_dump(), listed["llama3.2:latest"].model_dump()
    assert fast["alias_for"] == "llama3.2:latest" and "alias_for" not in target
    assert {k: v for k, v in fast.items() if k not in ("id", "alias_for")} == \
        {k: v for k, v in target.items() if k != "id"}
    assert (one.id, one.model_dump()["alias_for"]) == ("gpt-5-mini", "llama3.2:latest")


async def test_an_alias_to_a_model_ollama_lacks_is_a_404_naming_both(app_factory: AppFactory) -> None:
    url, _ = await app_factory({"models": {"aliases": {"gpt-5*": "llama9"}}})
    async with sdk(url) as client:
        for stream in (False, True):
            with pytest.raises(openai.NotFoundError) as caught:
                await client.chat.completions.create(model="gpt-5-mini", messages=USER, stream=stream)  # type: ignore[call-overload]
            message = str(caught.value)
            assert "gpt-5-mini" in message and "llama9" in message and 'models.aliases."gpt-5*"' in message
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("gpt-5-mini")


async def test_a_reload_swaps_the_aliases(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[upstream]\nbase_url = "{fake_ollama.url}"\n[models.aliases]\n"gpt-5*" = "llama3.2"\n')
    app = create_app(load_config(path))
    async with TestServer(app) as server, sdk(f"http://127.0.0.1:{server.port}") as client:
        await client.chat.completions.create(model="gpt-5-mini", messages=USER)  # type: ignore[arg-type]
        path.write_text(f'[upstream]\nbase_url = "{fake_ollama.url}"\n[models.aliases]\n"gpt-5*" = "qwen3:8b"\n')
        assert reload_access(app, str(path))  # what SIGHUP runs
        answer = await client.chat.completions.create(model="gpt-5-mini", messages=USER)  # type: ignore[arg-type]
        path.write_text(f'[upstream]\nbase_url = "{fake_ollama.url}"\n[models.aliases]\n"a" = "b*"\n')
        assert not reload_access(app, str(path))  # a bad table leaves the one in force
        await client.chat.completions.create(model="gpt-5-mini", messages=USER)  # type: ignore[arg-type]
    assert [b["model"] for b in sent(fake_ollama)] == ["llama3.2", "qwen3:8b", "qwen3:8b"]
    assert answer.model == "gpt-5-mini"


async def test_a_nul_in_a_name_is_refused_before_ollama(proxy_url: str, fake_ollama: FakeOllama) -> None:
    tool = {"type": "function", "function": {"name": "f\u0000", "parameters": {"type": "object"}}}
    async with sdk(proxy_url) as client:
        for kwargs in ({"model": "llama3.2\u0000"}, {"model": "llama3.2", "tools": [tool]}):
            with pytest.raises(openai.BadRequestError) as caught:
                await client.chat.completions.create(**{"messages": USER, **kwargs})  # type: ignore[call-overload]
            assert "NUL" in str(caught.value)
    assert sent(fake_ollama) == []


async def test_no_answer_header_carries_the_upstreams_address(
        app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    # As an address appears (":<port>", "host:port"); the bare digits may occur in a random id.
    address, port = fake_ollama.url.split("//", 1)[1], ":" + fake_ollama.url.rsplit(":", 1)[1]
    for routing in ({}, {"expose_upstream": True}):  # on, a server without a name is still not named
        url, _ = await app_factory({"passthrough": {"enabled": True}, "routing": routing, **CODEX})
        fake_ollama.push(Reply(chunks=["a", "b"]))
        calls: list[tuple[str, str, Any]] = [
            ("POST", "/v1/chat/completions", {"model": "llama3.2", "messages": USER}),
            ("POST", "/v1/chat/completions", {"model": "gpt-5-mini", "messages": USER, "stream": True}),
            ("POST", "/v1/chat/completions", {"model": "llama9", "messages": USER}),
            ("POST", "/v1/chat/completions", {"model": "llama3.2"}),
            ("POST", "/v1/completions", {"model": "llama3.2", "prompt": "hi"}),
            ("POST", "/v1/embeddings", {"model": "llama3.2", "input": "hi"}),
            ("POST", "/v1/responses", {"model": "llama3.2", "input": "hi"}),
            ("GET", "/v1/models", None), ("GET", "/v1/models/fast", None), ("GET", "/v1/models/x", None),
            ("GET", "/v1/health", None), ("GET", "/readyz", None), ("GET", "/livez", None),
            ("GET", "/api/tags", None), ("POST", "/api/chat", {"model": "llama3.2", "messages": USER}),
            ("POST", "/api/show", {"model": "llama3.2"}), ("GET", "/nowhere", None),
        ]
        async with aiohttp.ClientSession() as session:
            for method, path, body in calls:
                async with session.request(method, url + path, json=body) as r:
                    await r.read()
                    headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
                    assert address not in headers and port not in headers, (path, headers)
                    assert "X-Upstream" not in r.headers, (path, headers)


async def test_a_keys_model_list_may_name_either_side(app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    from proxy.access.keys import hash_key

    keys = [{"id": "codex", "sha256": hash_key("sk-codex"), "models": ["gpt-5*"]},
            {"id": "llama", "sha256": hash_key("sk-llama"), "models": ["llama3.2"]}]
    url, _ = await app_factory({**CODEX, "auth": {"keys": keys}})
    codex = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-codex", max_retries=0)
    llama = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-llama", max_retries=0)
    async with codex, llama:
        assert (await codex.chat.completions.create(model="gpt-5-mini", messages=USER)).model == "gpt-5-mini"  # type: ignore[arg-type]
        with pytest.raises(openai.NotFoundError):  # the alias, not its target
            await codex.chat.completions.create(model="llama3.2", messages=USER)  # type: ignore[arg-type]
        assert (await llama.chat.completions.create(model="gpt-5-mini", messages=USER)).model == "gpt-5-mini"  # type: ignore[arg-type]
        with pytest.raises(openai.NotFoundError):  # claude-* is qwen3:8b, which this key lacks
            await llama.chat.completions.create(model="claude-opus", messages=USER)  # type: ignore[arg-type]
        listed = {m.id for m in (await codex.models.list()).data}
    assert listed == set()  # "fast" and llama3.2 are neither named by nor globbed by gpt-5*
    assert [b["model"] for b in sent(fake_ollama)] == ["llama3.2", "llama3.2"]


async def test_sighup_swaps_the_aliases_of_a_running_proxy(
        tmp_path: Path, start: Any, fake_ollama: FakeOllama) -> None:  # noqa: F811 (the fixture)
    path = tmp_path / "proxy.toml"
    path.write_text('[models.aliases]\n"gpt-5*" = "llama3.2"\n')
    process, port = await start("--config", str(path))
    await log_lines(process, r"SIGHUP reloads")
    async with sdk(f"http://127.0.0.1:{port}") as client:
        await client.chat.completions.create(model="gpt-5-mini", messages=USER)  # type: ignore[arg-type]
        path.write_text('[models.aliases]\n"gpt-5*" = "qwen3:8b"\n')
        process.send_signal(signal.SIGHUP)
        await log_lines(process, r"reloaded 0 API key\(s\) and 1 model alias\(es\)")
        answer = await client.chat.completions.create(model="gpt-5-mini", messages=USER)  # type: ignore[arg-type]
    assert answer.model == "gpt-5-mini"
    assert [b["model"] for b in sent(fake_ollama)] == ["llama3.2", "qwen3:8b"]


async def test_a_metered_key_sees_the_same_aliases_and_defaults_on_every_route(
        app_factory: AppFactory, fake_ollama: FakeOllama) -> None:
    """With limits the meter parses the body first and hands it to the handler: what Ollama
    gets and what the answer names are the same as without it."""
    from proxy.access.keys import hash_key

    keys = [{"id": "team", "sha256": hash_key("sk-team"), "rpm": 1000, "tpm": 10_000_000}]
    url, _ = await app_factory({**CODEX, "auth": {"keys": keys}, "passthrough": {"enabled": True}})
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-team", max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(model="gpt-5-mini", messages=USER)  # type: ignore[arg-type]
        completion = await client.completions.create(model="gpt-5-mini", prompt="hi")  # type: ignore[arg-type]
        embedded = await client.embeddings.create(model="fast", input="hi")
        response = await client.responses.create(model="claude-sonnet-4-5", input="hi")
    assert raw.parse().model == "gpt-5-mini" and raw.headers["x-ratelimit-limit-requests"] == "1000"
    assert (completion.model, embedded.model, response.model) == ("gpt-5-mini", "fast", "claude-sonnet-4-5")
    chat = sent(fake_ollama)[0]
    assert (chat["model"], chat["options"]["num_ctx"], chat["keep_alive"]) == ("llama3.2", 65536, "30m")
    assert sent(fake_ollama, "/api/generate")[-1]["model"] == "llama3.2"
    assert sent(fake_ollama, "/api/embed")[-1]["options"] == {"num_ctx": 65536}
    assert sent(fake_ollama)[-1]["model"] == "qwen3:8b"
    native_body = {"model": "gpt-5-mini", "messages": USER, "stream": False}
    async with (aiohttp.ClientSession(headers={"Authorization": "Bearer sk-team"}) as session,
                session.post(url + "/api/chat", json=native_body) as r):
        assert r.status == 200 and r.headers["x-ratelimit-limit-requests"] == "1000"
    native = sent(fake_ollama)[-1]
    assert (native["model"], native["options"], native["keep_alive"]) == ("llama3.2", {"num_ctx": 65536}, "30m")
