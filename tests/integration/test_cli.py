"""The real command, as a user starts it: ``python -m proxy`` in its own process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import orjson
import pytest

from tests.fake_ollama import FakeOllama, Reply

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until_listening(port: int, process: asyncio.subprocess.Process) -> None:
    """Poll the port until it accepts (bounded); fail early if the process died."""
    for _ in range(200):
        if process.returncode is not None:
            raise AssertionError(f"proxy exited early with {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError("proxy did not start listening within 10 s")


@pytest.fixture
async def start_proxy(fake_ollama: FakeOllama) -> AsyncIterator[object]:
    processes: list[asyncio.subprocess.Process] = []

    async def start(*args: str) -> tuple[asyncio.subprocess.Process, int]:
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", "--host", "127.0.0.1", "--port", str(port), *args,
            cwd=ROOT, env={**os.environ, "OLLAMA_BASE_URL": fake_ollama.url},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        processes.append(process)
        await wait_until_listening(port, process)
        return process, port

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("workers", ["1", "2"], ids=["one process", "two workers sharing the port"])
async def test_started_proxy_serves_the_sdk_and_stops_cleanly_on_sigterm(
    start_proxy: object, fake_ollama: FakeOllama, workers: str
) -> None:
    process, port = await start_proxy("--workers", workers)  # type: ignore[operator]
    fake_ollama.push(*[Reply(content=f"reply {i}") for i in range(4)])
    async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0) as sdk:
        replies = await asyncio.gather(*[
            sdk.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "hi"}])
            for _ in range(4)
        ])
    assert sorted(r.choices[0].message.content or "" for r in replies) == [f"reply {i}" for i in range(4)]
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 15) == 0
    assert process.stderr is not None
    assert b"Traceback" not in await process.stderr.read()


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_the_log_cannot_be_forged_and_has_no_tracebacks_for_malformed_requests(
    start_proxy: object, fake_ollama: FakeOllama, tmp_path: Path, fmt: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[log]\nformat = "{fmt}"\n')
    process, port = await start_proxy("--config", str(config))  # type: ignore[operator]
    await fake_ollama.stop()  # a 502, logged with the path the client chose
    answers = []
    for request in (
        b"GET /v1/models/x%0D%1B%5B2K%E2%80%A8forged HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        b"GET /livez HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",  # aiohttp's own 400
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        answers.append(await asyncio.wait_for(reader.read(), 5))
        writer.close()
    # no versions in Server, also on the 400 aiohttp sends before any proxy code runs
    assert all(b"\r\nserver: ollama-openai-proxy\r\n" in a.lower() for a in answers), answers
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 15) == 0
    assert process.stderr is not None
    err = (await process.stderr.read()).decode()
    assert not any(c in err for c in "\r\x1b\u2028") and "Traceback" not in err and " ERROR " not in err
    lines = err.splitlines()
    assert any("malformed request" in line for line in lines)
    if fmt == "json":
        records = [orjson.loads(line) for line in lines]  # every line is one JSON object
        failed = next(r for r in records if "-> 502" in r["message"])
        assert failed["request_id"].startswith("req_") and failed["level"] == "warning"
