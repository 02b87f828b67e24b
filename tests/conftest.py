"""Shared fixtures: a stand-in Ollama on a real port, the real proxy app on another, and
the official OpenAI SDK pointed at the proxy."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.app import create_app
from proxy.config import Config, build, key_file_relative_to
from tests.fake_ollama import FakeOllama

pytest_plugins = ["tests.redis_server"]  # redis_process / redis_url: a throwaway redis-server

ProxyFactory = Callable[..., Awaitable[str]]
AppFactory = Callable[..., Awaitable[tuple[str, web.Application]]]


@pytest.fixture
async def fake_ollama() -> AsyncIterator[FakeOllama]:
    fake = FakeOllama()
    await fake.start()
    yield fake
    await fake.stop()


# Where a test app's relative files go (the reasoning key file), as the CLI puts them beside the
# config file: never in the working directory, the repository.
CONFIG_DIR = Path(tempfile.mkdtemp(prefix="proxy-test-config-"))


def make_config(upstream_url: str, toml: dict[str, Any] | None = None) -> Config:
    """The config a TOML table would give, pointed at ``upstream_url``, its relative files in
    ``CONFIG_DIR``."""
    config = key_file_relative_to(build(Config, toml or {}, ""), CONFIG_DIR)
    return dataclasses.replace(config, upstream=dataclasses.replace(config.upstream, base_url=upstream_url))


@pytest.fixture
async def app_factory(fake_ollama: FakeOllama) -> AsyncIterator[AppFactory]:
    """``await app_factory({"limits": {...}})`` → (base URL, app) of a proxy running that config."""
    servers: list[TestServer] = []

    async def start(toml: dict[str, Any] | None = None,
                    upstream_url: str | None = None) -> tuple[str, web.Application]:
        app = create_app(make_config(upstream_url or fake_ollama.url, toml))
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}", app

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
def proxy_factory(app_factory: AppFactory) -> ProxyFactory:
    """``await proxy_factory({"limits": {...}})`` → base URL of a proxy running that config."""

    async def start(toml: dict[str, Any] | None = None, upstream_url: str | None = None) -> str:
        return (await app_factory(toml, upstream_url))[0]

    return start


@pytest.fixture
async def proxy_url(proxy_factory: ProxyFactory) -> str:
    """Base URL (no ``/v1``) of a proxy with the default config in front of ``fake_ollama``."""
    return await proxy_factory()


@pytest.fixture
async def client(proxy_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official OpenAI SDK, pointed at the proxy, without retries (tests want first answers)."""
    async with openai.AsyncOpenAI(base_url=proxy_url + "/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


# The store's backends (issue 10): every store test runs against SQLite and PostgreSQL.
from tests.pg import postgres_server, store_url  # noqa: F401
