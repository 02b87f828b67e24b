"""The server key that seals reasoning for clients (``encrypted_content``), loaded at first use.

``[responses] reasoning_key`` when set (what replicas sharing clients must all hold); else the
secret in ``reasoning_key_file``, created at the first request that needs it: written to a
temporary file, synced, then hard-linked into place, so two workers starting together agree on
one secret and a crash (``kill -9``) never leaves a half-written one. A directory that cannot
be written to (a read-only image) gives a random secret for this process, with a warning: sealed
reasoning then does not outlive it. Only requests that seal or open reasoning read it, so a
proxy that never sees one creates no file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path

from aiohttp import web

from ..config import ResponsesConfig
from ..errors import ProxyError
from ..translate.openai.sealed import derive_key

__all__ = ["REASONING_KEY", "ReasoningKey"]

log = logging.getLogger("proxy")


class ReasoningKey:
    """The sealing key, derived once from the configured, stored or generated secret."""

    def __init__(self, config: ResponsesConfig) -> None:
        self._config = config
        self._key: bytes | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> bytes:
        if self._key is None:
            async with self._lock:
                if self._key is None:
                    self._key = derive_key(await asyncio.to_thread(self._secret))
        return self._key

    def _secret(self) -> bytes:
        if self._config.reasoning_key:
            return self._config.reasoning_key.encode()
        if not self._config.reasoning_key_file:
            return secrets.token_bytes(32)
        path = Path(self._config.reasoning_key_file)
        try:
            return _read(path)
        except FileNotFoundError:
            pass
        try:
            _create(path, secrets.token_hex(32))
        except OSError as exc:
            log.warning("cannot create %s (%s): sealed reasoning uses a key of this process only; "
                        "set [responses] reasoning_key", path, exc.strerror)
            return secrets.token_bytes(32)
        log.info("created the reasoning key file %s", path)
        return _read(path)


def _read(path: Path) -> bytes:
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ProxyError("The proxy's reasoning key file holds no valid key ([responses] reasoning_key_file).")
    return secret.encode()


def _create(path: Path, secret: str) -> None:
    """Put ``secret`` at ``path`` unless another process got there first (its secret wins)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the link itself survives a crash
    finally:
        os.close(directory)


REASONING_KEY = web.AppKey("reasoning_key", ReasoningKey)
