"""The store: usage accounting and stored chat completions / responses, SQLite or PostgreSQL.

``open_store(url)`` (``backends.py``) gives a ``Store`` (``base.py``); ``StoreService`` (``service.py``) keeps
the in-memory usage aggregates and history queue and writes them in the background, so nothing
on a request's path waits for the database.
"""

from .backends import open_store
from .base import ChatRecord, Store, StoreError, UsageRow

__all__ = ["ChatRecord", "Store", "StoreError", "UsageRow", "open_store"]
