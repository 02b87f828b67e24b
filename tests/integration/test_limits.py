"""Limits, admission and the server's own defences, end to end through the real proxy: the
OpenAI SDK sees the envelope (400/403/404/413/429/503 with ``param`` and the limit's key), the
stand-in Ollama never sees a refused request, the body size is enforced before reading,
slow clients are cut off by the configured deadlines, and ``--check-config`` prints the
effective limits. Time bounds are the configured time-outs plus slack, never speeds."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from proxy.appkeys import ADMISSION
from tests.conftest import AppFactory
from tests.fake_ollama import FakeOllama, Reply

SLACK = 5.0
USER: Any = [{"role": "user", "content": "hi"}]  # Any: the SDK's TypedDicts are not the point here
BUSY = "server busy, please try again.  maximum pending requests exceeded"
CHAT = "/v1/chat/completions"

Start = Callable[..., Awaitable[tuple[str, web.Application]]]


@pytest.fixture
def start_proxy(app_factory: AppFactory) -> Start:
    """``proxy_factory`` that also hands back the app (for its admission and pool)."""
    return app_factory


def sdk(url: str, retries: int = 0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=retries)


def chat_requests(fake: FakeOllama) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/api/chat"]


async def until(condition: Callable[[], bool], timeout: float = SLACK) -> None:
    """Wait for a condition no event signals."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def raw_exchange(url: str, *chunks: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    for chunk in chunks:
        writer.write(chunk)
    await writer.drain()
    return reader, writer


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    """Status, head and body of one HTTP/1.1 response (Content-Length framed)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return int(head.split(b" ")[1]), head, await reader.readexactly(length)


# ---- the limits table through the SDK ------------------------------------------------------------

async def test_a_broken_limit_is_a_400_naming_the_path_and_the_key(start_proxy: Start, fake_ollama: FakeOllama) -> None:
    url, _ = await start_proxy({"limits": {"max_images": 1}})
    image: Any = {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}}
    async with sdk(url) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="llama3.2", messages=[
                {"role": "user", "content": "first"},
                {"role": "user", "content": [{"type": "text", "text": "two:"}, image, image]},
            ])
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "messages[1].content[2].image_url"
    assert error["code"] == "array_above_max_length" and "(limits.max_images)" in error["message"]
    assert chat_requests(fake_ollama) == []  # refused before anything reached Ollama


async def test_per_model_overrides_and_the_token_budget(start_proxy: Start, fake_ollama: FakeOllama) -> None:
    url, _ = await start_proxy({"limits": {"max_tokens": 4096, "default_max_tokens": 512,
                                           "models": {"qwen*": {"max_tokens": 64, "default_max_tokens": 32}}}})
    async with sdk(url) as client:
        await client.chat.completions.create(model="llama3.2", messages=USER)
        await client.chat.completions.create(model="qwen3:8b", messages=USER)
        await client.chat.completions.create(model="qwen3:8b", messages=USER, max_tokens=50)
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="qwen3:8b", messages=USER, max_tokens=100)
    assert [r["options"]["num_predict"] for r in chat_requests(fake_ollama)] == [512, 32, 50]
    assert caught.value.body["param"] == "max_tokens"  # type: ignore[index]
    assert 'limits.models."qwen*".max_tokens' in caught.value.message


async def test_model_gates_answer_404_and_403(start_proxy: Start, fake_ollama: FakeOllama) -> None:
    url, _ = await start_proxy({"limits": {"allowed_models": ["llama3*", "qwen*"], "denied_models": ["*:8b"]}})
    async with sdk(url) as client:
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(model="mistral", messages=USER)
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await client.chat.completions.create(model="qwen3:8b", messages=USER)
        await client.chat.completions.create(model="llama3.2", messages=USER)
    assert missing.value.code == "model_not_found" and denied.value.code == "model_not_allowed"
    assert [r["model"] for r in chat_requests(fake_ollama)] == ["llama3.2"]


GATED_ROUTES = [
    ("legacy completions", "/v1/completions", {"prompt": "hi"}),
    ("embeddings", "/v1/embeddings", {"input": "hi"}),
    ("responses", "/v1/responses", {"input": "hi"}),
    ("native chat pass-through", "/api/chat", {"messages": USER, "stream": False}),
    ("native embed pass-through", "/api/embed", {"input": "hi"}),
]


@pytest.mark.parametrize("path, body", [r[1:] for r in GATED_ROUTES], ids=[r[0] for r in GATED_ROUTES])
async def test_every_route_that_names_a_model_passes_the_gates(
    start_proxy: Start, fake_ollama: FakeOllama, path: str, body: dict[str, Any]
) -> None:
    url, _ = await start_proxy({
        "limits": {"allowed_models": ["llama3*", "qwen*", "nomic*"], "denied_models": ["*:8b"]},
        "passthrough": {"enabled": True},
    })
    async with aiohttp.ClientSession() as session:
        statuses = []
        for model in ("mistral", "qwen3:8b"):
            async with session.post(url + path, json={"model": model, **body}) as response:
                statuses.append((response.status, (await response.json())["error"]["code"]))
    assert statuses == [(404, "model_not_found"), (403, "model_not_allowed")]
    assert not [p for p, _ in fake_ollama.requests if p != "/api/version"]  # Ollama never asked


async def test_models_list_and_retrieve_hide_what_the_gates_refuse(start_proxy: Start) -> None:
    url, _ = await start_proxy({"limits": {"denied_models": ["qwen*"]}})
    async with sdk(url) as client:
        ids = [m.id async for m in client.models.list()]
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("qwen3:8b")
    assert "qwen3:8b" not in ids and "llama3.2:latest" in ids


@pytest.mark.parametrize("path, body", [r[1:] for r in GATED_ROUTES], ids=[r[0] for r in GATED_ROUTES])
async def test_every_route_that_names_a_model_takes_an_admission_slot(
    start_proxy: Start, fake_ollama: FakeOllama, path: str, body: dict[str, Any]
) -> None:
    url, app = await start_proxy({"admission": {"max_concurrent": 1, "max_queue": 0},
                                  "passthrough": {"enabled": True}})
    async with aiohttp.ClientSession() as session:
        held = await open_held_stream(session, url, fake_ollama)
        async with session.post(url + path, json={"model": "llama3.2", **body}) as response:
            assert response.status == 429
        held.close()
        await asyncio.wait_for(fake_ollama.stream_closed.wait(), SLACK)
        assert app[ADMISSION].active == 0
        async with session.post(url + path, json={"model": "nomic-embed-text" if "embed" in path else "llama3.2",
                                                  **body}) as response:
            assert response.status == 200


async def test_content_reaches_ollama_unaltered(start_proxy: Start, fake_ollama: FakeOllama) -> None:
    url, _ = await start_proxy()
    text = "  <script>alert(1)</script>\x00\u202e ünïcödé 👋 {{ .Prompt }} \r\n\t  "
    messages: Any = [{"role": "user", "content": text}]
    async with sdk(url) as client:
        await client.chat.completions.create(model="llama3.2", messages=messages)
    assert chat_requests(fake_ollama)[-1]["messages"] == [{"role": "user", "content": text}]


# ---- body size: refused before reading ------------------------------------------------------------

async def test_a_gigabyte_announced_is_refused_before_it_is_read(start_proxy: Start, fake_ollama: FakeOllama) -> None:
    url, _ = await start_proxy()
    head = (b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1073741824\r\n\r\n")
    started = time.monotonic()
    reader, writer = await raw_exchange(url, head, b"{" + b" " * 65535)  # 64 KiB of the promised 1 GiB
    status, _, body = await read_response(reader)
    elapsed = time.monotonic() - started
    writer.close()
    error = orjson.loads(body)["error"]
    assert status == 413 and error["code"] == "payload_too_large"
    assert "1073741824" in error["message"] and "(limits.max_body_bytes)" in error["message"]
    assert elapsed < SLACK and chat_requests(fake_ollama) == []
    print(f"413 for a 1 GiB announced body after {elapsed * 1000:.1f} ms, 64 KiB sent")


async def test_a_chunked_body_is_cut_off_at_the_limit(start_proxy: Start, fake_ollama: FakeOllama) -> None:
    url, _ = await start_proxy({"limits": {"max_body_bytes": 65536}})
    head = b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"2000\r\n" + b" " * 0x2000 + b"\r\n"  # 8 KiB chunks, 16 of them: twice the limit
    reader, writer = await raw_exchange(url, head, *[chunk] * 16)
    status, _, body = await read_response(reader)
    writer.close()
    assert status == 413 and orjson.loads(body)["error"]["code"] == "payload_too_large"
    assert chat_requests(fake_ollama) == []


@pytest.mark.parametrize("accept, status", [(False, 415), (True, 413)], ids=["refused", "inflated to the limit"])
async def test_a_compressed_bomb_is_cut_off_at_the_limit(start_proxy: Start, accept: bool, status: int) -> None:
    import zlib

    url, _ = await start_proxy({"limits": {"max_body_bytes": 65536},
                                "server": {"accept_compressed_requests": accept}})
    bomb = zlib.compress(b" " * (16 << 20))  # 16 MiB of spaces in ~16 KiB
    headers = {"Content-Encoding": "deflate", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session, session.post(url + CHAT, data=bomb, headers=headers) as r:
        assert r.status == status


# ---- slow clients --------------------------------------------------------------------------------

async def test_a_body_slower_than_body_timeout_gets_408_and_the_connection_closes(start_proxy: Start) -> None:
    url, _ = await start_proxy({"server": {"body_timeout": 0.2}})
    head = b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    started = time.monotonic()
    reader, writer = await raw_exchange(url, head, b'{"model": "l')  # then nothing more
    status, head_bytes, body = await read_response(reader)
    assert status == 408 and orjson.loads(body)["error"]["code"] == "request_timeout"
    assert b"connection: close" in head_bytes.lower()
    assert await reader.read() == b""  # closed at once, no lingering for the rest of the body
    assert time.monotonic() - started < 0.2 + SLACK
    writer.close()


async def test_headers_dribbled_slowly_are_cut_off_at_keepalive_timeout(start_proxy: Start) -> None:
    url, _ = await start_proxy({"server": {"keepalive_timeout": 0.3}})
    reader, writer = await raw_exchange(url, b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n")
    started = time.monotonic()

    async def dribble() -> None:
        while True:  # the client's own pace is the scenario here: one header byte at a time
            writer.write(b"X")
            await asyncio.sleep(0.05)

    dribbler = asyncio.create_task(dribble())
    try:
        assert await asyncio.wait_for(reader.read(), 0.3 + SLACK) == b""  # closed by the proxy
    finally:
        dribbler.cancel()
        writer.close()
    assert time.monotonic() - started < 0.3 + SLACK


async def test_an_idle_keep_alive_connection_is_closed(start_proxy: Start) -> None:
    url, _ = await start_proxy({"server": {"keepalive_timeout": 0.3}})
    reader, writer = await raw_exchange(url, b"GET /livez HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, _, _ = await read_response(reader)
    assert status == 200
    assert await asyncio.wait_for(reader.read(), 0.3 + SLACK) == b""
    writer.close()


@pytest.mark.parametrize("extra", [
    b"X-Long: " + b"a" * 9000 + b"\r\n",
    b"".join(b"X-H%d: v\r\n" % i for i in range(200)),
], ids=["a header line over max_field_size", "more headers than max_headers"])
async def test_oversized_headers_are_refused(start_proxy: Start, fake_ollama: FakeOllama, extra: bytes) -> None:
    url, _ = await start_proxy()
    reader, writer = await raw_exchange(url, b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" + extra
                                        + b"Content-Length: 2\r\n\r\n{}")
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.split(b" ")[1] == b"400" and chat_requests(fake_ollama) == []  # aiohttp's parser answers


# ---- admission -----------------------------------------------------------------------------------

async def open_held_stream(session: aiohttp.ClientSession, url: str, fake: FakeOllama) -> aiohttp.ClientResponse:
    """A stream that holds its slot: Ollama sends one line, then nothing."""
    fake.push(Reply(chunks=["held", "never"], hang=True))
    body = {"model": "llama3.2", "messages": USER, "stream": True}
    response = await session.post(url + CHAT, json=body)
    assert b'"held"' in await response.content.readuntil(b"\n\n")
    return response


async def test_beyond_the_bound_without_a_queue_is_429_with_retry_after(
    start_proxy: Start, fake_ollama: FakeOllama
) -> None:
    url, app = await start_proxy({"admission": {"max_concurrent": 1, "max_queue": 0, "retry_after": 3}})
    async with aiohttp.ClientSession() as session:
        held = await open_held_stream(session, url, fake_ollama)
        async with sdk(url) as client:
            with pytest.raises(openai.RateLimitError) as caught:
                await client.chat.completions.create(model="qwen3:8b", messages=USER)
            assert caught.value.response.headers["Retry-After"] == "3"
            assert caught.value.code == "rate_limit_exceeded"
            held.close()  # the holder walks away: its slot comes back
            await asyncio.wait_for(fake_ollama.stream_closed.wait(), SLACK)
            assert app[ADMISSION].active == 0
            reply = await client.chat.completions.create(model="qwen3:8b", messages=USER)
    assert reply.choices[0].message.content


async def test_a_queued_request_runs_when_a_slot_frees(start_proxy: Start, fake_ollama: FakeOllama) -> None:
    url, app = await start_proxy({"admission": {"max_concurrent": 1, "queue_timeout": 30}})
    async with aiohttp.ClientSession() as session:
        held = await open_held_stream(session, url, fake_ollama)
        async with sdk(url) as client:
            queued = asyncio.create_task(client.chat.completions.create(model="llama3.2", messages=USER))
            await until(lambda: app[ADMISSION].waiting == 1)
            assert len(chat_requests(fake_ollama)) == 1  # it waits in the proxy, not at Ollama
            held.close()
            reply = await asyncio.wait_for(queued, SLACK)
    assert reply.choices[0].message.content and app[ADMISSION].active == 0


async def test_the_queue_time_out_is_429(start_proxy: Start, fake_ollama: FakeOllama) -> None:
    url, app = await start_proxy({"admission": {"max_concurrent": 1, "queue_timeout": 0.2}})
    async with aiohttp.ClientSession() as session:
        held = await open_held_stream(session, url, fake_ollama)
        started = time.monotonic()
        async with sdk(url) as client:
            with pytest.raises(openai.RateLimitError) as caught:
                await client.chat.completions.create(model="llama3.2", messages=USER)
        assert time.monotonic() - started < 0.2 + SLACK
        assert "within 0.2 s" in caught.value.message and app[ADMISSION].waiting == 0
        held.close()


async def test_ollamas_503_is_retried_by_the_sdk(start_proxy: Start, fake_ollama: FakeOllama) -> None:
    url, _ = await start_proxy()
    fake_ollama.push(Reply(status=503, error=BUSY), Reply(content="served on the retry"))
    async with sdk(url, retries=1) as client:
        reply = await client.chat.completions.create(model="llama3.2", messages=USER)
    assert reply.choices[0].message.content == "served on the retry"
    assert len(chat_requests(fake_ollama)) == 2


# ---- --check-config ------------------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=60, check=False,
                          cwd=Path(__file__).resolve().parents[2])


def test_check_config_prints_the_effective_limits(tmp_path: Path) -> None:
    config = tmp_path / "limits.toml"
    config.write_text('[limits]\nmax_tokens = 4096\n[limits.models."qwen*"]\nmax_tokens = 64\n'
                      '[admission.models]\n"*:70b" = 1\n', encoding="utf-8")
    done = run_cli("--check-config", "--config", str(config))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "[limits]\n" in out and "max_tokens = 4096\n" in out
    assert '[limits.models."qwen*"]\n' in out and "max_tokens = 64\n" in out
    assert "max_messages = 1000  # from [limits]" in out
    assert '"*:70b" = 1' in out and "keepalive_timeout = 75.0" in out


def test_check_config_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[limits]\ntemperature = [2.0, 0.0]\n", encoding="utf-8")
    done = run_cli("--check-config", "--config", str(config))
    assert done.returncode == 2 and "limits.temperature" in done.stderr and done.stdout == ""
