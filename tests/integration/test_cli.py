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
