"""Keys as an operator uses them, with the real ``python -m proxy`` process: ``keys new`` and
``keys hash``, protected mode, and SIGHUP reloading keys in every worker without dropping a
stream."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import openai
import pytest

from tests.fake_ollama import FakeOllama, Reply
from tests.integration.test_cli import ROOT, free_port, wait_until_listening

USER = [{"role": "user", "content": "hi"}]
Start = Callable[..., Awaitable[tuple[asyncio.subprocess.Process, int]]]


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args], check=False, cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=30, env={**os.environ, "OLLAMA_BASE_URL": "http://127.0.0.1:9"})


def new_key(*args: str) -> tuple[str, str]:
    """(key, TOML table) from ``keys new``."""
    done = run_cli("keys", "new", *args)
    assert done.returncode == 0, done.stderr
    key, _, table = done.stdout.partition("\n")
    return key, table


@pytest.fixture
async def start(fake_ollama: FakeOllama) -> AsyncIterator[Start]:
    processes: list[asyncio.subprocess.Process] = []

    async def go(*args: str) -> tuple[asyncio.subprocess.Process, int]:
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", "--host", "127.0.0.1", "--port", str(port), *args,
            cwd=ROOT, env={**os.environ, "OLLAMA_BASE_URL": fake_ollama.url},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        processes.append(process)
        await wait_until_listening(port, process)
        return process, port

    yield go
    for process in processes:  # SIGTERM: a supervisor stops its workers (SIGKILL would orphan them)
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def log_lines(process: asyncio.subprocess.Process, pattern: str, count: int = 1) -> list[str]:
    """Read the process's log until ``count`` lines match ``pattern`` (bounded)."""
    assert process.stderr is not None
    found: list[str] = []
    async with asyncio.timeout(20):
        while len(found) < count:
            line = (await process.stderr.readline()).decode()
            assert line, f"log ended before {pattern!r}"
            if re.search(pattern, line):
                found.append(line)
    return found


def test_keys_new_prints_the_key_once_on_its_own_line_then_the_table() -> None:
    key, table = new_key("--id", "alice", "--models", "llama3*", "qwen3:8b", "--rpm", "60", "--tpm", "100000",
                         "--role", "admin")
    assert re.fullmatch(r"sk-[A-Za-z0-9_-]{43}", key)
    sha = run_cli("keys", "hash", stdin=key + "\n").stdout.strip()
    assert f'sha256 = "{sha}"' in table and key not in table
    assert '[[auth.keys]]\nid = "alice"' in table
    assert 'models = ["llama3*", "qwen3:8b"]' in table and "rpm = 60" in table and "tpm = 100000" in table
    assert 'role = "admin"' in table


@pytest.mark.parametrize("args, words", [
    (["keys", "new", "--id", "no spaces"], "keys new --id: must be"),
    (["keys", "new", "--id", "a", "--tpm", "-5"], "keys new --tpm: must be >= 0"),
    (["keys", "hash"], "no key on stdin"),
], ids=["a bad id", "a negative limit", "hash without a key"])
def test_keys_cli_refuses_bad_input_in_one_line(args: list[str], words: str) -> None:
    done = run_cli(*args)
    assert done.returncode == 2 and words in done.stderr and done.stderr.count("\n") == 1 and not done.stdout


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_protected_mode_refuses_to_listen_publicly_without_keys(host: str) -> None:
    done = run_cli("--host", host, "--port", str(free_port()))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "refusing to listen" in done.stderr and "allow_anonymous = true" in done.stderr
    assert "keys new" in done.stderr


async def test_protected_mode_lets_anonymous_through_when_asked(tmp_path: Path, start: Start) -> None:
    path = tmp_path / "open.toml"
    path.write_text("[auth]\nallow_anonymous = true\n")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "--config", str(path), "--host", "0.0.0.0", "--port", str(port), cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        await wait_until_listening(port, process)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0


@pytest.mark.parametrize("workers", ["1", "2"], ids=["one process", "every worker"])
async def test_sighup_reloads_keys_without_dropping_a_stream_and_keeps_them_on_a_bad_file(
        tmp_path: Path, start: Start, fake_ollama: FakeOllama, workers: str) -> None:
    alice, alice_table = new_key("--id", "alice")
    bob, bob_table = new_key("--id", "bob")
    path = tmp_path / "proxy.toml"
    path.write_text(alice_table)
    process, port = await start("--config", str(path), "--workers", workers)
    await log_lines(process, r"1 API key\(s\) in force; SIGHUP reloads", int(workers))
    url = f"http://127.0.0.1:{port}/v1"
    fake_ollama.push(Reply(chunks=[f"w{i} " for i in range(40)], line_delay=0.02))
    async with openai.AsyncOpenAI(base_url=url, api_key=alice, max_retries=0, timeout=20) as a, \
            openai.AsyncOpenAI(base_url=url, api_key=bob, max_retries=0, timeout=20) as b:
        with pytest.raises(openai.AuthenticationError):
            await b.models.list()
        stream = await a.chat.completions.create(model="llama3.2", messages=USER, stream=True)  # type: ignore[call-overload]
        path.write_text(alice_table + "\n\n" + bob_table)
        process.send_signal(signal.SIGHUP)
        await log_lines(process, r"reloaded 2 API key\(s\)", int(workers))
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "".join(f"w{i} " for i in range(40))  # the stream in flight went on whole
        for _ in range(2 * int(workers)):  # each worker (connections spread by the kernel) knows bob
            assert [m.id async for m in b.models.list()]
        path.write_text("[auth\nbroken")
        process.send_signal(signal.SIGHUP)
        await log_lines(process, r"reload failed, keeping the keys in force: .*not valid TOML", int(workers))
        assert [m.id async for m in b.models.list()]
    assert process.returncode is None
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 15) == 0
