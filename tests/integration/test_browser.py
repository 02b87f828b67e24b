"""A real browser: headless Chromium (Debian's ``chromium``) driven by Playwright, on a page
served from another origin, streams a chat through the proxy with ``fetch``; the same page
from an origin that is not allowed cannot."""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.access.keys import hash_key, new_key
from tests.conftest import AppFactory
from tests.fake_ollama import FakeOllama, Reply

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if shutil.which(CHROMIUM) is None:
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEY = new_key()

# What a web app does: the OpenAI wire protocol with fetch, reading the SSE stream as it comes.
PAGE = """<!doctype html><meta charset="utf-8"><title>chat</title><script>
async function chat(base, key) {
  try {
    const r = await fetch(base + "/v1/chat/completions", {
      method: "POST",
      headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json",
                "OpenAI-Beta": "assistants=v2", "x-stainless-lang": "js"},
      body: JSON.stringify({model: "llama3.2", stream: true, messages: [{role: "user", content: "hi"}]}),
    });
    const reader = r.body.getReader(), decoder = new TextDecoder();
    let text = "", buffer = "", chunks = 0;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
        const frame = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        if (!frame.startsWith("data: ") || frame === "data: [DONE]") continue;
        const delta = JSON.parse(frame.slice(6)).choices[0]?.delta?.content;
        if (delta) { text += delta; chunks++; }
      }
    }
    return {ok: true, status: r.status, text, chunks,
            remaining: r.headers.get("x-ratelimit-remaining-requests"), rid: r.headers.get("x-request-id")};
  } catch (e) {
    return {ok: false, error: String(e)};
  }
}
</script>"""


async def page_server() -> TestServer:
    async def index(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        await launched.close()


async def run_page(browser: Any, page_url: str, proxy_url: str) -> dict[str, Any]:
    page = await browser.new_page()
    try:
        await page.goto(page_url)
        result: dict[str, Any] = await page.evaluate("([base, key]) => chat(base, key)", [proxy_url, KEY])
        return result
    finally:
        await page.close()


async def test_a_page_from_an_allowed_origin_streams_a_chat_and_a_foreign_one_cannot(
        app_factory: AppFactory, fake_ollama: FakeOllama, browser: Any) -> None:
    allowed, foreign = await page_server(), await page_server()
    try:
        origin = f"http://127.0.0.1:{allowed.port}"
        proxy_url, _ = await app_factory({
            "auth": {"keys": [{"id": "web", "sha256": hash_key(KEY), "rpm": 10}]},
            "cors": {"origins": [origin]},
        })
        fake_ollama.push(Reply(content="Hello from a browser tab"))
        result = await run_page(browser, origin + "/", proxy_url)
        assert result["ok"], result
        assert (result["status"], result["text"]) == (200, "Hello from a browser tab")
        assert result["chunks"] > 1  # streamed, not one blob
        assert result["remaining"] == "9" and result["rid"]  # exposed headers are readable

        calls = fake_ollama.counts["/api/chat"]
        refused = await run_page(browser, f"http://127.0.0.1:{foreign.port}/", proxy_url)
        assert not refused["ok"] and "Failed to fetch" in refused["error"], refused
        assert fake_ollama.counts["/api/chat"] == calls  # the preflight stopped it before Ollama
    finally:
        await allowed.close()
        await foreign.close()



async def test_a_localhost_page_streams_a_chat_with_the_shipped_config(
        app_factory: AppFactory, fake_ollama: FakeOllama, browser: Any) -> None:
    """The seed's own front end on http://localhost:3000: cors.origins = ["local"] by default."""
    shipped = tomllib.loads((Path(__file__).parents[2] / "config.toml").read_text())
    assert shipped["cors"]["origins"] == ["local"]
    page = await page_server()
    try:
        proxy_url, _ = await app_factory(shipped)
        fake_ollama.push(Reply(content="Hello from localhost"))
        result = await run_page(browser, f"http://localhost:{page.port}/", proxy_url)
        assert result["ok"], result
        assert (result["status"], result["text"]) == (200, "Hello from localhost")
        assert result["chunks"] > 1
    finally:
        await page.close()
