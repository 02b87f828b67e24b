"""Shared by the console's browser tests and the screenshot script: the proxy on a real port
against the stand-in Ollama, and the few page steps every scenario takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Page

from proxy.access.keys import hash_key
from proxy.app import create_app
from tests.conftest import make_config
from tests.fake_ollama import FakeOllama
from tests.integration.test_cli import free_port

WAIT_MS = 15_000  # an upper bound for events awaited in the page, not a pause


def store_on(tmp_path: Path) -> dict[str, Any]:
    """The real store (issue 10) on a throwaway SQLite file; usage written every 50 ms."""
    return {"store": {"enabled": True, "url": "sqlite:///" + str(tmp_path / "p.db"), "flush_interval": 0.05}}


async def start_proxy(fake: FakeOllama, toml: dict[str, Any] | None = None, *,
                      key: str | None = None) -> tuple[TestServer, web.Application]:
    """The proxy as configured by ``toml`` (metrics are on by default, as in production), on the
    port its config names: the batch runner calls its own app back there."""
    auth = {"auth": {"keys": [{"id": "console", "sha256": hash_key(key)}]}} if key is not None else {}
    port = free_port()
    toml = toml or {}
    server_table = {**toml.get("server", {}), "port": port}
    app = create_app(make_config(fake.url, {"health": {"interval": 0}, **auth, **toml, "server": server_table}))
    server = TestServer(app, port=port)
    await server.start_server()
    return server, app


def sdk(base: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0)


async def open_view(page: Page, base: str, view: str) -> None:
    await page.goto(f"{base}/console/#{view}")
    await page.wait_for_selector(f"#view-{view}:not([hidden])", timeout=WAIT_MS)


async def pick_model(page: Page, model: str, select: str = "#model") -> None:
    await page.wait_for_selector(f'{select} option[value="{model}"]', state="attached", timeout=WAIT_MS)
    await page.select_option(select, model)
