"""``python -m proxy --workers 2``: one scrape, answered by either worker, sees both."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.fake_ollama import FakeOllama, Reply
from tests.integration.test_cli import ROOT, free_port, wait_until_listening
from tests.integration.test_metrics import Samples, parse, value

BODY = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}


async def fresh_get(url: str) -> str:
    """One request on a connection of its own (SO_REUSEPORT spreads connections, not requests)."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.text()


def worker_pids(samples: Samples) -> set[str]:
    return {dict(labels)["pid"] for (name, labels) in samples if name == "ollama_proxy_worker_start_time_seconds"}


async def test_one_scrape_sees_every_worker(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    stale = multiproc / "counter_999999.db"
    stale.write_bytes(b"from an earlier run")  # would be summed in, or break the scrape
    config = tmp_path / "proxy.toml"
    metrics_port = free_port()
    config.write_text(f"[metrics]\nport = {metrics_port}\nsample_interval = 0.05\n")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "--port", str(port), "--workers", "2", "--config", str(config),
        cwd=ROOT, env={**os.environ, "OLLAMA_BASE_URL": fake_ollama.url, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_until_listening(port, process)
        await wait_until_listening(metrics_port, process)
        assert not stale.exists()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        for _ in range(200):  # the port answers once the first worker is up; wait for the second
            if len(worker_pids(parse(await fresh_get(metrics_url)))) == 2:
                break
            await asyncio.sleep(0.05)
        requests = 16
        fake_ollama.push(*[Reply(content=f"reply {i}", prompt_eval_count=2, eval_count=3) for i in range(requests)])
        for _ in range(requests):
            async with (aiohttp.ClientSession() as session,
                        session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=BODY) as response):
                assert response.status == 200
        for _ in range(6):  # whichever worker answers, it reports the sum of both
            samples = parse(await fresh_get(metrics_url))
            assert len(worker_pids(samples)) == 2
            ok = {"endpoint": "chat.completions", "model": "llama3.2:latest", "status_code": "200"}
            assert value(samples, "requests_total", **ok) == requests
            assert value(samples, "tokens_total", model="llama3.2:latest", type="completion") == 3 * requests

        # Gauges: each worker writes its own, the scrape sums the live ones.
        fake_ollama.push(Reply(chunks=["a", "b"], hang=True), Reply(chunks=["a", "b"], hang=True))
        sessions = [aiohttp.ClientSession() for _ in range(2)]
        streams: list[aiohttp.ClientResponse] = []
        try:
            for session in sessions:
                streams.append(await session.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                                                  json={**BODY, "stream": True}))
                await streams[-1].content.readuntil(b"\n\n")
            for _ in range(100):
                samples = parse(await fresh_get(metrics_url))
                if value(samples, "requests_in_flight", model="llama3.2:latest") == 2:
                    break
                await asyncio.sleep(0.05)  # the workers write their gauges every sample_interval
            else:
                pytest.fail("the in-flight streams never showed in the summed gauge")
        finally:
            for stream in streams:
                stream.close()
            for session in sessions:
                await session.close()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    assert process.stderr is not None
    assert b"Traceback" not in await process.stderr.read()
    assert not list(multiproc.glob("*.db"))  # cleaned at the end of the run
