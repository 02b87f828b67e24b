"""OpenAI's stored chat completions routes (``[store] enabled``): list, retrieve, messages,
update metadata, delete.

Every read and write is scoped to the caller's key: another key's id is a plain 404, so ids
do not leak across keys. Pending history is flushed before a read, so a client reads its own
writes at once. Query parameters are checked like body fields: a bad one is a 400 naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

from aiohttp import web

from ...appkeys import CONFIG, STORE_SERVICE
from ...caller import caller
from ...errors import InvalidRequest, NotFound, StoreUnavailable
from ...store.base import ChatRecord, StoreError
from ...store.service import StoreService
from ...translate.keys import camelize
from ...translate.openai.stored import deleted, list_page, message_objects, retrieved, to_metadata
from ..common import json_response, read_json_object

__all__ = ["delete_stored", "list_messages", "list_stored", "retrieve_stored", "update_stored"]

log = logging.getLogger("proxy.store")

T = TypeVar("T")
MAX_LIMIT = 100  # OpenAI's cap on list pages


async def list_stored(request: web.Request) -> web.Response:
    query = request.query
    limit = _limit(query.get("limit"))
    order = _order(query.get("order"))
    metadata = {k[len("metadata["):-1]: v for k, v in query.items() if k.startswith("metadata[") and k.endswith("]")}
    service = await _flushed(request)
    records = await _guard(service.store.list_chats(
        caller(request).key_id, model=query.get("model"), metadata=metadata, after=query.get("after"),
        limit=limit + 1, order=order))
    return _answer(request, list_page([_object(r) for r in records], limit))


async def retrieve_stored(request: web.Request) -> web.Response:
    return _answer(request, _object(await _record(request)))


async def list_messages(request: web.Request) -> web.Response:
    query = request.query
    limit = _limit(query.get("limit"))
    order = _order(query.get("order"))
    messages = message_objects((record := await _record(request)).id, record.messages)
    if order == "desc":
        messages.reverse()
    after = query.get("after")
    if after is not None:
        ids = [m["id"] for m in messages]
        messages = messages[ids.index(after) + 1:] if after in ids else []
    return _answer(request, list_page(messages[: limit + 1], limit))


async def update_stored(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    unknown = sorted(set(body) - {"metadata"})
    if unknown:
        raise InvalidRequest(f"Unknown parameter: '{unknown[0]}'; only 'metadata' can be updated.", param=unknown[0])
    if "metadata" not in body:
        raise InvalidRequest("'metadata' is required.", param="metadata")
    metadata = to_metadata(body["metadata"]) or {}
    service = await _flushed(request)
    chat_id, key_id = request.match_info["id"], caller(request).key_id
    if not await _guard(service.store.update_chat_metadata(chat_id, key_id, metadata)):
        raise _not_found(chat_id)
    return _answer(request, _object(await _record(request)))


async def delete_stored(request: web.Request) -> web.Response:
    service = await _flushed(request)
    chat_id = request.match_info["id"]
    if not await _guard(service.store.delete_chat(chat_id, caller(request).key_id)):
        raise _not_found(chat_id)
    return _answer(request, deleted(chat_id))


# ---- helpers -------------------------------------------------------------------------------


async def _record(request: web.Request) -> ChatRecord:
    service = await _flushed(request)
    chat_id = request.match_info["id"]
    record = await _guard(service.store.get_chat(chat_id, caller(request).key_id))
    if record is None:
        raise _not_found(chat_id)
    return record


def _object(record: ChatRecord) -> dict[str, Any]:
    return retrieved(record.completion, record.metadata)


def _answer(request: web.Request, payload: dict[str, Any]) -> web.Response:
    if request.app[CONFIG].response.keys != "camel":
        return json_response(payload)
    out = camelize(payload)
    for src, dst in ((payload, out), *zip(payload.get("data") or (), out.get("data") or (), strict=True)):
        if "metadata" in src:
            dst["metadata"] = src["metadata"]  # the client's own keys: never renamed
    return json_response(out)


async def _flushed(request: web.Request) -> StoreService:
    """The store service, after writing what is pending (read-your-writes)."""
    service = request.app[STORE_SERVICE]
    await service.flush()
    return service


async def _guard(call: Awaitable[T]) -> T:
    """A database failure is a 503 in OpenAI's envelope; the details stay in the log."""
    try:
        return await call
    except StoreError as exc:
        log.warning("store: a history query failed: %s: %s", type(exc).__name__, exc)
        raise StoreUnavailable("The proxy's store is unavailable; try again later.") from None


def _not_found(chat_id: str) -> NotFound:
    return NotFound(f"No chat completion found with id '{chat_id[:128]}'.", param="completion_id")


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be an integer between 1 and {MAX_LIMIT}.", param="limit")
    return int(raw)


def _order(raw: str | None) -> Literal["asc", "desc"]:
    if raw is None or raw == "asc":
        return "asc"
    if raw == "desc":
        return "desc"
    raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
