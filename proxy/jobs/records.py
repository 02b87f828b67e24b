"""The Batch API's tables (``files``, ``batches``, ``batch_lines``; migration 2), through the
store's own ``fetch``/``execute``/``transaction``, so SQLite and PostgreSQL run the same SQL.

Every read and write that a client can reach names the key: a key sees only its own files and
batches. The runner's claims are the one place the backends differ: PostgreSQL adds
``FOR UPDATE SKIP LOCKED`` (``PostgresStore.skip_locked``) so replicas claim disjoint lines;
SQLite has one writer at a time, so its ``UPDATE … RETURNING`` is already exclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import orjson

from ..store.base import Statement, Store
from .lines import unrun_line

__all__ = [
    "ACTIVE", "Claimed", "active_batches", "claim_batch", "claim_lines", "create_batch", "delete_file",
    "file_content", "finalize", "get_batch", "get_file", "line_counts", "list_batches", "list_files",
    "put_file", "record_result", "release_line", "renew_leases", "set_status",
]

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
Claimed = tuple[int, str, str]  # (line, custom_id, body JSON)
_FILE_COLUMNS = "id, created, filename, purpose, bytes"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def file_object(row: Sequence[Any]) -> dict[str, Any]:
    file_id, created, filename, purpose, size = row
    return {"id": file_id, "object": "file", "bytes": int(size), "created_at": int(created), "filename": filename,
            "purpose": purpose, "status": "processed", "expires_at": None, "status_details": None}


# ---- files ------------------------------------------------------------------------------------

async def put_file(store: Store, file_id: str, key_id: str, created: int, filename: str, purpose: str,
                   content: str) -> None:
    await store.execute("INSERT INTO files (id, key_id, created, filename, purpose, bytes, content)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)", file_id, key_id, created, filename, purpose,
                        len(content.encode()), content)


async def get_file(store: Store, file_id: str, key_id: str) -> dict[str, Any] | None:
    rows = await store.fetch(f"SELECT {_FILE_COLUMNS} FROM files WHERE id = ? AND key_id = ?", file_id, key_id)
    return file_object(rows[0]) if rows else None


async def file_content(store: Store, file_id: str, key_id: str) -> str | None:
    rows = await store.fetch("SELECT content FROM files WHERE id = ? AND key_id = ?", file_id, key_id)
    return str(rows[0][0]) if rows else None


async def list_files(store: Store, key_id: str, *, purpose: str | None, after: str | None, limit: int,
                     order: Literal["asc", "desc"]) -> list[dict[str, Any]]:
    where, args = ["key_id = ?"], [key_id]
    if purpose is not None:
        where.append("purpose = ?")
        args.append(purpose)
    await _after(store, "files", key_id, after, order, where, args)
    direction = "ASC" if order == "asc" else "DESC"
    rows = await store.fetch(f"SELECT {_FILE_COLUMNS} FROM files WHERE {' AND '.join(where)}"
                             f" ORDER BY created {direction}, id {direction} LIMIT ?", *args, limit)
    return [file_object(row) for row in rows]


async def _after(store: Store, table: str, key_id: str, after: str | None, order: str, where: list[str],
                 args: list[Any]) -> None:
    """Cursor pagination on (created, id), as the stored completions do."""
    if after is None:
        return
    found = await store.fetch(f"SELECT created FROM {table} WHERE id = ? AND key_id = ?", after, key_id)
    if not found:
        where.append("1 = 0")
        return
    cmp = ">" if order == "asc" else "<"
    where.append(f"(created {cmp} ? OR (created = ? AND id {cmp} ?))")
    args += [found[0][0], found[0][0], after]


async def delete_file(store: Store, file_id: str, key_id: str) -> bool:
    return await store.execute("DELETE FROM files WHERE id = ? AND key_id = ?", file_id, key_id) > 0


# ---- batches ----------------------------------------------------------------------------------

async def create_batch(store: Store, batch: dict[str, Any], key_id: str,
                       lines: Sequence[tuple[int, str, str, int, str | None]]) -> None:
    """The batch and its lines, in one transaction: (line, custom_id, body, done, result)."""
    statements: list[Statement] = [(
        "INSERT INTO batches (id, key_id, created, status, lease_until, data) VALUES (?, ?, ?, ?, 0, ?)",
        (batch["id"], key_id, batch["created_at"], batch["status"], _dumps(batch)))]
    insert = ("INSERT INTO batch_lines (batch_id, line, custom_id, body, done, status_code, result)"
              " VALUES (?, ?, ?, ?, ?, ?, ?)")
    statements += [(insert, (batch["id"], n, custom_id, body, done, 400 if done else 0, result))
                   for n, custom_id, body, done, result in lines]
    await store.transaction(statements)


async def get_batch(store: Store, batch_id: str, key_id: str) -> dict[str, Any] | None:
    rows = await store.fetch("SELECT status, data FROM batches WHERE id = ? AND key_id = ?", batch_id, key_id)
    return await _with_counts(store, rows[0]) if rows else None


async def _with_counts(store: Store, row: Sequence[Any]) -> dict[str, Any]:
    status, data = row
    batch: dict[str, Any] = orjson.loads(data)
    batch["status"] = status
    if status in ACTIVE:  # finished batches carry their final counts in their data
        total, completed, failed, _ = await line_counts(store, batch["id"])
        batch["request_counts"] = {"total": total, "completed": completed, "failed": failed}
    return batch


async def list_batches(store: Store, key_id: str, *, after: str | None, limit: int) -> list[dict[str, Any]]:
    where, args = ["key_id = ?"], [key_id]
    await _after(store, "batches", key_id, after, "desc", where, args)  # newest first, as OpenAI lists
    rows = await store.fetch(f"SELECT status, data FROM batches WHERE {' AND '.join(where)}"
                             " ORDER BY created DESC, id DESC LIMIT ?", *args, limit)
    return [await _with_counts(store, row) for row in rows]


async def active_batches(store: Store) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(id, key_id, status, data) of every batch not yet finished, oldest first."""
    rows = await store.fetch("SELECT id, key_id, status, data FROM batches WHERE status IN (?, ?, ?, ?)"
                             " ORDER BY created, id", *ACTIVE)
    return [(i, k, s, orjson.loads(d)) for i, k, s, d in rows]


async def set_status(store: Store, batch_id: str, key_id: str | None, before: Sequence[str], status: str,
                     data: dict[str, Any]) -> bool:
    """Move a batch from one of ``before`` to ``status``; False when another got there first."""
    marks = ", ".join("?" for _ in before)
    sql = f"UPDATE batches SET status = ?, data = ? WHERE id = ? AND status IN ({marks})"
    args: list[Any] = [status, _dumps(data | {"status": status}), batch_id, *before]
    if key_id is not None:
        sql += " AND key_id = ?"
        args.append(key_id)
    return await store.execute(sql, *args) > 0


async def claim_batch(store: Store, batch_id: str, status: str, now: float, lease: float) -> bool:
    """The right to finalize a batch for ``lease`` seconds (a replica that dies loses it)."""
    return await store.execute("UPDATE batches SET lease_until = ? WHERE id = ? AND status = ? AND lease_until < ?",
                               now + lease, batch_id, status, now) > 0


# ---- lines ------------------------------------------------------------------------------------

async def line_counts(store: Store, batch_id: str) -> tuple[int, int, int, int]:
    """(total, completed, failed, not yet done) of a batch's lines."""
    rows = await store.fetch("SELECT done, status_code >= 200 AND status_code < 300, count(*) FROM batch_lines"
                             " WHERE batch_id = ? GROUP BY done, status_code >= 200 AND status_code < 300", batch_id)
    total = completed = failed = pending = 0
    for done, ok, count in rows:
        total += int(count)
        if not int(done):
            pending += int(count)
        elif ok:
            completed += int(count)
        else:
            failed += int(count)
    return total, completed, failed, pending


async def claim_lines(store: Store, batch_id: str, owner: str, now: float, lease: float, limit: int) -> list[Claimed]:
    """Up to ``limit`` lines no one holds, leased to ``owner`` until ``now + lease``."""
    skip_locked = getattr(store, "skip_locked", "")
    rows = await store.fetch(
        "UPDATE batch_lines SET lease_until = ?, owner = ? WHERE batch_id = ? AND line IN ("
        " SELECT line FROM batch_lines WHERE batch_id = ? AND done = 0 AND lease_until < ?"
        f" ORDER BY line LIMIT ?{skip_locked}) AND done = 0 AND lease_until < ?"
        " RETURNING line, custom_id, body", now + lease, owner, batch_id, batch_id, now, limit, now)
    return sorted((int(n), str(c), str(b)) for n, c, b in rows)


async def renew_leases(store: Store, owner: str, until: float) -> None:
    """Keep the lines this runner is still running (a long answer outlives one lease)."""
    await store.execute("UPDATE batch_lines SET lease_until = ? WHERE owner = ? AND done = 0 AND lease_until > 0",
                        until, owner)


async def release_line(store: Store, batch_id: str, line: int, owner: str, retry_at: float) -> None:
    """Give a line back to be run again from ``retry_at`` (the proxy was busy: 429, 503)."""
    await store.execute("UPDATE batch_lines SET lease_until = ?, owner = '' WHERE batch_id = ? AND line = ?"
                        " AND owner = ? AND done = 0", retry_at, batch_id, line, owner)


async def record_result(store: Store, batch_id: str, line: int, status: int, result: dict[str, Any]) -> bool:
    """Write a line's answer once: a second run's answer (after a crash) is not kept."""
    return await store.execute("UPDATE batch_lines SET done = 1, status_code = ?, result = ?, lease_until = 0"
                               " WHERE batch_id = ? AND line = ? AND done = 0",
                               status, _dumps(result), batch_id, line) > 0


async def finalize(store: Store, batch: dict[str, Any], key_id: str, status: str, terminal: str,
                   unrun_code: str, now: int, new_line_id: Any) -> None:
    """Write the output and error files and the batch's end in one transaction, then drop its
    lines. The file ids are the batch's own, so a second finalizer (the first died) writes the
    same rows, which the first one's commit already holds (``ON CONFLICT DO NOTHING``)."""
    rows = await store.fetch("SELECT line, custom_id, done, status_code, result FROM batch_lines"
                             " WHERE batch_id = ? ORDER BY line", batch["id"])
    output: list[bytes] = []
    errors: list[bytes] = []
    completed = failed = 0
    for _line, custom_id, done, code, result in rows:
        if int(done) and 200 <= int(code) < 300:
            completed += 1
            output.append(result.encode())
            continue
        failed += 1
        if int(done):
            errors.append(result.encode())
        else:
            errors.append(orjson.dumps(unrun_line(new_line_id(), custom_id, unrun_code)))
    suffix = batch["id"].removeprefix("batch_")
    statements: list[Statement] = []
    end = dict(batch)
    for name, lines, field in (("output", output, "output_file_id"), ("error", errors, "error_file_id")):
        if not lines:
            continue
        content = (b"\n".join(lines) + b"\n").decode()
        file_id = f"file-{name}-{suffix}"
        insert = ("INSERT INTO files (id, key_id, created, filename, purpose, bytes, content)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING")
        statements.append((insert, (file_id, key_id, now, f"batch_{suffix}_{name}.jsonl", "batch_output",
                            len(content.encode()), content)))
        end[field] = file_id
    end["request_counts"] = {"total": len(rows), "completed": completed, "failed": failed}
    end[f"{terminal}_at"] = now
    end["status"] = terminal
    statements.append(("UPDATE batches SET status = ?, data = ?, lease_until = 0 WHERE id = ? AND status = ?",
                       (terminal, _dumps(end), batch["id"], status)))
    statements.append(("DELETE FROM batch_lines WHERE batch_id = ?", (batch["id"],)))
    await store.transaction(statements)

