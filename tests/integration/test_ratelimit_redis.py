"""The Redis limiter with a real ``redis-server``: one combined limit across replicas, no
overshoot from parallel streams, and what happens while Redis is down."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.access.keys import hash_key, new_key
from tests.conftest import ProxyFactory
from tests.fake_ollama import FakeOllama, Reply
from tests.integration.test_cli import ROOT, free_port, wait_until_listening
from tests.redis_server import RedisProcess

KEY = new_key()
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}


def toml(redis: str, **key: Any) -> str:
    fields = "".join(f"{k} = {v}\n" for k, v in key.items())
    return (f'[ratelimit]\nbackend = "redis"\nurl = "{redis}"\n\n'
            f'[[auth.keys]]\nid = "shared"\nsha256 = "{hash_key(KEY)}"\n{fields}')


def config(redis: str, mode: str = "fail_closed", **key: Any) -> dict[str, Any]:
    return {"ratelimit": {"backend": "redis", "url": redis, "on_backend_error": mode},
            "auth": {"keys": [{"id": "shared", "sha256": hash_key(KEY), **key}]}}


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    async with session.post(url + "/v1/chat/completions", json=body, headers=AUTH) as r:
        return r.status, await r.read()


async def test_two_proxy_processes_share_one_limit(tmp_path: Path, fake_ollama: FakeOllama, redis_url: str) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(toml(redis_url, rpm=6))
    processes, ports = [], [free_port(), free_port()]
    try:
        for port in ports:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "proxy", "--config", str(path), "--port", str(port), cwd=ROOT,
                env={**os.environ, "OLLAMA_BASE_URL": fake_ollama.url},
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            processes.append(process)
            await wait_until_listening(port, process)
        async with aiohttp.ClientSession() as session:
            statuses = [(await post(session, f"http://127.0.0.1:{ports[i % 2]}", BODY))[0] for i in range(12)]
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 15)
    # 6 a minute in all, not 6 per replica (the limit x replicas bug)
    assert statuses.count(200) == 6 and statuses.count(429) == 6, statuses
    assert fake_ollama.counts["/api/chat"] == 6


async def test_parallel_streams_cannot_overshoot_tpm_by_more_than_one_reservation(
        proxy_factory: ProxyFactory, fake_ollama: FakeOllama, redis_url: str) -> None:
    tpm, max_tokens, streams = 1000, 150, 12
    replicas = [await proxy_factory(config(redis_url, tpm=tpm)) for _ in range(2)]
    body = {**BODY, "stream": True, "max_tokens": max_tokens}
    reserved = -(-len(str(body)) // 4) + max_tokens  # about; the exact number is the proxy's
    # Ollama spends what was reserved: the prompt's count plus a full answer of max_tokens
    fake_ollama.push(*[Reply(chunks=["x"] * 20, eval_count=max_tokens, prompt_eval_count=20, line_delay=0.01)
                       for _ in range(streams)])
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(post(session, replicas[i % 2], body) for i in range(streams)))
    admitted = [raw for status, raw in results if status == 200]
    refused = [raw for status, raw in results if status == 429]
    assert len(admitted) + len(refused) == streams and admitted and refused
    spent = len(admitted) * (20 + max_tokens)
    assert spent <= tpm + reserved, (len(admitted), spent)
    assert all(raw.endswith(b"data: [DONE]\n\n") for raw in admitted)
    assert all(b'"code":"rate_limit_exceeded"' in raw for raw in refused)


@pytest.mark.parametrize("mode, status", [("fail_closed", 503), ("fail_open", 200)])
async def test_redis_down_is_explicit_logged_and_reported_by_readyz(
        proxy_factory: ProxyFactory, redis_url: str, redis_process: RedisProcess, mode: str, status: int,
        caplog: pytest.LogCaptureFixture) -> None:
    url = await proxy_factory(config(redis_url, mode, rpm=100))
    async with aiohttp.ClientSession() as session:
        assert (await post(session, url, BODY))[0] == 200
        async with session.get(url + "/readyz") as r:
            ready = await r.json()
            assert r.status == 200 and ready["ratelimit"] == {
                "backend": "redis", "status": "ok", "on_backend_error": mode}
        redis_process.stop()
        try:
            got, raw = await post(session, url, BODY)
            assert got == status, raw
            if status == 503:
                assert b'"code":"rate_limiter_unavailable"' in raw
            async with session.get(url + "/readyz") as r:
                ready = await r.json()
                assert ready["ratelimit"]["status"] == "unreachable"
                assert r.status == (503 if mode == "fail_closed" else 200)
        finally:
            redis_process.start()
        assert (await post(session, url, BODY))[0] == 200
    assert any("rate-limit store unreachable" in r.getMessage() for r in caplog.records)
    assert any("reachable again" in r.getMessage() for r in caplog.records)
