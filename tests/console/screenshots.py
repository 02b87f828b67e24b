"""Regenerates the console's screenshots in the docs: ``python -m tests.console.screenshots docs/``.

The real console, served by the real proxy (store on, metrics on) against the stand-in Ollama,
driven in Debian's Chromium as the browser tests drive it: a Markdown answer in the playground,
compare, usage, health with requests held and queued, batches (when the proxy serves the Batch
API), at 1280×800 and at phone width (390×844). Each picture is checked non-blank and written
as ``<folder>/console-<name>.png``; the names written are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import openai
from aiohttp import web
from playwright.async_api import Page, async_playwright

from proxy.appkeys import STORE_SERVICE
from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP, PHONE, screenshot
from tests.console.helpers import WAIT_MS, open_view, pick_model, sdk, start_proxy, store_on
from tests.console.test_markdown import ANSWER, cut
from tests.fake_ollama import FakeOllama, Reply

Scene = Callable[[Page, str, FakeOllama, web.Application, Path], Awaitable[list[str]]]


async def playground(page: Page, base: str, fake: FakeOllama, app: web.Application, out: Path) -> list[str]:
    fake.push(Reply(chunks=cut(ANSWER, 6), thinking="A tiny function, a table of two languages, then how to run it.",
                    line_delay=0.004, prompt_eval_count=24, eval_count=180))
    await open_view(page, base, "playground")
    await pick_model(page, "qwen3:8b")
    await page.fill("#system", "Answer with a short example.")
    await page.fill("#user", "Show me a greeting function in Python, and compare Python with Rust.")
    await page.click("#send")
    await page.locator(".message.assistant .stats-line", has_text="tokens/s").wait_for(timeout=WAIT_MS)
    await page.click(".message.assistant .reasoning summary")
    await screenshot(page, out, "playground")
    await page.set_viewport_size(PHONE)
    await page.locator(".message.assistant .code-block").scroll_into_view_if_needed()
    await screenshot(page, out, "playground-phone")
    return ["playground", "playground-phone"]


async def compare(page: Page, base: str, fake: FakeOllama, app: web.Application, out: Path) -> list[str]:
    fake.push(
        Reply(chunks=cut("Tides are caused mainly by the **Moon's gravity** pulling on the oceans:\n\n"
                         "- the side facing the Moon bulges toward it\n- the far side bulges away\n\n"
                         "so most coasts see **two high tides a day**.", 4),
              line_delay=0.01, prompt_eval_count=14, eval_count=41),
        Reply(chunks=cut("The Moon and, to a lesser degree, the Sun pull on Earth's water. Earth rotates "
                         "through the two bulges, giving *two* tides about every `24 h 50 min`.", 5),
              line_delay=0.02, prompt_eval_count=14, eval_count=33))
    await open_view(page, base, "compare")
    await pick_model(page, "llama3.2:latest", "#compare-model-1")
    await pick_model(page, "qwen3:8b", "#compare-model-2")
    await page.fill("#compare-user", "Why are there two tides a day?")
    await page.click("#compare-send")
    await page.locator("#compare-summary tbody tr").nth(1).wait_for(timeout=WAIT_MS)
    await screenshot(page, out, "compare")
    await page.set_viewport_size(PHONE)
    await page.locator("#compare-columns").scroll_into_view_if_needed()
    await screenshot(page, out, "compare-phone")
    return ["compare", "compare-phone"]


async def usage(page: Page, base: str, fake: FakeOllama, app: web.Application, out: Path) -> list[str]:
    service = app[STORE_SERVICE]
    before = sum(r.requests for r in await service.store.usage(0, 2**40))
    plan = [("llama3.2", 120, 30), ("qwen3:8b", 80, 20), ("qwen3:8b", 400, 90), ("llama3.2", 60, 12)]
    fake.push(*(Reply(content="ok", prompt_eval_count=p, eval_count=e) for _, p, e in plan))
    async with sdk(base) as client:
        for model, _, _ in plan:
            await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    async with asyncio.timeout(WAIT_MS / 1000):
        while sum(r.requests for r in await service.store.usage(0, 2**40)) < before + len(plan):
            service.written.clear()
            await service.written.wait()
    await open_view(page, base, "usage")
    await page.wait_for_selector("#usage-tokens svg rect[data-series]", timeout=WAIT_MS)
    await screenshot(page, out, "usage")
    await page.set_viewport_size(PHONE)
    await page.wait_for_function(
        f"() => Number(document.querySelector('#usage-tokens svg').getAttribute('width')) <= {PHONE['width']}",
        timeout=WAIT_MS)
    await screenshot(page, out, "usage-phone")
    return ["usage", "usage-phone"]


async def held_stream(client: openai.AsyncOpenAI, model: str) -> None:
    stream = await client.chat.completions.create(model=model, stream=True,
                                                  messages=[{"role": "user", "content": "hold on"}])
    async for _ in stream:
        pass


async def health(page: Page, base: str, fake: FakeOllama, app: web.Application, out: Path) -> list[str]:
    fake.load("qwen3:8b", size_vram=2_600_000_000)
    fake.load("llama3.2:latest")
    fake.push(*(Reply(chunks=["a", "b"], hang=True) for _ in range(3)))
    async with sdk(base) as client:
        held = [asyncio.create_task(held_stream(client, "qwen3:8b")) for _ in range(3)]
        try:
            await open_view(page, base, "health")
            await page.select_option("#health-refresh", "2")
            waiting = page.locator("#proxy-card .stat", has_text="Waiting in queue").locator("strong")
            await page.wait_for_function(
                "() => document.querySelector('#proxy-card')?.textContent.includes('Waiting in queue1')", timeout=WAIT_MS)
            assert await waiting.inner_text() == "1"
            await screenshot(page, out, "health")
        finally:
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)
    return ["health"]


async def batches(page: Page, base: str, fake: FakeOllama, app: web.Application, out: Path) -> list[str]:
    lines = "".join(json.dumps({"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": "llama3.2", "messages": [{"role": "user", "content": f"Summarise part {i}"}]}}) + "\n"
                    for i in range(4))
    async with sdk(base) as client:
        try:
            uploaded = await client.files.create(file=("in.jsonl", lines.encode(), "application/jsonl"), purpose="batch")
        except openai.NotFoundError:
            print("batches: skipped, this proxy does not serve /v1/files and /v1/batches (issue 20)", file=sys.stderr)
            return []
        for _ in range(2):
            await client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
    await open_view(page, base, "batches")
    await page.locator("#batches-list tbody tr").first.wait_for(timeout=WAIT_MS)
    await screenshot(page, out, "batches")
    await page.set_viewport_size(PHONE)
    await screenshot(page, out, "batches-phone")
    return ["batches", "batches-phone"]


SCENES: dict[str, Scene] = {"playground": playground, "compare": compare, "usage": usage,
                            "health": health, "batches": batches}


async def run(out: Path, only: list[str]) -> list[str]:
    written: list[str] = []
    fake = FakeOllama()
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        # Two admission slots, so the health picture shows a request queued behind two.
        server, app = await start_proxy(fake, {**store_on(Path(tmp)), "admission": {"max_concurrent": 2}})
        base = f"http://127.0.0.1:{server.port}"
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for name in only:
                    context = await browser.new_context(viewport=DESKTOP, color_scheme="light")
                    page = await context.new_page()
                    written += await SCENES[name](page, base, fake, app, out)
                    await context.close()
                await browser.close()
        finally:
            await server.close()
            await fake.stop()
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.console.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where the console-<name>.png files go (e.g. docs/)")
    parser.add_argument("--only", nargs="+", choices=list(SCENES), default=list(SCENES), help="some scenes only")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    for name in asyncio.run(run(args.folder, args.only)):
        print(args.folder / f"console-{name}.png")


if __name__ == "__main__":
    main()
