"""The store as the Responses API's records: its database, with the ``[store] responses`` policy."""

from __future__ import annotations

from typing import Any

from .base import Store
from .records import StoreMode

__all__ = ["StoredResponses"]


class StoredResponses:
    """``ResponseRecords`` on the store's database: written at once, so the next request can
    chain on a response (``previous_response_id``) without waiting for a background flush."""

    def __init__(self, store: Store, mode: StoreMode) -> None:
        self.mode: StoreMode = mode
        self._store = store

    async def put_response(self, response_id: str, key_id: str, created_at: int, data: dict[str, Any]) -> None:
        await self._store.put_response(response_id, key_id, created_at, data)

    async def get_response(self, response_id: str, key_id: str) -> dict[str, Any] | None:
        return await self._store.get_response(response_id, key_id)

    async def delete_response(self, response_id: str, key_id: str) -> bool:
        return await self._store.delete_response(response_id, key_id)
