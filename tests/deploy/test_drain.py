"""Draining before a stop (``proxy/gates/drain.py``): SIGUSR1 turns ``/readyz`` to 503 while requests
are still served, each answer closing its connection; with ``--workers 2`` the parent passes it
to every worker. Then SIGTERM stops the process cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import openai

from proxy.gates.drain import DRAIN
from tests.conftest import AppFactory
from tests.fake_ollama import FakeOllama
from tests.integration.test_cli import ROOT, free_port, wait_until_listening


async def test_draining_fails_readiness_and_closes_connections(app_factory: AppFactory) -> None:
    url, app = await app_factory()
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/readyz") as ready:
            assert ready.status == 200 and ready.headers.get("Connection") != "close"
        app[DRAIN].start()
        async with http.get(url + "/readyz") as draining:
            assert draining.status == 503
            assert (await draining.json())["status"] == "draining"
            assert draining.headers["Connection"] == "close"
        async with http.get(url + "/livez") as live:  # alive, and still serving
            assert live.status == 200 and live.headers["Connection"] == "close"
        async with http.get(url + "/v1/models") as models:
            assert models.status == 200 and models.headers["Connection"] == "close"


async def test_sigusr1_drains_every_worker_then_sigterm_stops(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
        cwd=ROOT, env={**os.environ, "OLLAMA_BASE_URL": fake_ollama.url},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_until_listening(port, process)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/readyz") as ready:
                assert ready.status == 200
            process.send_signal(signal.SIGUSR1)  # a worker still starting takes it once it can
            statuses: list[int] = []
            for _ in range(200):  # bounded: until a run of fresh connections all say draining
                async with http.get(base + "/readyz", headers={"Connection": "close"}) as probe:
                    statuses.append(probe.status)
                if statuses[-12:] == [503] * 12:
                    break
                await asyncio.sleep(0.02)
            assert statuses[-12:] == [503] * 12  # 12 fresh connections: both workers drain
        async with openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0) as sdk:
            answer = await sdk.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content  # still serving while draining
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    assert b"Traceback" not in await process.stderr.read()
