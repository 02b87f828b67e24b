"""OpenAI's Files and Batch APIs (``/v1/files``, ``/v1/batches``), kept in the store and run by
``proxy/jobs/runner.py``. A key sees only its own files and batches (another key's ids answer
404, as if they did not exist); with the store off every route answers 400 saying so."""

from __future__ import annotations

import email.parser
import email.policy
import time
from typing import Any, Literal

import orjson
from aiohttp import web

from ..appkeys import CONFIG, STORE
from ..caller import caller
from ..errors import InvalidRequest, NotFound, StoreUnavailable, UnsupportedMediaType
from ..gates.body import body_of
from ..ids import new_id
from ..jobs import records
from ..jobs.lines import ENDPOINTS, error_line, parse_input
from ..jobs.runner import BATCH_RUNNER
from ..store.base import Store, StoreError
from .common import json_response, read_json_object

__all__ = ["cancel_batch", "create_batch", "create_file", "delete_file", "file_content", "list_batches",
           "list_files", "retrieve_batch", "retrieve_file"]

STORE_OFF = "The Batch API needs the store: turn it on with `[store] enabled = true` in the proxy's config."
_PAGE_MAX = 10_000


def _store(request: web.Request) -> Store:
    store = request.app.get(STORE)
    if store is None or not request.app[CONFIG].batches.enabled:
        raise InvalidRequest(STORE_OFF if store is None else "The Batch API is turned off ([batches] enabled).",
                             code="store_disabled")
    return store


def _page(data: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    shown = data[:limit]
    return {"object": "list", "data": shown, "first_id": shown[0]["id"] if shown else None,
            "last_id": shown[-1]["id"] if shown else None, "has_more": len(data) > limit}


def _limit(request: web.Request, default: int, most: int) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise InvalidRequest(f"'limit' must be an integer between 1 and {most}.", param="limit")
    return int(raw)


async def _guarded(call: Any) -> Any:
    try:
        return await call
    except StoreError as exc:
        raise StoreUnavailable(f"The store could not be reached: {type(exc).__name__}; retry shortly.") from None


# ---- files ------------------------------------------------------------------------------------

async def create_file(request: web.Request) -> web.Response:
    """``POST /v1/files``: a multipart upload with ``purpose`` and ``file`` (JSONL, UTF-8)."""
    store = _store(request)
    content_type = request.headers.get("Content-Type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType("POST /v1/files takes a multipart/form-data body with 'purpose' and 'file'.",
                                   param="Content-Type")
    fields = _multipart(content_type, await body_of(request))
    purpose = fields.get("purpose", (None, b""))[1].decode(errors="replace")
    if purpose != "batch":
        raise InvalidRequest(f"'purpose' must be 'batch' on this proxy (got {purpose[:40]!r}).", param="purpose")
    if "file" not in fields:
        raise InvalidRequest("The upload has no 'file' part.", param="file")
    filename, raw = fields["file"]
    try:
        content = raw.decode()
    except UnicodeDecodeError:
        raise InvalidRequest("The file is not UTF-8 text (a batch file is JSONL).", param="file") from None
    file_id, created = new_id("file-"), int(time.time())
    key_id = caller(request).key_id
    await _guarded(records.put_file(store, file_id, key_id, created, (filename or "upload.jsonl")[:255], purpose,
                                    content))
    return json_response(records.file_object((file_id, created, (filename or "upload.jsonl")[:255], purpose,
                                              len(raw))))


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The form's parts by name: (filename, bytes). The body was read (and bounded by
    ``[limits] max_body_bytes``) by the body guard, so it is parsed from those bytes."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
    if not message.is_multipart():
        raise InvalidRequest("The multipart body could not be read.", code="invalid_body")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


async def list_files(request: web.Request) -> web.Response:
    store = _store(request)
    limit = _limit(request, 10_000, _PAGE_MAX)
    order: Literal["asc", "desc"] = "asc" if request.query.get("order") == "asc" else "desc"
    data = await _guarded(records.list_files(store, caller(request).key_id, purpose=request.query.get("purpose"),
                                             after=request.query.get("after"), limit=limit + 1, order=order))
    return json_response(_page(data, limit))


async def retrieve_file(request: web.Request) -> web.Response:
    store = _store(request)
    file_id = request.match_info["file_id"]
    found = await _guarded(records.get_file(store, file_id, caller(request).key_id))
    if found is None:
        raise _no_file(file_id)
    return json_response(found)


async def file_content(request: web.Request) -> web.Response:
    store = _store(request)
    file_id = request.match_info["file_id"]
    content = await _guarded(records.file_content(store, file_id, caller(request).key_id))
    if content is None:
        raise _no_file(file_id)
    return web.Response(body=content.encode(), content_type="application/octet-stream")


async def delete_file(request: web.Request) -> web.Response:
    store = _store(request)
    file_id = request.match_info["file_id"]
    if not await _guarded(records.delete_file(store, file_id, caller(request).key_id)):
        raise _no_file(file_id)
    return json_response({"id": file_id, "object": "file", "deleted": True})


def _no_file(file_id: str) -> NotFound:
    return NotFound(f"No such File object: {file_id[:128]}", param="id", code="file_not_found")


# ---- batches ----------------------------------------------------------------------------------

async def create_batch(request: web.Request) -> web.Response:
    """``POST /v1/batches``: validate the input file now; its lines run in the background."""
    store = _store(request)
    config = request.app[CONFIG].batches
    body = await read_json_object(request)
    key_id = caller(request).key_id
    endpoint = body.get("endpoint")
    if endpoint not in ENDPOINTS:
        raise InvalidRequest(f"'endpoint' must be one of {', '.join(ENDPOINTS)}.", param="endpoint")
    if body.get("completion_window") != "24h":
        raise InvalidRequest("'completion_window' must be '24h'.", param="completion_window")
    metadata = body.get("metadata")
    if metadata is not None and not _metadata_ok(metadata):
        raise InvalidRequest("'metadata' holds at most 16 pairs of strings (keys ≤ 64, values ≤ 512 characters).",
                             param="metadata")
    file_id = body.get("input_file_id")
    if not isinstance(file_id, str):
        raise InvalidRequest("'input_file_id' is required.", param="input_file_id")
    content = await _guarded(records.file_content(store, file_id, key_id))
    if content is None:
        raise _no_file(file_id)
    now = int(time.time())
    lines, errors = parse_input(content, endpoint, config.max_lines)
    batch = new_batch(new_id("batch_"), endpoint, file_id, now, now + int(config.window), metadata)
    rows: list[tuple[int, str, str, int, str | None]] = []
    if errors:
        batch |= {"status": "failed", "failed_at": now, "errors": {"object": "list", "data": errors}}
    else:
        for line in lines:
            if line.body is None:
                rows.append((line.number, line.custom_id, "", 1, _line_json(error_line(new_id("batch_req_"), line))))
            else:
                rows.append((line.number, line.custom_id, _line_json(line.body), 0, None))
        batch["request_counts"] = {"total": len(rows), "completed": 0, "failed": 0}
    await _guarded(records.create_batch(store, batch, key_id, rows))
    runner = request.app.get(BATCH_RUNNER)
    if runner is not None:
        runner.wake()
    return json_response(batch)


def _line_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def new_batch(batch_id: str, endpoint: str, file_id: str, created: int, expires: int,
              metadata: dict[str, str] | None) -> dict[str, Any]:
    """A batch object as OpenAI's, every field present."""
    return {"id": batch_id, "object": "batch", "endpoint": endpoint, "errors": None, "input_file_id": file_id,
            "completion_window": "24h", "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": created, "in_progress_at": None, "expires_at": expires, "finalizing_at": None,
            "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
            "cancelled_at": None, "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": metadata}


def _metadata_ok(value: Any) -> bool:
    return (isinstance(value, dict) and len(value) <= 16
            and all(isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                    for k, v in value.items()))


async def retrieve_batch(request: web.Request) -> web.Response:
    store = _store(request)
    batch_id = request.match_info["batch_id"]
    found = await _guarded(records.get_batch(store, batch_id, caller(request).key_id))
    if found is None:
        raise _no_batch(batch_id)
    return json_response(found)


async def list_batches(request: web.Request) -> web.Response:
    store = _store(request)
    limit = _limit(request, 20, 100)
    data = await _guarded(records.list_batches(store, caller(request).key_id, after=request.query.get("after"),
                                               limit=limit + 1))
    return json_response(_page(data, limit))


async def cancel_batch(request: web.Request) -> web.Response:
    """``POST /v1/batches/{id}/cancel``: ``cancelling`` now; the runner stops its lines, writes
    what finished to the output file and the rest (``batch_cancelled``) to the error file."""
    store = _store(request)
    batch_id = request.match_info["batch_id"]
    key_id = caller(request).key_id
    found = await _guarded(records.get_batch(store, batch_id, key_id))
    if found is None:
        raise _no_batch(batch_id)
    if found["status"] in ("validating", "in_progress"):
        found["cancelling_at"] = int(time.time())
        if await _guarded(records.set_status(store, batch_id, key_id, ("validating", "in_progress"), "cancelling",
                                             found)):
            found["status"] = "cancelling"
            runner = request.app.get(BATCH_RUNNER)
            if runner is not None:
                runner.wake()
        else:
            found = await _guarded(records.get_batch(store, batch_id, key_id)) or found
    elif found["status"] not in ("cancelling", "cancelled"):
        raise InvalidRequest(f"Cannot cancel a batch with status '{found['status']}'.", code="batch_not_cancellable")
    return json_response(found)


def _no_batch(batch_id: str) -> NotFound:
    return NotFound(f"No batch found with id '{batch_id[:128]}'.", param="batch_id", code="batch_not_found")
