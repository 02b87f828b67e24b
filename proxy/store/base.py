"""The store's one interface, implemented by ``sqlite.py`` and ``postgres.py`` (``backends.py`` picks one).

The SQL is written once with ``?`` placeholders and portable types (``BIGINT``, ``TEXT``,
``DOUBLE PRECISION``, ``ON CONFLICT … DO UPDATE``), which SQLite and PostgreSQL both accept;
each backend only supplies ``execute``/``fetch`` and its transaction, so the behaviour the
shared test suite checks is the same code on both. JSON columns are ``TEXT`` written by orjson:
the store never looks inside them except through the ``chat_metadata`` side table, which makes
``metadata[k]=v`` filters a plain indexed join on either backend.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

__all__ = ["ChatRecord", "Store", "StoreError", "UsageRow"]


class StoreError(Exception):
    """The database failed (unreachable, locked past ``busy_timeout``, refused a statement)."""


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Usage of one (hour, key, model, endpoint), added to what the store already holds."""

    hour: int  # unix seconds of the UTC hour's start
    key_id: str
    model: str
    endpoint: str
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    requested: str = ""  # the model name the client asked for, when an alias ("" otherwise)


@dataclass(frozen=True, slots=True)
class ChatRecord:
    """One stored chat completion: the request's messages, the answer and its metadata."""

    id: str
    key_id: str
    created: int
    model: str
    messages: list[Any]
    completion: dict[str, Any]
    metadata: dict[str, str]


_USAGE_UPSERT = (
    "INSERT INTO usage_hourly (hour, key_id, model, endpoint, requests, errors, input_tokens,"
    " output_tokens, seconds, requested) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (hour, key_id, model, endpoint, requested) DO UPDATE SET"
    " requests = usage_hourly.requests + excluded.requests,"
    " errors = usage_hourly.errors + excluded.errors,"
    " input_tokens = usage_hourly.input_tokens + excluded.input_tokens,"
    " output_tokens = usage_hourly.output_tokens + excluded.output_tokens,"
    " seconds = usage_hourly.seconds + excluded.seconds"
)
_CHAT_COLUMNS = "id, key_id, created, model, messages, completion, metadata"
_CHAT_INSERT = (
    f"INSERT INTO chat_completions ({_CHAT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO NOTHING"
)
_RESPONSE_UPSERT = (
    "INSERT INTO responses (id, key_id, created, data) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET created = excluded.created, data = excluded.data"
    " WHERE responses.key_id = excluded.key_id"
)

Statement = tuple[str, Sequence[Any]]


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class Store(abc.ABC):
    """Usage rows, stored chat completions and stored responses; every read is per key."""

    # ---- what a backend supplies -----------------------------------------------------------

    @abc.abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """The rows of one query."""

    @abc.abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement in its own transaction; the number of rows it changed."""

    @abc.abstractmethod
    async def transaction(self, statements: Iterable[Statement]) -> None:
        """Run ``statements`` in one transaction: all of them or none."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connection(s)."""

    # ---- usage -------------------------------------------------------------------------------

    async def add_usage(self, rows: Sequence[UsageRow], batch: str | None = None) -> None:
        """Add ``rows`` to the hourly totals, in one transaction (one batched upsert); with a
        ``batch`` id, that id is recorded in the same transaction (``usage_written``)."""
        if not rows:
            return
        statements: list[Statement] = []
        if batch is not None:
            statements.append(("INSERT INTO usage_batches (id, written) VALUES (?, ?)", (batch, int(time.time()))))
        statements += [(_USAGE_UPSERT, (r.hour, r.key_id, r.model, r.endpoint, r.requests, r.errors,
                                        r.input_tokens, r.output_tokens, r.seconds, r.requested)) for r in rows]
        await self.transaction(statements)

    async def usage_written(self, batch: str) -> bool:
        """Whether the write of ``batch`` committed (asked only after it seemed to fail)."""
        return bool(await self.fetch("SELECT 1 FROM usage_batches WHERE id = ?", batch))

    async def forget_usage_batches(self, before: int) -> None:
        """Drop the ids of batches written before ``before`` (unix seconds): long settled."""
        await self.execute("DELETE FROM usage_batches WHERE written < ?", before)

    async def usage(self, start: int, end: int, key_id: str | None = None) -> list[UsageRow]:
        """Hourly rows with ``start <= hour < end``; one key's only when ``key_id`` is given."""
        sql = ("SELECT hour, key_id, model, endpoint, requests, errors, input_tokens, output_tokens,"
               " seconds, requested FROM usage_hourly WHERE hour >= ? AND hour < ?")
        args: list[Any] = [start, end]
        if key_id is not None:
            sql += " AND key_id = ?"
            args.append(key_id)
        rows = await self.fetch(sql + " ORDER BY hour, key_id, model, endpoint, requested", *args)
        return [UsageRow(int(h), k, m, e, int(n), int(x), int(i), int(o), float(s), r)
                for h, k, m, e, n, x, i, o, s, r in rows]

    # ---- stored chat completions -------------------------------------------------------------

    async def put_chats(self, records: Sequence[ChatRecord]) -> None:
        """Save ``records`` (a batch from the history queue) in one transaction."""
        statements: list[Statement] = []
        for r in records:
            statements.append((_CHAT_INSERT, (r.id, r.key_id, r.created, r.model, _dumps(r.messages),
                                              _dumps(r.completion), _dumps(r.metadata))))
            statements.extend(_metadata_rows(r.id, r.metadata))
        if statements:
            await self.transaction(statements)

    async def get_chat(self, chat_id: str, key_id: str) -> ChatRecord | None:
        rows = await self.fetch(f"SELECT {_CHAT_COLUMNS} FROM chat_completions WHERE id = ? AND key_id = ?",
                                chat_id, key_id)
        return _chat(rows[0]) if rows else None

    async def list_chats(self, key_id: str, *, model: str | None = None,
                         metadata: dict[str, str] | None = None, after: str | None = None,
                         limit: int = 20, order: Literal["asc", "desc"] = "asc") -> list[ChatRecord]:
        """One page of a key's stored completions, ordered by (created, id); ``limit`` of them."""
        where, args = ["c.key_id = ?"], [key_id]
        if model is not None:
            where.append("c.model = ?")
            args.append(model)
        for name, value in (metadata or {}).items():
            where.append("EXISTS (SELECT 1 FROM chat_metadata m WHERE m.id = c.id AND m.name = ? AND m.value = ?)")
            args += [name, value]
        if after is not None:
            found = await self.fetch("SELECT created FROM chat_completions WHERE id = ? AND key_id = ?",
                                     after, key_id)
            if not found:
                return []
            cmp = ">" if order == "asc" else "<"
            where.append(f"(c.created {cmp} ? OR (c.created = ? AND c.id {cmp} ?))")
            args += [found[0][0], found[0][0], after]
        direction = "ASC" if order == "asc" else "DESC"
        columns = ", ".join(f"c.{c}" for c in _CHAT_COLUMNS.split(", "))
        rows = await self.fetch(
            f"SELECT {columns} FROM chat_completions c WHERE {' AND '.join(where)}"
            f" ORDER BY c.created {direction}, c.id {direction} LIMIT ?", *args, limit)
        return [_chat(row) for row in rows]

    async def update_chat_metadata(self, chat_id: str, key_id: str, metadata: dict[str, str]) -> bool:
        """Replace a stored completion's metadata; False when the key has no such completion."""
        if await self.get_chat(chat_id, key_id) is None:
            return False
        await self.transaction([
            ("UPDATE chat_completions SET metadata = ? WHERE id = ? AND key_id = ?",
             (_dumps(metadata), chat_id, key_id)),
            ("DELETE FROM chat_metadata WHERE id = ?", (chat_id,)),
            *_metadata_rows(chat_id, metadata),
        ])
        return True

    async def delete_chat(self, chat_id: str, key_id: str) -> bool:
        found = await self.get_chat(chat_id, key_id)
        if found is None:
            return False
        await self.transaction([
            ("DELETE FROM chat_metadata WHERE id = ?", (chat_id,)),
            ("DELETE FROM chat_completions WHERE id = ? AND key_id = ?", (chat_id, key_id)),
        ])
        return True

    # ---- stored responses (the Responses API) ------------------------------------------------

    async def put_response(self, response_id: str, key_id: str, created_at: int, data: dict[str, Any]) -> None:
        """Save (or replace) one response, at once: the next request may chain on it."""
        await self.execute(_RESPONSE_UPSERT, response_id, key_id, created_at, _dumps(data))

    async def get_response(self, response_id: str, key_id: str) -> dict[str, Any] | None:
        rows = await self.fetch("SELECT data FROM responses WHERE id = ? AND key_id = ?", response_id, key_id)
        return orjson.loads(rows[0][0]) if rows else None

    async def delete_response(self, response_id: str, key_id: str) -> bool:
        return await self.execute("DELETE FROM responses WHERE id = ? AND key_id = ?", response_id, key_id) > 0

    # ---- retention -----------------------------------------------------------------------------

    async def delete_before(self, cutoff: int) -> None:
        """Delete every record created before ``cutoff`` (unix seconds): ``retention_days``."""
        await self.transaction([
            ("DELETE FROM chat_metadata WHERE id IN (SELECT id FROM chat_completions WHERE created < ?)",
             (cutoff,)),
            ("DELETE FROM chat_completions WHERE created < ?", (cutoff,)),
            ("DELETE FROM responses WHERE created < ?", (cutoff,)),
            ("DELETE FROM usage_hourly WHERE hour < ?", (cutoff,)),
        ])


def _metadata_rows(chat_id: str, metadata: dict[str, str]) -> list[Statement]:
    return [("INSERT INTO chat_metadata (id, name, value) VALUES (?, ?, ?) ON CONFLICT (id, name) DO NOTHING",
             (chat_id, k, v))
            for k, v in metadata.items()]


def _chat(row: tuple[Any, ...]) -> ChatRecord:
    chat_id, key_id, created, model, messages, completion, metadata = row
    return ChatRecord(chat_id, key_id, int(created), model, orjson.loads(messages), orjson.loads(completion),
                      orjson.loads(metadata))
