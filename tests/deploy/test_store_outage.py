"""The store's writer through PostgreSQL restarts: writes failing mid-transaction (the server
ends the session, asyncpg's protocol left in an odd state) are kept and retried, the writer
never dies, and once the server is back every row lands, once.

Before the fix asyncpg's ``InternalClientError`` ("cannot switch to state 15; another operation
is in progress") escaped the backend as something other than ``StoreError`` and ended the
background task: nothing more was written until a graceful stop, and a crash after it lost all.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.config import StoreConfig
from proxy.store.backends import open_store
from proxy.store.base import ChatRecord, StoreError
from proxy.store.service import StoreService
from proxy.upstream.outcome import Outcome
from tests.pg import reset_postgres, start_postgres, stop_postgres


async def test_the_writer_survives_postgres_restarts_and_loses_nothing(postgres_server: str) -> None:
    reset_postgres(postgres_server)
    store = await open_store(postgres_server)
    service = StoreService(store, StoreConfig(enabled=True, url=postgres_server, flush_interval=0.05))
    service.start()
    written = 0
    stop = asyncio.Event()

    async def traffic() -> None:  # a request's end every millisecond or so: usage and a completion
        nonlocal written
        while not stop.is_set():
            service.usage.listen(Outcome("chat.completions", "m", "k", prompt_tokens=1))
            service.save_chat(ChatRecord(f"chatcmpl-{written}", "k", 0, "m", [], {}, {}))
            written += 1
            await asyncio.sleep(0.001)

    load = asyncio.create_task(traffic())
    try:
        for _ in range(3):
            await service.written.wait()  # a write got through since the last restart
            service.written.clear()
            await asyncio.to_thread(stop_postgres, postgres_server)  # writes fail while it is down
            await asyncio.to_thread(start_postgres, postgres_server)
            assert service._task is not None and not service._task.done()  # the writer lives on
    finally:
        stop.set()
        await load
    assert await service.flush()  # the server is back: everything pending goes now
    [(requests,)] = await store.fetch("SELECT SUM(requests) FROM usage_hourly")
    [(chats,)] = await store.fetch("SELECT COUNT(*) FROM chat_completions")
    status = service.status()
    await service.stop()
    assert (int(requests), int(chats)) == (written, written) and status["dropped"] == 0


class FlakyCommit:
    """Wraps a store: the next usage write fails, either before anything is written or after
    the database committed it (the answer to COMMIT lost): the two cases a client cannot tell."""

    def __init__(self, store: Any, committed: bool) -> None:
        self._store, self.committed, self.armed = store, committed, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def add_usage(self, rows: Any, batch: str | None = None) -> None:
        if self.armed:
            self.armed = False
            if self.committed:
                await self._store.add_usage(rows, batch=batch)
            raise StoreError("ConnectionDoesNotExistError: connection was closed in the middle of operation")
        await self._store.add_usage(rows, batch=batch)


@pytest.mark.parametrize("committed", [True, False], ids=["committed before the error", "not committed"])
async def test_a_usage_write_retried_after_an_unclear_failure_counts_once(store_url: str, committed: bool) -> None:
    store = await open_store(store_url)
    flaky = FlakyCommit(store, committed)
    service = StoreService(flaky, StoreConfig(enabled=True, url=store_url, flush_interval=3600))  # type: ignore[arg-type]
    for _ in range(3):
        service.usage.listen(Outcome("chat.completions", "m", "k", prompt_tokens=2))
    assert not await service.flush() and service.status()["pending_usage_rows"] == 1
    service.usage.listen(Outcome("chat.completions", "m", "k", prompt_tokens=2))  # one more meanwhile
    assert await service.flush() and service.status()["pending_usage_rows"] == 0
    [(requests, tokens)] = await store.fetch("SELECT SUM(requests), SUM(input_tokens) FROM usage_hourly")
    await store.close()
    assert (int(requests), int(tokens)) == (4, 8)
