"""The console in headless Chromium against the real proxy and the stand-in Ollama.

Each view is driven as a user would (click, type, wait for what appears) and photographed at
1280×800; the checks read the DOM, and the stand-in tells what reached Ollama.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image
from playwright.async_api import Page

from proxy.app import create_app
from proxy.outcome import OUTCOME_LISTENERS, Outcome
from tests.conftest import make_config
from tests.console.conftest import PHONE, screenshot
from tests.fake_ollama import VERSION, FakeOllama, Reply, ToolCall

WAIT_MS = 15_000  # an upper bound for events awaited in the page, not a pause


async def start_proxy(fake: FakeOllama, *, key: str | None = None,
                      stored: bool = False) -> tuple[TestServer, web.Application]:
    """The proxy with the test-only stand-ins below registered before it starts."""
    app = create_app(make_config(fake.url, {"health": {"interval": 0}}))
    usage = UsageStandIn()
    app[OUTCOME_LISTENERS].append(usage.record)
    app[USAGE] = usage
    app.router.add_get("/v1/organization/usage/completions", usage.handle)
    app.router.add_get("/metrics", metrics_stand_in)
    if stored:
        app.router.add_get("/v1/chat/completions", stored_list_stand_in)
        app.router.add_get("/v1/chat/completions/{id}/messages", stored_messages_stand_in)
    if key is not None:
        app[SEEN_AUTH] = []
        app.middlewares.append(require_key(key))
    server = TestServer(app)
    await server.start_server()
    return server, app


@pytest.fixture
async def proxy_app(fake_ollama: FakeOllama) -> AsyncIterator[tuple[str, web.Application]]:
    server, app = await start_proxy(fake_ollama)
    yield f"http://127.0.0.1:{server.port}", app
    await server.close()


# --------------------------------------------------------------------------------------------
# TEST-ONLY STAND-INS, to be swapped at merge:
#  * UsageStandIn answers GET /v1/organization/usage/completions in OpenAI's page/bucket/result
#    shape from the Outcomes this proxy reported. At merge, drop it (and its two lines in
#    proxy_app) and enable the real store (issue 10) in proxy_app's config instead; the test
#    body stays the same.
#  * metrics_stand_in answers GET /metrics with the two series the health view reads. At merge,
#    drop it and enable the real metrics (issue 11).
# --------------------------------------------------------------------------------------------
class UsageStandIn:
    """OpenAI's completions Usage API over the outcomes seen, bucketed by UTC day."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, Outcome]] = []
        self.told = asyncio.Event()

    def record(self, outcome: Outcome) -> None:
        self.rows.append((time.time(), outcome))
        self.told.set()

    async def handle(self, request: web.Request) -> web.Response:
        query = request.query
        start, end = int(query["start_time"]), int(query.get("end_time", time.time()))
        assert query.get("bucket_width") == "1d" and query.get("group_by") == "model,api_key_id"
        data = []
        for day in range(start, end, 86400):
            groups: dict[tuple[str, str], dict[str, Any]] = {}
            for at, o in self.rows:
                if day <= at < day + 86400:
                    r = groups.setdefault((o.model, o.key_id), {
                        "object": "organization.usage.completions.result", "input_tokens": 0,
                        "output_tokens": 0, "input_cached_tokens": 0, "num_model_requests": 0,
                        "project_id": None, "user_id": None, "api_key_id": o.key_id,
                        "model": o.model, "batch": None})
                    r["input_tokens"] += o.prompt_tokens
                    r["output_tokens"] += o.completion_tokens
                    r["num_model_requests"] += 1
            data.append({"object": "bucket", "start_time": day, "end_time": day + 86400,
                         "results": list(groups.values())})
        return web.json_response({"object": "page", "data": data, "has_more": False, "next_page": None})


USAGE = web.AppKey("test_usage_stand_in", UsageStandIn)


async def metrics_stand_in(request: web.Request) -> web.Response:
    return web.Response(text=(
        "# TYPE ollama_proxy_requests_in_flight gauge\n"
        'ollama_proxy_requests_in_flight{model="qwen3:8b"} 2\n'
        'ollama_proxy_requests_in_flight{model="llama3.2:latest"} 1\n'
        "# TYPE ollama_proxy_admission_waiting gauge\n"
        "ollama_proxy_admission_waiting 3\n"), content_type="text/plain")
STORED = {
    "object": "chat.completion", "id": "chatcmpl-stored1", "created": 1764460800, "model": "qwen3:8b",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
        "role": "assistant", "content": "Stored answer about tides.", "tool_calls": None}}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
    "metadata": {}, "request_id": "req_1", "service_tier": "default"}


async def stored_list_stand_in(request: web.Request) -> web.Response:
    """Stands in for the store's GET /v1/chat/completions (issue 10), OpenAI's list shape.
    At merge, drop both stored stand-ins and enable the real store in start_proxy."""
    assert request.query.get("order") == "desc"
    return web.json_response({"object": "list", "data": [STORED], "first_id": STORED["id"],
                              "last_id": STORED["id"], "has_more": False})


async def stored_messages_stand_in(request: web.Request) -> web.Response:
    assert request.match_info["id"] == STORED["id"]
    return web.json_response({"object": "list", "data": [
        {"id": "chatcmpl-stored1-0", "role": "system", "content": "Be brief.", "name": None, "content_parts": None},
        {"id": "chatcmpl-stored1-1", "role": "user", "content": "Why are there tides?", "name": None,
         "content_parts": None}], "first_id": "chatcmpl-stored1-0", "last_id": "chatcmpl-stored1-1",
        "has_more": False})


SEEN_AUTH = web.AppKey("test_seen_authorization", list[str])


def require_key(key: str) -> Any:
    """Stands in for API keys (issue 9): /v1/* needs ``Bearer <key>``, else OpenAI's 401.
    At merge, drop it and configure a real key in start_proxy instead."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/v1/") and request.path != "/v1/health":
            sent = request.headers.get("Authorization", "")
            request.app[SEEN_AUTH].append(sent)
            if sent != f"Bearer {key}":
                return web.json_response({"error": {
                    "message": "Incorrect API key provided.", "type": "invalid_request_error",
                    "param": None, "code": "invalid_api_key"}}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    return middleware
# ------------------------------------------------------------------ end of test-only stand-ins


async def open_view(page: Page, base: str, view: str) -> None:
    await page.goto(f"{base}/console/#{view}")
    await page.wait_for_selector(f"#view-{view}:not([hidden])", timeout=WAIT_MS)


async def pick_model(page: Page, model: str) -> None:
    await page.wait_for_selector(f'#model option[value="{model}"]', state="attached", timeout=WAIT_MS)
    await page.select_option("#model", model)


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
        proxy_app: tuple[str, web.Application], fake_ollama: FakeOllama, page: Page,
        tmp_path: Path) -> None:
    base, app = proxy_app
    usage = app[USAGE]
    fake_ollama.push(Reply(content="one two three", prompt_eval_count=120, eval_count=30),
                     Reply(content="four five", prompt_eval_count=80, eval_count=20),
                     Reply(content="six", prompt_eval_count=40, eval_count=10))
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0) as sdk:
        for model in ["llama3.2", "qwen3:8b", "qwen3:8b"]:
            await sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert len(usage.rows) == 3
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


async def test_health_view_shows_a_stopped_server_as_down(
        proxy_app: tuple[str, web.Application], fake_ollama: FakeOllama, page: Page,
        tmp_path: Path) -> None:
    base, _ = proxy_app
    await open_view(page, base, "health")
    await page.select_option("#health-refresh", "2")
    card = page.locator(".server")
    await card.locator(".pill.up").wait_for(timeout=WAIT_MS)
    assert VERSION in await card.inner_text()
    proxy_card = await page.inner_text("#proxy-card")
    assert "In flight\n3" in proxy_card and "Waiting in queue\n3" in proxy_card
    await screenshot(page, tmp_path, "health")
    await fake_ollama.stop()
    await card.locator(".pill.down").wait_for(timeout=WAIT_MS)  # the next refresh sees it
    assert "down" in await card.inner_text()
    assert await page.locator(".server .error").count() == 1


async def test_a_401_asks_for_a_key_kept_for_the_tab_only(fake_ollama: FakeOllama, page: Page) -> None:
    server, app = await start_proxy(fake_ollama, key="sk-console-test")
    try:
        await page.goto(f"http://127.0.0.1:{server.port}/console/#playground")
        dialog = page.locator("#key-dialog")
        await dialog.wait_for(timeout=WAIT_MS)  # /v1/models answered 401
        assert "Incorrect API key provided." in await dialog.inner_text()
        await page.fill("#key-input", "sk-console-test")
        await page.click("#key-form button[type=submit]")
        await pick_model(page, "llama3.2:latest")  # the list came with the key
        assert app[SEEN_AUTH][0] == "" and app[SEEN_AUTH][-1] == "Bearer sk-console-test"
        assert await page.evaluate("sessionStorage.getItem('ollama-proxy-console.api-key')") == "sk-console-test"
        assert "sk-console-test" not in await page.evaluate("JSON.stringify(localStorage)")
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
        proxy_app: tuple[str, web.Application], fake_ollama: FakeOllama, page: Page) -> None:
    base, _ = proxy_app
    fake_ollama.push(Reply(status=500, error="model runner has unexpectedly stopped"))
    await open_view(page, base, "playground")
    await pick_model(page, "llama3.2:latest")
    await page.fill("#user", "hi")
    await page.click("#send")
    error = page.locator(".message.assistant .error")
    await error.wait_for(timeout=WAIT_MS)
    assert "model runner has unexpectedly stopped" in await error.inner_text()
    assert await page.is_enabled("#send")


async def test_stored_completions_are_listed_and_opened(fake_ollama: FakeOllama, page: Page) -> None:
    server, _ = await start_proxy(fake_ollama, stored=True)
    try:
        await page.goto(f"http://127.0.0.1:{server.port}/console/#playground")
        item = page.locator("#stored-list button")
        await item.wait_for(timeout=WAIT_MS)
        assert "qwen3:8b" in await item.inner_text() and "Stored answer" in await item.inner_text()
        await item.click()
        await page.locator(".message.assistant .content", has_text="Stored answer about tides.").wait_for(
            timeout=WAIT_MS)
        assert await page.inner_text(".message.user .content") == "Why are there tides?"
        assert "9 prompt + 5 completion = 14 tokens" in await page.inner_text(".message.assistant .stats-line")
        # With the store on, a request asks to be stored (this branch's proxy refuses store: true
        # with a 400 until the store is merged; only what the console sends is checked here).
        await pick_model(page, "qwen3:8b")
        await page.fill("#user", "And neap tides?")
        async with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/chat/completions")) as sent:
            await page.click("#send")
        body = (await sent.value).post_data_json
        assert body["store"] is True and body["stream_options"] == {"include_usage": True}
        assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
        assert body["messages"][0]["content"] == "Be brief."
    finally:
        await server.close()


async def test_usage_says_so_when_the_proxy_has_no_usage_api(proxy_url: str, page: Page) -> None:
    await open_view(page, proxy_url, "usage")
    message = page.locator("#usage-charts .error")
    await message.wait_for(timeout=WAIT_MS)
    assert "not available on this proxy" in await message.inner_text()
