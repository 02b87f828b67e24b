"""Which backend a store URL names, chosen here at the call site rather than by ``base.py``:
the interface knows none of its implementations, and asyncpg is imported only when used."""

from __future__ import annotations

from .base import Store, StoreError

__all__ = ["open_store"]


async def open_store(url: str, *, pool_size: int = 4, busy_timeout: float = 5.0) -> Store:
    """The store ``url`` names, migrated to the current schema."""
    if url.startswith("sqlite://"):
        from .sqlite import SQLiteStore

        return await SQLiteStore.open(url, busy_timeout=busy_timeout)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from .postgres import PostgresStore  # asyncpg is imported only when it is used
        except ImportError:
            raise StoreError("a postgresql:// store needs asyncpg: pip install 'ollama-openai-proxy[postgres]'") from None

        return await PostgresStore.open(url, pool_size=pool_size)
    raise ValueError(f"unsupported store URL scheme: {url.split(':', 1)[0]!r}")
