"""The store's life in the app: open and migrate at start, write in the background, flush on
a graceful stop.

Requests never wait for the database: usage goes to ``UsageBook`` (an outcome listener) and
finished answers to ``HistoryQueue``; one task writes both every ``flush_interval`` seconds
(1 s by default, counted from each write's start: what ``kill -9`` can lose; history as soon as
it arrives, so a stored completion is readable at once) in one batched transaction each.
Backends raise only ``StoreError``: anything else would end this task. A failed write keeps its batch (bounded) and is retried with exponential
back-off; ``status()`` reports pending, dropped and the last error for ``/readyz``. Readers of
history call ``flush()`` first, so a client reads its own writes. Retention runs hourly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from ..config import StoreConfig
from .base import ChatRecord, Store, StoreError, UsageRow
from .history import HistoryQueue
from .usage import UsageBook

__all__ = ["StoreService"]

log = logging.getLogger("proxy.store")

MAX_BACKOFF = 300.0
POISON_AFTER = 3
RETENTION_EVERY = 3600.0
BATCH_IDS_KEPT = 86400  # seconds a written usage batch's id is kept (a retry asks within minutes)


class StoreService:
    def __init__(self, store: Store, config: StoreConfig) -> None:
        self.store = store
        self.config = config
        self.usage = UsageBook(config.max_pending)
        self.history = HistoryQueue(config.max_pending)
        self.failures = 0
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self.written = asyncio.Event()  # set after each successful background write (tests await it)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._last_retention = 0.0
        self._closing = False
        self._stop = asyncio.Event()
        self._refusals: dict[str, int] = {}  # record id -> times refused alone
        self._usage_batch: tuple[str, list[UsageRow]] | None = None  # a failed write, kept whole

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-flusher")

    async def stop(self) -> None:
        """Graceful stop: the last flush, then the connection closes."""
        # Not a cancel: a write cut off mid-transaction could be committed by the database and
        # still be retried (counted twice) or never be (lost); the task ends after its write.
        self._closing = True
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()
        await self.store.close()

    def save_chat(self, record: ChatRecord) -> None:
        """Queue a finished completion; written by the background task, not by the request."""
        self.history.push(record)
        self._wake.set()

    async def flush(self) -> bool:
        """Write everything pending now; False when a write failed (its batch is kept)."""
        async with self._lock:
            ok = True
            try:
                await self._write_usage()
            except StoreError as exc:  # the store is down or refused: the batch is kept, retried
                ok = self._failed("usage", exc)
            chats = self.history.take()
            try:
                await self.store.put_chats(chats)
            except StoreError as exc:
                kept = await self._one_by_one(chats) if len(chats) > 1 else chats
                self.history.give_back(kept)
                ok = self._failed("history", exc) if kept else ok
            if ok:
                self.failures, self.last_error = 0, None
            return ok

    async def _write_usage(self) -> None:
        """Write the usage batch that failed last time, if any, then what came in since.

        A failed write keeps its batch whole, under its id: the failure may have come after the
        database committed (the connection lost around COMMIT), and adding the same rows again
        would count them twice. So a retry asks first whether that id was written.
        """
        if self._usage_batch is not None:
            batch_id, rows = self._usage_batch
            if not await self.store.usage_written(batch_id):
                await self.store.add_usage(rows, batch=batch_id)
            self._usage_batch = None
        rows = self.usage.take()
        if rows:
            self._usage_batch = (uuid.uuid4().hex, rows)
            await self.store.add_usage(rows, batch=self._usage_batch[0])
            self._usage_batch = None

    async def _one_by_one(self, chats: list[ChatRecord]) -> list[ChatRecord]:
        """After a failed batch: write each record alone, so one the database refuses cannot
        hold back the others forever. While none gets through the store is down and every
        record is kept; a record refused ``POISON_AFTER`` times while others succeed is dropped."""
        failed: list[ChatRecord] = []
        for record in chats:
            try:
                await self.store.put_chats([record])
            except StoreError:
                failed.append(record)
        if len(failed) == len(chats):
            return failed  # nothing got through: the store is down, not the records
        kept = []
        for record in failed:
            tries = self._refusals[record.id] = self._refusals.get(record.id, 0) + 1
            if tries < POISON_AFTER:
                kept.append(record)
                continue
            del self._refusals[record.id]
            self.history.dropped += 1
            log.error("store: completion %s refused %d times while others were written; dropped",
                      record.id, tries)
        return kept

    def _failed(self, what: str, exc: Exception) -> bool:
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("store: writing %s failed (%s); kept for a retry", what, self.last_error)
        return False

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: what waits to be written, what was given up, the last failure."""
        return {
            "ok": self.last_error is None,
            "pending_usage_rows": len(self.usage) + (len(self._usage_batch[1]) if self._usage_batch else 0),
            "pending_completions": len(self.history),
            "dropped": self.usage.dropped + self.history.dropped,
            "last_error": self.last_error,
        }

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.flush_interval
        due = loop.time() + interval
        while not self._closing:
            # Backing off, new history does not hasten the retry; a stop always ends the wait.
            # (asyncio.timeout_at, not wait_for, which on 3.11 can swallow a racing cancellation.)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(due):
                    await (self._stop if self.failures else self._wake).wait()
            if self._closing:
                return
            self._wake.clear()
            started = loop.time()
            if await self.flush():
                # Due one interval after this write began, not after it ended: what a crash can
                # lose is one interval of usage plus the write in progress, however slow it is.
                due = started + interval
                self.written.set()
            else:
                self.failures += 1
                due = loop.time() + min(MAX_BACKOFF, max(interval, 1.0) * 2 ** min(self.failures, 16))
            await self._retain()

    async def _retain(self) -> None:
        days = self.config.retention_days
        now = time.time()
        if now - self._last_retention < RETENTION_EVERY:
            return
        self._last_retention = now
        try:
            await self.store.forget_usage_batches(int(now) - BATCH_IDS_KEPT)
            if days:
                await self.store.delete_before(int(now) - days * 86400)
        except StoreError as exc:
            log.warning("store: retention failed (%s: %s); retried in an hour", type(exc).__name__, exc)
