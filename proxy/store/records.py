"""Where stored Responses live: the small interface the Responses handler needs of a store.

``POST /v1/responses`` keeps a response (with its input and the conversation so far) so that a
later request can continue from it (``previous_response_id``) and ``GET``/``DELETE
/v1/responses/{id}`` can find it. The handler only knows ``ResponseRecords``: the store
(``[store]``) implements it on its database; ``MemoryResponseRecords`` is a bounded in-process
one (tests, and a single process that needs no persistence). With no records on the app the
store is off: nothing is kept and ``previous_response_id`` is refused.

Every record belongs to the key that made it: a lookup with another key's id finds nothing,
exactly as for an id that never existed (no one learns that another key's response exists).
"""

from __future__ import annotations

import collections
from typing import Any, Literal, Protocol

import orjson
from aiohttp import web

__all__ = ["RESPONSE_RECORDS", "MemoryResponseRecords", "ResponseRecords", "StoreMode"]

StoreMode = Literal["on_request", "always", "never"]


class ResponseRecords(Protocol):
    """Stored responses by id, each visible only to the key that made it."""

    mode: StoreMode  # [store] responses: honour the request's `store`, keep all, keep none

    async def put_response(self, response_id: str, key_id: str, created_at: int, data: dict[str, Any]) -> None:
        """Keep ``data`` (opaque JSON) under ``response_id``; readable as soon as this returns."""
        ...

    async def get_response(self, response_id: str, key_id: str) -> dict[str, Any] | None:
        """The data kept for ``response_id`` by ``key_id``, or None."""
        ...

    async def delete_response(self, response_id: str, key_id: str) -> bool:
        """Forget ``response_id`` if ``key_id`` made it; whether there was one."""
        ...


RESPONSE_RECORDS = web.AppKey("response_records", ResponseRecords)


class MemoryResponseRecords:
    """Responses in process memory, the oldest forgotten beyond ``max_entries``.

    Kept as JSON bytes, as a database would keep them: what is read back is a fresh copy that
    no later change to the answer can reach, and data that is not JSON fails on writing here
    as it would there. Nothing survives a restart and workers do not share it; the store's
    database does both.
    """

    def __init__(self, mode: StoreMode = "on_request", max_entries: int = 1000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.mode: StoreMode = mode
        self.max_entries = max_entries
        self._records: collections.OrderedDict[str, tuple[str, int, bytes]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    async def put_response(self, response_id: str, key_id: str, created_at: int, data: dict[str, Any]) -> None:
        self._records[response_id] = (key_id, created_at, orjson.dumps(data))
        self._records.move_to_end(response_id)
        while len(self._records) > self.max_entries:
            self._records.popitem(last=False)

    async def get_response(self, response_id: str, key_id: str) -> dict[str, Any] | None:
        found = self._records.get(response_id)
        if found is None or found[0] != key_id:
            return None
        data: dict[str, Any] = orjson.loads(found[2])
        return data

    async def delete_response(self, response_id: str, key_id: str) -> bool:
        found = self._records.get(response_id)
        if found is None or found[0] != key_id:
            return False
        del self._records[response_id]
        return True
