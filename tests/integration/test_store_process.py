"""The store in the real command: ``python -m proxy`` with ``[store]`` on, one process or two
workers, stopped with SIGTERM: the last flush writes the usage, and ``python -m proxy usage``
reads it back from the file beside the config."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import openai
import pytest

from tests.fake_ollama import FakeOllama, Reply
from tests.integration.test_cli import ROOT, free_port, wait_until_listening


@pytest.mark.parametrize("workers", ["1", "2"], ids=["one process", "two workers sharing one SQLite file"])
async def test_sigterm_flushes_usage_and_the_cli_reads_it(fake_ollama: FakeOllama, tmp_path: Path,
                                                          workers: str) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text('[store]\nenabled = true\nurl = "sqlite:///proxy.db"\nflush_interval = 3600\n')
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
        "--workers", workers, cwd=ROOT, env={**os.environ, "OLLAMA_BASE_URL": fake_ollama.url},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_until_listening(port, process)
        fake_ollama.push(*[Reply(prompt_eval_count=10, eval_count=5) for _ in range(6)])
        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0) as sdk:
            await asyncio.gather(*[sdk.chat.completions.create(model="llama3.2",
                                                               messages=[{"role": "user", "content": "hi"}])
                                   for _ in range(6)])
        process.send_signal(signal.SIGTERM)  # the hour-long interval never came: only the last flush writes
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    stderr = await process.stderr.read()
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")[-4000:]
    assert (tmp_path / "proxy.db").exists()  # beside the config file, not in the working directory
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "usage", "--config", str(config), "--by", "model", "--format", "json",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    out, _ = await cli.communicate()
    assert cli.returncode == 0
    [row] = json.loads(out)
    seconds = row.pop("seconds")
    assert row == {"model": "llama3.2", "requests": 6, "errors": 0, "input_tokens": 60, "output_tokens": 30}
    assert 0 < seconds < 60
