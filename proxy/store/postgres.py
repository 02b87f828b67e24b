"""The shared store: PostgreSQL through ``asyncpg``, for several replicas or ``--workers N``.

A small pool (``[store] pool_size``) serves the background flusher and the history routes.
The SQL is the same as SQLite's, with ``?`` placeholders rewritten to ``$n`` once per statement
text (cached). Migrations run under a transaction-scoped advisory lock, so replicas starting
together apply each step once.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterable, Iterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

from .base import Statement, Store, StoreError
from .migrations import ADVISORY_LOCK, VERSION_TABLE, pending

__all__ = ["PostgresStore", "numbered"]

# A server that stops answering must not hold the writer (and the history reads behind it)
# forever: connecting / waiting for a pooled connection, and each statement, are bounded.
CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 30.0


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, …`` (the store's SQL has no ``?`` in literals)."""
    counter = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def _rows_changed(status: str) -> int:
    """asyncpg's command tag (``DELETE 3``, ``INSERT 0 1``) → the number of rows it changed."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresStore(Store):
    # Row locks for claiming work (the batch runner): concurrent replicas skip each other's rows.
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 4) -> PostgresStore:
        with _errors():
            # min_size=0: connections are opened when wanted, so while the server is away (a
            # restart) asyncpg does not retry a floor of them in the background, logging a
            # traceback each second; the store's own retries and /readyz report it instead.
            pool = await asyncpg.create_pool(url, min_size=0, max_size=pool_size, timeout=CONNECT_TIMEOUT,
                                             command_timeout=COMMAND_TIMEOUT)
        store = cls(pool)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def _migrate(self) -> None:
        async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK)
            await conn.execute(VERSION_TABLE)
            version = await conn.fetchval("SELECT version FROM schema_version")
            if version is None:
                await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            for number, step in pending(int(version or 0)):
                for sql in step:
                    await conn.execute(sql)
                await conn.execute("UPDATE schema_version SET version = $1", number)

    async def version(self) -> int:
        rows = await self.fetch("SELECT version FROM schema_version")
        return int(rows[0][0]) if rows else 0

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with _errors():
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                return [tuple(row) for row in await conn.fetch(numbered(sql), *args)]

    async def execute(self, sql: str, *args: Any) -> int:
        with _errors():
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                return _rows_changed(await conn.execute(numbered(sql), *args))

    async def transaction(self, statements: Iterable[Statement]) -> None:
        """One transaction; runs of the same statement (a batch of upserts) go as one executemany."""
        with _errors():
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn, conn.transaction():
                batch: list[Any] = []
                current = ""
                for sql, args in statements:
                    if sql != current and batch:
                        await conn.executemany(numbered(current), batch)
                        batch = []
                    current = sql
                    batch.append(args)
                if batch:
                    await conn.executemany(numbered(current), batch)

    async def close(self) -> None:
        await self._pool.close()


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """PostgreSQL's and the network's failures as ``StoreError``."""
    try:
        yield
    # InternalClientError: a connection the server dropped mid-statement (a restart) can leave
    # asyncpg's protocol in a state it reports so ("cannot switch to state ...").
    except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError,
            TimeoutError) as exc:
        raise StoreError(f"{type(exc).__name__}: {exc}") from exc
