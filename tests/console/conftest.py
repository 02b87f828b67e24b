"""Headless Chromium for the console tests: Debian's ``chromium`` driven by Playwright.

The browser is the system one (``/usr/bin/chromium``, installed by ``.ci/system-packages`` in
CI); Playwright's own browser download is never used. A missing browser fails the tests: they
are part of CI, not optional.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image
from playwright.async_api import Browser, ConsoleMessage, Page, ViewportSize, async_playwright

from tests.console.helpers import start_proxy, store_on
from tests.fake_ollama import FakeOllama

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
# Set to a folder (e.g. docs) to keep a copy of each view's screenshot for the README.
DOCS_DIR_ENV = "CONSOLE_SCREENSHOTS_DIR"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/system-packages does)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


class PageErrors:
    """Script errors and CSP violations the page reported (failed fetches are not errors here:
    the console probes optional APIs such as /metrics and handles their 404)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.errors.append(message.text)

    def page_error(self, error: Exception) -> None:
        self.errors.append(str(error))


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    seen = PageErrors()
    page.on("console", seen.console)
    page.on("pageerror", seen.page_error)
    yield page
    await context.close()
    assert seen.errors == [], seen.errors


def distinct_colours(png: Path) -> int:
    """How many colours a screenshot uses (a blank or failed page has one or two)."""
    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colours) if colours is not None else 1 << 20


async def screenshot(page: Page, folder: Path, name: str) -> Path:
    """A screenshot of the viewport under ``folder``, checked non-blank, kept for docs if asked."""
    path = folder / f"console-{name}.png"
    await page.screenshot(path=str(path))
    viewport = page.viewport_size or DESKTOP
    with Image.open(path) as image:
        assert image.size == (viewport["width"], viewport["height"])
    assert distinct_colours(path) >= 32, f"{name} screenshot looks blank"
    docs = os.environ.get(DOCS_DIR_ENV)
    if docs:
        shutil.copyfile(path, Path(docs) / path.name)
    return path


@pytest.fixture
async def proxy_app(fake_ollama: FakeOllama) -> AsyncIterator[tuple[str, web.Application]]:
    server, app = await start_proxy(fake_ollama)
    yield f"http://127.0.0.1:{server.port}", app
    await server.close()


@pytest.fixture
async def stored_app(fake_ollama: FakeOllama, tmp_path: Path) -> AsyncIterator[tuple[str, web.Application]]:
    """The proxy with its store on: the Usage API and stored chat completions are real."""
    server, app = await start_proxy(fake_ollama, store_on(tmp_path))
    yield f"http://127.0.0.1:{server.port}", app
    await server.close()
