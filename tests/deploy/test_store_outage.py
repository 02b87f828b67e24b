"""The store's writer through PostgreSQL restarts: writes failing mid-transaction (the server
ends the session, asyncpg's protocol left in an odd state) are kept and retried, the writer
never dies, and once the server is back every row lands, once.

Before the fix asyncpg's ``InternalClientError`` ("cannot switch to state 15; another operation
is in progress") escaped the backend as something other than ``StoreError`` and ended the
background task: nothing more was written until a graceful stop, and a crash after it lost all.
"""

from __future__ import annotations

import asyncio

from proxy.config import StoreConfig
from proxy.outcome import Outcome
from proxy.store.base import ChatRecord, open_store
from proxy.store.service import StoreService
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
