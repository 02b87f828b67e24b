"""The console in headless Chromium against the real proxy and the stand-in Ollama.

Each view is driven as a user would (click, type, wait for what appears) and photographed at
1280×800; the checks read the DOM, and the stand-in tells what reached Ollama.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from PIL import Image
from playwright.async_api import Page, Request, expect

from proxy.access.keys import new_key
from proxy.appkeys import ADMISSION, CLIENT, STORE_SERVICE
from tests.console.conftest import PHONE, screenshot
from tests.console.helpers import WAIT_MS, open_view, pick_model, sdk, start_proxy
from tests.fake_ollama import VERSION, FakeOllama, Reply, ToolCall

# Records the answer's text each time the DOM changes, to see it grow frame by frame.
WATCH_ANSWER = """() => {
  window.answerLengths = [];
  new MutationObserver(() => {
    const node = document.querySelector(".message.assistant:last-child .content");
    const n = node ? node.textContent.length : 0;
    if (n && n !== window.answerLengths.at(-1)) window.answerLengths.push(n);
  }).observe(document.getElementById("transcript"), {subtree: true, childList: true, characterData: true});
}"""


async def test_playground_streams_the_answer_frame_by_frame(
        proxy_app: tuple[str, web.Application], fake_ollama: FakeOllama, page: Page,
        tmp_path: Path) -> None:
    base, _ = proxy_app
    pieces = ["The ", "sky ", "looks ", "blue ", "because ", "air ", "scatters ", "short ",
              "waves ", "most."]
    fake_ollama.push(Reply(chunks=pieces, thinking="Rayleigh scattering, keep it short.",
                           line_delay=0.08, prompt_eval_count=11, eval_count=len(pieces)))
    await open_view(page, base, "playground")
    await pick_model(page, "qwen3:8b")
    assert "context 40,960 tokens" in await page.inner_text("#model-info")
    assert "thinking" in await page.inner_text("#model-info")
    await page.fill("#system", "Answer in one sentence.")
    await page.fill("#user", "Why is the sky blue?")
    await page.evaluate(WATCH_ANSWER)
    await page.click("#send")
    stats = page.locator(".message.assistant .stats-line")
    await stats.filter(has_text="tokens/s").wait_for(timeout=WAIT_MS)

    assert await page.inner_text(".message.assistant .content") == "".join(pieces)
    lengths = await page.evaluate("window.answerLengths")
    assert len(lengths) >= 5, f"the answer appeared in {len(lengths)} steps, not streamed: {lengths}"
    assert lengths == sorted(lengths) and lengths[-1] == len("".join(pieces))
    # Collapsed once the answer began, but there: shown apart from the answer.
    assert "Rayleigh scattering" in (await page.text_content(".message.assistant .reasoning-text") or "")
    assert not await page.get_attribute(".message.assistant .reasoning", "open")
    stats_text = await stats.inner_text()
    assert "first token" in stats_text
    assert f"11 prompt + {len(pieces)} completion = {11 + len(pieces)} tokens" in stats_text
    # What reached Ollama: the system and user messages, the chosen model.
    path, body = fake_ollama.requests[-1]
    assert path == "/api/chat" and body["model"] == "qwen3:8b"
    assert [m["content"] for m in body["messages"]] == ["Answer in one sentence.", "Why is the sky blue?"]
    # The conversation is kept in the browser.
    saved = await page.evaluate("JSON.parse(localStorage.getItem('ollama-proxy-console.conversations'))")
    assert saved[0]["messages"][-1]["content"] == "".join(pieces)
    await page.click(".message.assistant .reasoning summary")  # open the reasoning for the picture
    await screenshot(page, tmp_path, "playground")
    await page.set_viewport_size(PHONE)  # one column on a phone, nothing wider than the screen
    await page.wait_for_function(
        "() => getComputedStyle(document.getElementById('view-playground')).gridTemplateColumns.trim().split(/\\s+/).length === 1",
        timeout=WAIT_MS)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await screenshot(page, tmp_path, "playground-phone")


async def test_stop_closes_the_upstream_request(
        proxy_app: tuple[str, web.Application], fake_ollama: FakeOllama, page: Page) -> None:
    base, _ = proxy_app
    words = [f"word{i} " for i in range(200)]
    fake_ollama.push(Reply(chunks=words, line_delay=0.1))
    await open_view(page, base, "playground")
    await pick_model(page, "llama3.2:latest")
    await page.fill("#user", "Talk for a long time.")
    await page.click("#send")
    # Functions, not expression strings: Playwright evaluates a string with eval(), which the
    # console's CSP (rightly) forbids once the condition has to be polled.
    await page.wait_for_function(
        "() => document.querySelector('.message.assistant .content')?.textContent.length > 0",
        timeout=WAIT_MS)
    assert fake_ollama.open_streams == 1
    await page.click("#stop")
    await asyncio.wait_for(fake_ollama.stream_closed.wait(), WAIT_MS / 1000)
    assert fake_ollama.client_disconnects == 1
    await page.locator("#chat-status", has_text="Stopped.").wait_for(timeout=WAIT_MS)
    shown = await page.inner_text(".message.assistant .content")
    assert 0 < len(shown) < len("".join(words))
    assert "stopped" in await page.inner_text(".message.assistant .stats-line")
    assert await page.is_enabled("#send") and not await page.is_enabled("#stop")


async def test_usage_chart_shows_the_tokens_ollama_reported(
        stored_app: tuple[str, web.Application], fake_ollama: FakeOllama, page: Page,
        tmp_path: Path) -> None:
    base, app = stored_app
    service = app[STORE_SERVICE]
    fake_ollama.push(Reply(content="one two three", prompt_eval_count=120, eval_count=30),
                     Reply(content="four five", prompt_eval_count=80, eval_count=20),
                     Reply(content="six", prompt_eval_count=40, eval_count=10))
    async with sdk(base) as client:
        for model in ["llama3.2", "qwen3:8b", "qwen3:8b"]:
            await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    # The store's background writer puts them in SQLite (the Usage API would flush them anyway).
    # A request is counted when its handler ends, just after the client has the answer, so the
    # writes are awaited until all three are in.
    async with asyncio.timeout(WAIT_MS / 1000):
        while sum(r.requests for r in await service.store.usage(0, 2**40)) < 3:
            service.written.clear()
            await service.written.wait()
    rows = await service.store.usage(0, 2**40)
    assert sum(r.requests for r in rows) == 3 and sum(r.input_tokens + r.output_tokens for r in rows) == 300
    await open_view(page, base, "usage")
    await page.wait_for_selector("#usage-tokens svg rect[data-series]", timeout=WAIT_MS)

    async def bars(chart: str) -> dict[str, int]:
        pairs = await page.eval_on_selector_all(
            f"#{chart} svg rect[data-series]", "rs => rs.map(r => [r.dataset.series, Number(r.dataset.value)])")
        totals: dict[str, int] = {}
        for name, value in pairs:
            totals[name] = totals.get(name, 0) + value
        return totals

    assert await bars("usage-tokens") == {"llama3.2": 150, "qwen3:8b": 150}
    assert await bars("usage-requests") == {"llama3.2": 1, "qwen3:8b": 2}
    assert await bars("usage-keys") == {"anonymous": 300}
    total_row = await page.inner_text("#usage-tokens tbody tr:last-child")
    assert total_row.split("\t")[-1].strip() == "300"
    assert (await page.text_content("#usage-tokens svg .unit")) == "tokens"
    legend = await page.inner_text("#usage-tokens .legend")
    assert "llama3.2" in legend and "qwen3:8b" in legend
    # CSV of the chart's table.
    async with page.expect_download() as info:
        await page.click("#usage-tokens button")
    csv = Path(await (await info.value).path()).read_text()
    assert csv.splitlines()[0].startswith("Day (UTC),") and csv.splitlines()[-1].endswith(",300")
    await screenshot(page, tmp_path, "usage")
    # The same view at phone width: the chart is redrawn to fit, nothing overflows the page.
    await page.set_viewport_size(PHONE)
    await page.wait_for_function(
        f"() => Number(document.querySelector('#usage-tokens svg').getAttribute('width')) <= {PHONE['width']}",
        timeout=WAIT_MS)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await screenshot(page, tmp_path, "usage-phone")


def sent_json(request: Request) -> dict[str, Any]:
    """The JSON body the page sent."""
    body = request.post_data_json
    assert isinstance(body, dict), body
    return body


CELLS = "rows => rows.map((r) => [...r.cells].map((c) => c.textContent))"  # a table's text


async def held_stream(client: openai.AsyncOpenAI, model: str) -> None:
    """A streamed completion read until it ends (or its task is cancelled)."""
    stream = await client.chat.completions.create(model=model, stream=True,
                                                  messages=[{"role": "user", "content": "hold on"}])
    async for _ in stream:
        pass


async def test_health_view_shows_the_proxys_load_and_a_stopped_server_as_down(
        fake_ollama: FakeOllama, page: Page, tmp_path: Path) -> None:
    # Two admission slots: a third request waits in the proxy's queue.
    server, app = await start_proxy(fake_ollama, {"admission": {"max_concurrent": 2}})
    base = f"http://127.0.0.1:{server.port}"
    held: list[asyncio.Task[None]] = []
    try:
        async with sdk(base) as client:
            # Ollama has served qwen3:8b once, so /metrics labels it by name (not "other").
            await client.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "hi"}])
            fake_ollama.push(Reply(chunks=["a", "b"], hang=True), Reply(chunks=["c", "d"], hang=True),
                             Reply(content="late"))
            await open_view(page, base, "health")
            await page.select_option("#health-refresh", "2")
            card = page.locator(".server")
            await card.locator(".pill.up").wait_for(timeout=WAIT_MS)
            assert VERSION in await card.inner_text()
            in_flight = page.locator("#proxy-card .stat", has_text="In flight").locator("strong")
            waiting = page.locator("#proxy-card .stat", has_text="Waiting in queue").locator("strong")
            await expect(in_flight).to_have_text("0", timeout=WAIT_MS)  # declared, no sample: none
            await expect(waiting).to_have_text("0", timeout=WAIT_MS)
            for _ in range(3):
                held.append(asyncio.create_task(held_stream(client, "qwen3:8b")))
            # What the real /metrics says on the next refreshes: two at Ollama, one queued.
            await expect(in_flight).to_have_text("2", timeout=WAIT_MS)
            await expect(waiting).to_have_text("1", timeout=WAIT_MS)
            assert (app[ADMISSION].active, app[ADMISSION].waiting) == (2, 1)
            assert fake_ollama.open_streams == 2
            rows = await page.locator("#proxy-card tbody tr").evaluate_all(CELLS)
            assert rows == [["qwen3:8b", "2"]]
            await screenshot(page, tmp_path, "health")
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)
            await expect(in_flight).to_have_text("0", timeout=WAIT_MS)
            await expect(waiting).to_have_text("0", timeout=WAIT_MS)
        await fake_ollama.stop()
        await card.locator(".pill.down").wait_for(timeout=WAIT_MS)  # the next refresh sees it
        assert "down" in await card.inner_text()
        assert await page.locator(".server .error").count() == 1
    finally:
        for task in held:
            task.cancel()
        await server.close()


async def test_health_view_shows_every_server_of_a_pool(page: Page) -> None:
    """The pool's real /v1/health body (issue 12): one card per server with its loaded models."""
    fakes = {"gpu-a": FakeOllama(["llama3.2:latest", "qwen3:8b"]), "gpu-b": FakeOllama(["llama3.2:latest"])}
    for fake in fakes.values():
        await fake.start()
    fakes["gpu-a"].load("qwen3:8b", size_vram=2_600_000_000)  # partly in VRAM
    fakes["gpu-b"].load("llama3.2:latest")
    server, app = await start_proxy(fakes["gpu-a"], {
        "upstreams": [{"name": name, "base_url": fake.url} for name, fake in fakes.items()],
        "routing": {"probe_interval": 0.05, "probe_timeout": 1.0, "discovery_interval": 0.1,
                    "discovery_timeout": 1.0, "eject_after": 3, "eject_base": 0.3, "eject_max": 1.0}})
    try:
        pool = app[CLIENT]
        await pool.wait_for(lambda: all(s.loaded for s in pool.servers), WAIT_MS / 1000)
        await open_view(page, f"http://127.0.0.1:{server.port}", "health")
        await page.select_option("#health-refresh", "2")
        a, b = page.locator('.server[data-server="gpu-a"]'), page.locator('.server[data-server="gpu-b"]')
        await a.locator(".pill.up").wait_for(timeout=WAIT_MS)
        await b.locator(".pill.up").wait_for(timeout=WAIT_MS)
        text = await a.inner_text()
        assert VERSION in text and "Models\n2" in text and "In flight\n0" in text
        [row] = await a.locator("tbody tr").evaluate_all(CELLS)
        assert row[0] == "qwen3:8b" and row[2] == "2.4 GiB" and row[3].endswith("%") and row[4].startswith("in ")
        assert 0 < int(row[3].rstrip("%")) < 100
        [row] = await b.locator("tbody tr").evaluate_all(CELLS)
        assert row[0] == "llama3.2:latest" and row[3] == "100%"
        await fakes["gpu-b"].stop()
        await b.locator(".pill.down").wait_for(timeout=WAIT_MS)
        assert await b.locator(".error").count() == 1 and await a.locator(".pill.up").count() == 1
    finally:
        await server.close()
        for fake in fakes.values():
            await fake.stop()


async def test_a_401_asks_for_a_key_kept_for_the_tab_only(fake_ollama: FakeOllama, page: Page) -> None:
    key = new_key()  # a real key of the access layer: the console page itself needs none
    server, _app = await start_proxy(fake_ollama, key=key)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.headers.get("authorization", "")) if "/v1/models" in r.url else None)
    try:
        await page.goto(f"http://127.0.0.1:{server.port}/console/#playground")
        dialog = page.locator("#key-dialog")
        await dialog.wait_for(timeout=WAIT_MS)  # /v1/models answered 401
        assert "API key" in await dialog.inner_text()
        await page.fill("#key-input", key)
        await page.click("#key-form button[type=submit]")
        await pick_model(page, "llama3.2:latest")  # the list came with the key
        assert sent[0] == "" and sent[-1] == f"Bearer {key}"
        assert await page.evaluate("sessionStorage.getItem('ollama-proxy-console.api-key')") == key
        assert key not in await page.evaluate("JSON.stringify(localStorage)")
        # The key goes only to this origin: a call elsewhere is refused before it is made.
        refused = await page.evaluate("""async () => {
            const api = await import('/console/api.js');
            try { await api.call('http://198.51.100.1:9/v1/models'); return 'sent'; }
            catch (e) { return e.message; } }""")
        assert refused.startswith("refusing to call another origin")
    finally:
        await server.close()


async def test_tool_calls_are_shown_as_blocks(
        proxy_app: tuple[str, web.Application], fake_ollama: FakeOllama, page: Page) -> None:
    base, _ = proxy_app
    fake_ollama.push(Reply(content="", tool_calls=[ToolCall("get_weather", {"city": "Paris"}, "call_7")]))
    await open_view(page, base, "playground")
    await pick_model(page, "llama3.2:latest")
    await page.click(".tools-box summary")
    await page.fill("#tools", json.dumps([{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]))
    await page.fill("#user", "Weather in Paris?")
    await page.click("#send")
    block = page.locator(".message.assistant .tool-call")
    await block.wait_for(timeout=WAIT_MS)
    text = await block.inner_text()
    assert "get_weather" in text and "call_7" in text and '"city": "Paris"' in text
    assert fake_ollama.requests[-1][1]["tools"][0]["function"]["name"] == "get_weather"


async def test_a_dropped_image_is_sent_as_a_data_url(
        proxy_app: tuple[str, web.Application], fake_ollama: FakeOllama, page: Page) -> None:
    base, _ = proxy_app
    png = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(png, "PNG")
    encoded = base64.b64encode(png.getvalue()).decode()
    fake_ollama.push(Reply(content="A red square."))
    await open_view(page, base, "playground")
    await pick_model(page, "hf.co/org/repo:Q4_K_M")
    await page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], "red.png", {type: "image/png"}));
        document.getElementById("dropzone").dispatchEvent(
            new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
    }""", encoded)
    await page.wait_for_selector("#images img", timeout=WAIT_MS)
    await page.fill("#user", "What is this?")
    await page.click("#send")
    await page.locator(".message.assistant .stats-line", has_text="tokens").wait_for(timeout=WAIT_MS)
    [user] = [m for m in fake_ollama.requests[-1][1]["messages"] if m["role"] == "user"]
    assert user["content"] == "What is this?" and user["images"] == [encoded]
    assert await page.locator(".message.user img").count() == 1


async def test_an_upstream_error_is_shown_with_openais_message(
        proxy_app: tuple[str, web.Application], fake_ollama: FakeOllama, page: Page,
        caplog: pytest.LogCaptureFixture) -> None:
    base, _ = proxy_app
    caplog.set_level(logging.INFO)
    fake_ollama.push(Reply(status=500, error="model runner has unexpectedly stopped"))
    await open_view(page, base, "playground")
    await pick_model(page, "llama3.2:latest")
    await page.fill("#user", "hi")
    async with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/v1/chat/completions")) as info:
        await page.click("#send")
    request_id = (await info.value).headers["x-request-id"]
    error = page.locator(".message.assistant .error")
    await error.wait_for(timeout=WAIT_MS)
    # OpenAI's generic text with the id to quote; Ollama's own words only in the proxy's log.
    shown = await error.inner_text()
    assert shown == f"The model server had an error while processing your request. (request id {request_id})"
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("proxy") and r.levelno >= logging.WARNING]
    assert any("model runner has unexpectedly stopped" in m and request_id in m for m in logged), logged
    assert await page.is_enabled("#send")


async def test_stored_completions_are_saved_listed_and_opened(
        stored_app: tuple[str, web.Application], fake_ollama: FakeOllama, page: Page) -> None:
    base, _ = stored_app
    await open_view(page, base, "playground")
    await page.wait_for_selector("#stored-block:not([hidden])", timeout=WAIT_MS)  # the store answers
    assert await page.locator("#stored-list li").count() == 0
    await pick_model(page, "qwen3:8b")
    await page.fill("#system", "Be brief.")
    await page.fill("#user", "Why are there tides?")
    fake_ollama.push(Reply(chunks=["Stored ", "answer ", "about tides."], prompt_eval_count=9, eval_count=5),
                     Reply(content="Neap tides are weak.", prompt_eval_count=20, eval_count=6))
    async with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/chat/completions")) as sent:
        await page.click("#send")
    body = sent_json(await sent.value)
    assert body["store"] is True and body["stream"] is True and body["stream_options"] == {"include_usage": True}
    # Saved by the real store, then listed from GET /v1/chat/completions.
    item = page.locator("#stored-list button")
    await item.wait_for(timeout=WAIT_MS)
    assert "qwen3:8b" in await item.inner_text() and "Stored answer about tides." in await item.inner_text()
    async with sdk(base) as client:
        [stored] = (await client.chat.completions.list()).data
        assert stored.choices[0].message.content == "Stored answer about tides."
        assert stored.usage is not None and (stored.usage.prompt_tokens, stored.usage.completion_tokens) == (9, 5)
        messages = (await client.chat.completions.messages.list(stored.id)).data
        assert [(m.role, m.content) for m in messages] == [("system", "Be brief."), ("user", "Why are there tides?")]
    # Opened from the list in a fresh conversation: its messages come from the store.
    await page.click("#new-conversation")
    await page.fill("#system", "")
    await item.click()
    await page.locator(".message.assistant .content", has_text="Stored answer about tides.").wait_for(
        timeout=WAIT_MS)
    assert await page.inner_text(".message.user .content") == "Why are there tides?"
    assert await page.input_value("#system") == "Be brief."
    assert "9 prompt + 5 completion = 14 tokens" in await page.inner_text(".message.assistant .stats-line")
    # Going on from it: the whole conversation is sent, stored too.
    await page.fill("#user", "And neap tides?")
    async with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/chat/completions")) as sent:
        await page.click("#send")
    body = sent_json(await sent.value)
    assert body["store"] is True
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["messages"][0]["content"] == "Be brief."
    await page.locator(".message.assistant .content", has_text="Neap tides are weak.").wait_for(timeout=WAIT_MS)
    listed = page.locator("#stored-list li")
    await expect(listed).to_have_count(2, timeout=WAIT_MS)
    # Both, newest first by their `created` second (often the same one here, so not compared).
    texts = await listed.all_inner_texts()
    assert sorted("Neap tides are weak." in t for t in texts) == [False, True]
    assert sorted("Stored answer about tides." in t for t in texts) == [False, True]


async def test_usage_says_so_when_the_proxy_has_no_usage_api(proxy_url: str, page: Page) -> None:
    await open_view(page, proxy_url, "usage")
    message = page.locator("#usage-charts .error")
    await message.wait_for(timeout=WAIT_MS)
    assert "not available on this proxy" in await message.inner_text()
