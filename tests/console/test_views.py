"""Compare, Batches, the queue in Health and aliases in the picker, in headless Chromium.

Against the real proxy and the stand-in Ollama; where a capability is built by another issue
and not served on this branch yet, its real-API test skips naming that issue, and the view is
also driven with the API's public shapes answered in the browser (``page.route``), so what it
renders is tested either way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from playwright.async_api import Page, Route, expect

from proxy.config import ConfigError
from tests.conftest import make_config
from tests.console.conftest import PHONE, screenshot
from tests.console.helpers import WAIT_MS, open_view, pick_model, sdk, start_proxy, store_on
from tests.fake_ollama import FakeOllama, Reply

CELLS = "rows => rows.map((r) => [...r.cells].map((c) => c.textContent))"


async def fits_phone(page: Page) -> None:
    """At phone width nothing is wider than the screen (tables scroll inside their box)."""
    await page.set_viewport_size(PHONE)
    await page.wait_for_function(f"() => document.documentElement.scrollWidth <= {PHONE['width']}", timeout=WAIT_MS)


async def test_compare_streams_two_models_side_by_side_with_their_figures(
        proxy_app: tuple[str, web.Application], fake_ollama: FakeOllama, page: Page,
        tmp_path: Path) -> None:
    base, _ = proxy_app
    # Markdown as sent -> (text as shown, completion tokens); which model gets which reply is
    # the order the two requests reach the stand-in, so each column is matched by its text.
    answers = {"Tides come from the **Moon's** pull.": ("Tides come from the Moon's pull.", 9),
               "The Moon and the Sun pull the *oceans*; `two` bulges.": ("The Moon and the Sun pull the oceans; two bulges.", 14)}
    fake_ollama.push(*(Reply(chunks=[w + " " for w in text.split()], line_delay=0.02, prompt_eval_count=12,
                             eval_count=n) for text, (_, n) in answers.items()))
    by_text = dict(answers.values())
    await open_view(page, base, "compare")
    await pick_model(page, "llama3.2:latest", "#compare-model-1")
    await pick_model(page, "qwen3:8b", "#compare-model-2")
    await page.fill("#compare-user", "Why are there tides?")
    await page.click("#compare-send")
    summary = page.locator("#compare-summary tbody tr")
    await expect(summary).to_have_count(2, timeout=WAIT_MS)
    columns = page.locator("#compare-columns .column")
    assert await columns.evaluate_all("cs => cs.map((c) => c.dataset.model)") == ["llama3.2:latest", "qwen3:8b"]
    shown = {}
    for i in range(2):
        column = columns.nth(i)
        text = (await column.locator(".content").inner_text()).strip()
        stats = await column.locator(".stats-line").text_content() or ""
        n = by_text[text]
        assert "first token" in stats and "tokens/s" in stats and f"12 prompt + {n} completion = {12 + n} tokens" in stats
        figures = await column.locator(".figures").inner_text()
        assert "First token" in figures and "Tokens/s" in figures and f"{12 + n} tokens" in figures
        shown[await column.get_attribute("data-model")] = n
    assert await columns.locator(".content strong").count() == 1 and await columns.locator(".content em").count() == 1
    # Both requests reached Ollama, one per model, with the same prompt.
    chats = [body for path, body in fake_ollama.requests if path == "/api/chat"]
    assert sorted(b["model"] for b in chats) == ["llama3.2:latest", "qwen3:8b"]
    assert {b["messages"][-1]["content"] for b in chats} == {"Why are there tides?"}
    rows = await summary.evaluate_all(CELLS)
    assert [r[0] for r in rows] == ["llama3.2:latest", "qwen3:8b"]
    assert [r[5] for r in rows] == [str(12 + shown["llama3.2:latest"]), str(12 + shown["qwen3:8b"])]
    assert all(r[6] == "done" for r in rows)
    await screenshot(page, tmp_path, "compare")
    await fits_phone(page)  # one column per answer on a phone
    assert await page.evaluate(
        "() => getComputedStyle(document.getElementById('compare-columns')).gridTemplateColumns.trim().split(/\\s+/).length") == 1
    await screenshot(page, tmp_path, "compare-phone")


async def test_compare_needs_two_different_models(proxy_app: tuple[str, web.Application], page: Page) -> None:
    base, _ = proxy_app
    await open_view(page, base, "compare")
    await pick_model(page, "qwen3:8b", "#compare-model-1")
    await pick_model(page, "qwen3:8b", "#compare-model-2")
    await page.fill("#compare-user", "hi")
    await page.click("#compare-send")
    await expect(page.locator("#compare-status")).to_have_text("Pick two or three different models.")
    assert await page.locator("#compare-columns .column").count() == 0


def aliases_config() -> dict[str, Any]:
    toml = {"models": {"aliases": {"fast": "llama3.2:latest"}}}
    try:
        make_config("http://127.0.0.1:1", toml)
    except ConfigError:
        pytest.skip("[models.aliases] is issue 19 (model aliases), not on this branch yet")
    return toml


async def test_an_alias_is_marked_in_the_picker_with_its_target(fake_ollama: FakeOllama, page: Page) -> None:
    toml = aliases_config()
    server, _ = await start_proxy(fake_ollama, toml)
    try:
        await open_view(page, f"http://127.0.0.1:{server.port}", "playground")
        await pick_model(page, "fast")
        option = page.locator('#model option[value="fast"]')
        assert await option.get_attribute("data-alias-for") == "llama3.2:latest"
        assert await option.inner_text() == "fast (alias of llama3.2:latest)"
        assert (await page.inner_text("#model-info")).startswith("alias for llama3.2:latest")
    finally:
        await server.close()


async def test_the_picker_marks_entries_with_alias_for(proxy_app: tuple[str, web.Application], page: Page) -> None:
    """/v1/models as issue 19 answers it, routed in the browser: the view's side of aliases."""
    base, _ = proxy_app

    async def models(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        body["data"].append({"id": "fast", "object": "model", "created": 0, "owned_by": "library",
                             "alias_for": "llama3.2:latest", "capabilities": ["completion"]})
        await route.fulfill(response=response, json=body)

    await page.route("**/v1/models", models)
    await open_view(page, base, "playground")
    await pick_model(page, "fast")
    option = page.locator('#model option[value="fast"]')
    assert await option.get_attribute("class") == "alias"
    assert await option.inner_text() == "fast (alias of llama3.2:latest)"
    assert (await page.inner_text("#model-info")).startswith("alias for llama3.2:latest")
    assert await page.locator('#model option[value="qwen3:8b"]').get_attribute("data-alias-for") is None
    await open_view(page, base, "compare")
    await pick_model(page, "fast", "#compare-model-2")


def batch(i: int, status: str, total: int, completed: int, failed: int = 0, **extra: Any) -> dict[str, Any]:
    """A batch object as OpenAI's SDK reads it."""
    return {"id": f"batch_{i}", "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
            "input_file_id": f"file-in{i}", "completion_window": "24h", "status": status,
            "output_file_id": extra.get("output_file_id"), "error_file_id": extra.get("error_file_id"),
            "created_at": 1_767_000_000 + i, "request_counts": {"total": total, "completed": completed, "failed": failed},
            "metadata": None}


async def test_batches_view_pages_shows_progress_downloads_and_cancels(
        proxy_app: tuple[str, web.Application], page: Page) -> None:
    """The Batch API's public shapes (issue 20), answered in the browser."""
    base, _ = proxy_app
    first = [batch(3, "in_progress", 20, 11, 1), batch(2, "completed", 4, 3, 1, output_file_id="file-out2",
                                                         error_file_id="file-err2")]
    older = [batch(1, "cancelled", 5, 0)]
    seen: list[tuple[str, str]] = []

    async def api(route: Route) -> None:
        request = route.request
        seen.append((request.method, request.url.removeprefix(base)))
        path = request.url.removeprefix(base)
        if path == "/v1/batches?limit=20":
            await route.fulfill(json={"object": "list", "data": first, "first_id": "batch_3", "last_id": "batch_2", "has_more": True})
        elif path == "/v1/batches?limit=20&after=batch_2":
            await route.fulfill(json={"object": "list", "data": older, "first_id": "batch_1", "last_id": "batch_1", "has_more": False})
        elif path == "/v1/batches/batch_3/cancel":
            first[0] = {**first[0], "status": "cancelling"}
            await route.fulfill(json=first[0])
        elif path == "/v1/files/file-out2/content":
            await route.fulfill(body='{"custom_id": "r1"}\n', content_type="application/octet-stream")
        else:
            await route.fulfill(status=404, json={"error": {"message": "no", "type": "invalid_request_error"}})

    await page.route("**/v1/batches**", api)
    await page.route("**/v1/files/**", api)
    await open_view(page, base, "batches")
    running = page.locator('tr[data-batch="batch_3"]')
    await running.wait_for(timeout=WAIT_MS)
    assert "12 of 20 requests · 1 failed" in await running.inner_text()
    assert await running.locator("progress").evaluate("p => [p.value, p.max]") == [12, 20]
    assert "in_progress" in await running.inner_text() and "/v1/chat/completions" in await running.inner_text()
    done = page.locator('tr[data-batch="batch_2"]')
    assert await done.locator("button[data-action=cancel]").count() == 0
    async with page.expect_download() as info:
        await done.locator("button[data-action=output]").click()
    assert Path(await (await info.value).path()).read_text() == '{"custom_id": "r1"}\n'
    assert await done.locator("button[data-action=errors]").count() == 1
    await page.click("#batches-more")
    await page.locator('tr[data-batch="batch_1"]').wait_for(timeout=WAIT_MS)
    assert await page.is_hidden("#batches-more")
    await running.locator("button[data-action=cancel]").click()
    await expect(running.locator(".pill")).to_have_text("cancelling", timeout=WAIT_MS)
    assert ("POST", "/v1/batches/batch_3/cancel") in seen
    assert await page.locator("#batches-list tbody tr").count() == 3  # the pages opened stay open
    await fits_phone(page)


async def test_batches_view_says_so_when_the_batch_api_is_not_served(
        proxy_app: tuple[str, web.Application], page: Page) -> None:
    # The store is off: /v1/batches is not served here (404), or says it needs the store (400,
    # as issue 20 has it): a note either way, not an error.
    base, _ = proxy_app
    await open_view(page, base, "batches")
    note = page.locator("#batches-off")
    await note.wait_for(timeout=WAIT_MS)
    assert "Batch API" in await note.inner_text()
    assert "Could not" not in await page.inner_text("#batches-status")


async def test_batches_view_lists_a_batch_made_with_the_sdk(
        fake_ollama: FakeOllama, page: Page, tmp_path: Path) -> None:
    server, _ = await start_proxy(fake_ollama, store_on(tmp_path))
    base = f"http://127.0.0.1:{server.port}"
    lines = "".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": "llama3.2", "messages": [{"role": "user", "content": f"hi {i}"}]}}) + "\n"
                    for i in range(3))
    try:
        async with sdk(base) as client:
            try:
                uploaded = await client.files.create(file=("in.jsonl", lines.encode(), "application/jsonl"), purpose="batch")
            except openai.NotFoundError:
                pytest.skip("/v1/files and /v1/batches are issue 20 (Batch API), not served on this branch yet")
            made = await client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                               completion_window="24h")
        await open_view(page, base, "batches")
        row = page.locator(f'tr[data-batch="{made.id}"]')
        await row.wait_for(timeout=WAIT_MS)
        assert "/v1/chat/completions" in await row.inner_text()
        await expect(row.locator(".progress")).to_contain_text("3 of 3 requests", timeout=30_000)
        await expect(row.locator(".pill")).to_have_text("completed", timeout=30_000)
        async with page.expect_download() as info:
            await row.locator("button[data-action=output]").click()
        out = [json.loads(x) for x in Path(await (await info.value).path()).read_text().splitlines()]
        assert sorted(x["custom_id"] for x in out) == ["r0", "r1", "r2"]
        await screenshot(page, tmp_path, "batches")
    finally:
        await server.close()


QUEUE_METRICS = "".join(line + "\n" for line in [
    "# TYPE ollama_proxy_requests_in_flight gauge",
    'ollama_proxy_requests_in_flight{model="qwen3:8b"} 2.0',
    "# TYPE ollama_proxy_admission_waiting gauge",
    'ollama_proxy_admission_waiting{priority="high",key_id="ci"} 1.0',
    'ollama_proxy_admission_waiting{priority="default",key_id="alice"} 2.0',
    'ollama_proxy_admission_waiting{priority="low",key_id="nightly"} 4.0',
    "# TYPE ollama_proxy_admission_wait_seconds histogram",
    'ollama_proxy_admission_wait_seconds_bucket{priority="high",le="0.1"} 5.0',
    'ollama_proxy_admission_wait_seconds_bucket{priority="high",le="0.5"} 10.0',
    'ollama_proxy_admission_wait_seconds_bucket{priority="high",le="+Inf"} 10.0',
    'ollama_proxy_admission_wait_seconds_sum{priority="high"} 2.0',
    'ollama_proxy_admission_wait_seconds_count{priority="high"} 10.0',
    'ollama_proxy_admission_wait_seconds_bucket{priority="low",le="0.5"} 0.0',
    'ollama_proxy_admission_wait_seconds_bucket{priority="low",le="30.0"} 3.0',
    'ollama_proxy_admission_wait_seconds_bucket{priority="low",le="+Inf"} 3.0',
    'ollama_proxy_admission_wait_seconds_sum{priority="low"} 36.0',
    'ollama_proxy_admission_wait_seconds_count{priority="low"} 3.0',
])


async def test_health_shows_the_queue_per_priority_and_key(
        proxy_app: tuple[str, web.Application], page: Page) -> None:
    """/metrics with fair queuing's labels (issue 20), answered in the browser."""
    base, _ = proxy_app

    async def metrics(route: Route) -> None:
        await route.fulfill(body=QUEUE_METRICS, content_type="text/plain; version=0.0.4")

    await page.route("**/metrics", metrics)
    await open_view(page, base, "health")
    card = page.locator("#queue-card")
    await card.wait_for(timeout=WAIT_MS)
    rows = await card.locator(".table-wrap").first.locator("tbody tr").evaluate_all(CELLS)
    assert rows == [["high", "1", "10", "200 ms", "500 ms"], ["default", "2", "0", "—", "—"],
                    ["low", "4", "3", "12.00 s", "30.00 s"]]
    keys = await card.locator(".per-key tbody tr").evaluate_all(CELLS)
    assert keys == [["nightly", "low", "4"], ["alice", "default", "2"], ["ci", "high", "1"]]
    assert await page.locator("#proxy-card .stat", has_text="Waiting in queue").locator("strong").inner_text() == "7"
    await fits_phone(page)
