"""The background writer: batches, read-your-writes, failures kept and bounded, a last flush."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from proxy.config import StoreConfig
from proxy.store import ChatRecord, StoreError, open_store
from proxy.store.base import Statement
from proxy.store.service import StoreService
from proxy.store.sqlite import SQLiteStore
from proxy.upstream.outcome import Outcome


class Flaky(SQLiteStore):
    """A real in-memory SQLite store whose writes fail while ``down`` is set."""

    down = False
    writes = 0

    async def transaction(self, statements: Iterable[Statement]) -> None:
        if self.down:
            raise StoreError("OperationalError: database is locked")
        self.writes += 1
        await super().transaction(statements)


def outcome(key: str = "k") -> Outcome:
    o = Outcome("chat.completions", "m", key)
    o.prompt_tokens, o.completion_tokens, o.ended = 2, 3, o.started
    return o


async def service(**config: Any) -> tuple[StoreService, Flaky]:
    store = await Flaky.open("sqlite://")
    return StoreService(store, StoreConfig(enabled=True, url="sqlite://", **config)), store


async def test_nothing_is_written_until_a_flush_and_then_in_one_batch() -> None:
    svc, store = await service()
    for _ in range(50):
        svc.usage.listen(outcome())
    assert store.writes == 0
    assert await svc.flush()
    assert store.writes == 1  # fifty requests, one transaction
    [row] = await store.usage(0, 2**40)
    assert (row.requests, row.input_tokens, row.output_tokens) == (50, 100, 150)
    await svc.stop()


async def test_a_failed_flush_keeps_the_batch_bounded_and_reports_it() -> None:
    svc, store = await service(max_pending=2)
    store.down = True
    for key in ("a", "b"):
        svc.usage.listen(outcome(key))
    for n in range(3):
        svc.save_chat(ChatRecord(f"c{n}", "k", n, "m", [], {}, {}))
    assert not await svc.flush()
    status = svc.status()
    assert status["ok"] is False and "locked" in status["last_error"]
    assert (status["pending_usage_rows"], status["pending_completions"], status["dropped"]) == (2, 2, 1)
    store.down = False
    assert await svc.flush()
    assert svc.status() == {"ok": True, "pending_usage_rows": 0, "pending_completions": 0, "dropped": 1,
                            "last_error": None}
    assert [r.id for r in await store.list_chats("k")] == ["c1", "c2"]
    assert sorted(r.key_id for r in await store.usage(0, 2**40)) == ["a", "b"]
    await svc.stop()


async def test_the_task_writes_history_at_once_and_stop_flushes_usage(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = await open_store(url)
    svc = StoreService(store, StoreConfig(enabled=True, url=url, flush_interval=3600))
    svc.start()
    svc.save_chat(ChatRecord("c1", "k", 1, "m", [], {}, {}))
    # the queued completion wakes the writer at once, not after the hour-long interval
    await asyncio.wait_for(svc.written.wait(), 10)
    reader = await open_store(url)  # another connection: what is on disk
    assert await reader.get_chat("c1", "k") is not None
    svc.usage.listen(outcome())
    assert await reader.usage(0, 2**40) == []  # usage waits for the interval
    await svc.stop()  # graceful stop: the last flush writes the rest
    assert [r.requests for r in await reader.usage(0, 2**40)] == [1]
    await reader.close()


async def test_retention_deletes_what_is_older_than_the_days_kept() -> None:
    svc, store = await service(retention_days=2)
    now = int(time.time())
    await store.put_chats([ChatRecord("old", "k", now - 3 * 86400, "m", [], {}, {}),
                           ChatRecord("new", "k", now - 86400, "m", [], {}, {})])
    await svc._retain()
    assert [r.id for r in await store.list_chats("k")] == ["new"]
    await svc.stop()


class Picky(SQLiteStore):
    """Refuses one record (as PostgreSQL refuses text it cannot store), accepts the others."""

    async def put_chats(self, records: Any) -> None:
        if any(r.id == "bad" for r in records):
            raise StoreError("DataError: refused")
        await super().put_chats(records)


async def test_one_refused_record_does_not_hold_back_the_others() -> None:
    store = await Picky.open("sqlite://")
    svc = StoreService(store, StoreConfig(enabled=True, url="sqlite://"))
    for chat_id in ("a", "bad", "b"):
        svc.save_chat(ChatRecord(chat_id, "k", 1, "m", [], {}, {}))
    assert not await svc.flush()
    assert [r.id for r in await store.list_chats("k")] == ["a", "b"]  # written alone
    svc.save_chat(ChatRecord("c", "k", 2, "m", [], {}, {}))
    assert not await svc.flush()
    svc.save_chat(ChatRecord("d", "k", 3, "m", [], {}, {}))
    assert await svc.flush()  # refused a third time while others went through: dropped
    assert [r.id for r in await store.list_chats("k")] == ["a", "b", "c", "d"]
    assert svc.status()["dropped"] == 1 and svc.status()["pending_completions"] == 0
    await svc.stop()


async def test_a_stop_ends_the_wait_at_once_even_when_backing_off() -> None:
    for backing_off in (False, True):
        svc, store = await service(flush_interval=3600)
        svc.failures = int(backing_off)  # as after a failed write: waiting out a long back-off
        svc.start()
        svc.usage.listen(outcome())
        await asyncio.wait_for(svc.stop(), 10)  # not an hour, not five minutes
        assert store.writes == 1 and len(svc.usage) == 0  # the last flush wrote the usage
