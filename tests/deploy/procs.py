"""Real proxy processes for the deploy tests, and the official SDK's load against them.

``ProxyProcess`` runs ``python -m proxy`` on a free loopback port with its log in a file (a
pipe nobody reads would stall a busy process). ``Load`` drives streaming and non-streaming chat
completions from several concurrent loops of ``openai.AsyncOpenAI`` and records every answer's
time and every failure's kind, so a test can count sent, answered and failed around a fault.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import openai

from tests.integration.test_cli import ROOT, free_port, wait_until_listening

__all__ = ["Load", "ProxyProcess"]


class ProxyProcess:
    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.config, self.log, self.env = config, log, env or {}
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as log:  # a local file, opened once per start
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "proxy", "--config", str(self.config), "--host", "127.0.0.1",
                "--port", str(self.port), cwd=ROOT, env={**os.environ, **self.env},
                stdout=asyncio.subprocess.DEVNULL, stderr=log)
        await wait_until_listening(self.port, self.process)

    def kill(self) -> None:
        """SIGKILL: no last flush, no goodbye."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), 60)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def traceback_free(self) -> bool:
        return b"Traceback" not in self.log.read_bytes()


@dataclass
class Load:
    """Concurrent loops of chat completions (every other one streamed), loop ``i`` against
    ``targets[i % len(targets)]`` (a base URL and the API key it uses), answers and failures
    kept per target."""

    targets: list[tuple[str, str]]
    loops: int = 4
    sent: Counter[int] = field(default_factory=Counter)
    answered: dict[int, list[float]] = field(default_factory=dict)  # monotonic times of complete answers
    failed: dict[int, Counter[str]] = field(default_factory=dict)  # by kind: status or exception
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i in range(len(self.targets)):
            self.answered[i], self.failed[i] = [], Counter()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(i)) for i in range(self.loops)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def until(self, condition: Callable[[], bool], within: float = 60.0) -> None:
        """Wait (bounded) until ``condition`` holds; re-checked after every answer or failure."""
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def count(self, target: int, since: float = 0.0, before: float = float("inf")) -> int:
        """Answers of ``target`` that arrived in [since, before)."""
        return sum(1 for t in self.answered[target] if since <= t < before)

    def failures(self, target: int, kind: str | None = None) -> int:
        counts = self.failed[target]
        return counts[kind] if kind else sum(counts.values())

    async def _loop(self, index: int) -> None:
        target = index % len(self.targets)
        url, key = self.targets[target]
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30) as sdk:
            n = 0
            while not self._stop.is_set():
                n += 1
                self.sent[target] += 1
                try:
                    await self._one(sdk, stream=n % 2 == 0)
                except openai.APIStatusError as exc:
                    self.failed[target][str(exc.status_code)] += 1
                    await asyncio.sleep(0.01)  # a refusal comes at once: do not spin
                except openai.APIError as exc:  # connection refused / reset: a killed replica
                    self.failed[target][type(exc).__name__] += 1
                    await asyncio.sleep(0.01)
                else:
                    self.answered[target].append(time.monotonic())
                self._changed.set()

    @staticmethod
    async def _one(sdk: openai.AsyncOpenAI, *, stream: bool) -> None:
        messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
        if not stream:
            answer = await sdk.chat.completions.create(model="llama3.2", messages=messages)
            assert answer.choices[0].finish_reason == "stop"
            return
        finish = None
        chunks = await sdk.chat.completions.create(model="llama3.2", messages=messages, stream=True)
        async for chunk in chunks:
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
        if finish != "stop":
            raise openai.APIConnectionError(request=None)  # type: ignore[arg-type]  # cut short
