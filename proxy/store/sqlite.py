"""The embedded store: one SQLite file through ``aiosqlite``, nothing to run.

One connection (aiosqlite's one thread) is the one writer: statements are serialised, and the
background flusher batches writes into one transaction each, so SQLite's single-writer rule is
never contended within a process. WAL lets other processes (``--workers N``, the ``usage`` CLI)
read while it writes; ``synchronous=NORMAL`` is durable across a process crash in WAL mode (an
OS crash may lose the last transactions); ``busy_timeout`` makes a second process wait for the
lock instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import aiosqlite

from .base import Statement, Store, StoreError
from .migrations import VERSION_TABLE, pending

__all__ = ["SQLiteStore", "sqlite_path"]

def sqlite_path(url: str) -> str:
    """``sqlite://`` → memory; ``sqlite:///rel.db`` → ``rel.db``; ``sqlite:////abs.db`` → ``/abs.db``."""
    rest = url.removeprefix("sqlite://")
    if not rest:
        return ":memory:"
    if not rest.startswith("/") or len(rest) < 2:
        raise ValueError("a SQLite store URL is sqlite:///relative/path, sqlite:////absolute/path or sqlite://")
    return rest[1:]

async def _while_locked(setup: Callable[[], Awaitable[None]], within: float) -> None:
    """Run ``setup``, again while SQLite says "database is locked", for up to ``within`` seconds.

    Switching a new file to WAL needs it to itself for a moment, and SQLite answers that at once,
    without its busy handler, while another process is switching or migrating it too (several
    replicas or workers starting together), so ``busy_timeout`` alone does not cover it.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            await setup()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.02)


class SQLiteStore(Store):
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        # One connection serves every coroutine of the process: a transaction awaits between its
        # statements, so without this a second BEGIN (the batch runner, the usage flusher, a
        # stored completion) would land inside the first ("cannot start a transaction within a
        # transaction"), and a lone write or read in between would join it.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str, *, busy_timeout: float = 5.0) -> SQLiteStore:
        with _errors():
            db = await aiosqlite.connect(sqlite_path(url), isolation_level=None)  # we BEGIN ourselves
        try:
            await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            store = cls(db)
            await _while_locked(store._setup, busy_timeout)
        except BaseException:
            await db.close()
            raise
        return store

    async def _setup(self) -> None:
        await self._db.execute("PRAGMA journal_mode = WAL")
        await self._db.execute("PRAGMA synchronous = NORMAL")
        await self._migrate()

    async def _migrate(self) -> None:
        # BEGIN IMMEDIATE takes the write lock first: a second process starting at once waits
        # (busy_timeout), then reads the version the first one wrote.
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            await self._db.execute(VERSION_TABLE)
            rows = list(await self._db.execute_fetchall("SELECT version FROM schema_version"))
            if not rows:
                await self._db.execute("INSERT INTO schema_version (version) VALUES (0)")
            for version, step in pending(int(rows[0][0]) if rows else 0):
                for sql in step:
                    await self._db.execute(sql)
                await self._db.execute("UPDATE schema_version SET version = ?", (version,))
            await self._db.execute("COMMIT")
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise

    async def version(self) -> int:
        rows = await self.fetch("SELECT version FROM schema_version")
        return int(rows[0][0]) if rows else 0

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        async with self._lock:
            with _errors():
                return [tuple(row) for row in await self._db.execute_fetchall(sql, args)]

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._lock:
            return await self._execute(sql, args)

    async def _execute(self, sql: str, args: tuple[Any, ...]) -> int:
        with _errors():
            cursor = await self._db.execute(sql, args)
            try:
                return cursor.rowcount
            finally:
                await cursor.close()

    async def transaction(self, statements: Iterable[Statement]) -> None:
        async with self._lock:
            await self._transaction(statements)

    async def _transaction(self, statements: Iterable[Statement]) -> None:
        with _errors():
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    await self._db.execute(sql, args)
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        await self._db.close()


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """SQLite's failures (locked past busy_timeout, disk full, closed) as ``StoreError``."""
    try:
        yield
    except (sqlite3.Error, ValueError, OSError) as exc:  # aiosqlite: ValueError once closed
        raise StoreError(f"{type(exc).__name__}: {exc}") from exc
