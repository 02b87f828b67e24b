"""Writing a streamed answer to a client that may stop reading: ``[server] write_timeout``.

aiohttp waits as long as it takes for a client to take the data of a stream (``drain``), so a
client with a tiny receive buffer that never reads holds its handler, its request to Ollama and
its admission slot for as long as it stays connected: four of them locked every other client
out. ``WriteGuard`` gives each write the bound nginx's ``send_timeout`` gives it (the longest
one write may wait for the client, not the whole response): past it the handler's task is
cancelled, ``ClientStalled`` raised in its place, and the caller aborts the connection, which
closes the upstream request and gives the slot back as the handler unwinds. Whole answers
above 64 KiB (an embeddings list, a long completion) get the same bound through ``send_whole``
(their slot is already back; the connection and the answer's memory are what they hold).

Like ``upstream.IdleTimer`` it costs no timer per write: a write only notes when it began, and
one timer per ``write_timeout`` period checks that note.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..upstream.waits import WaitWatch

__all__ = ["WHOLE_BODY_GUARDED_ABOVE", "ClientStalled", "WriteGuard", "abort", "send_whole"]

# A whole answer larger than the transport's write buffer (aiohttp's high-water mark, 64 KiB)
# can wait for the client; a smaller one is handed to the kernel at once and never does.
WHOLE_BODY_GUARDED_ABOVE = 64 * 1024


class ClientStalled(Exception):
    """A write waited ``write_timeout`` seconds for the client to take data."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"the client took no data for {timeout:g} s (server.write_timeout)")
        self.timeout = timeout


class WriteGuard(WaitWatch):
    """Bounds every write to one streamed response by ``timeout`` seconds; a ``with`` block."""

    def __init__(self, response: web.StreamResponse, timeout: float) -> None:
        super().__init__(timeout)
        self.response = response
        self.timeout = timeout

    async def write(self, data: bytes) -> None:
        self._begin()
        try:
            await self.response.write(data)
        except asyncio.CancelledError:
            self._cancelled()
            raise
        finally:
            self._end()

    async def write_eof(self, data: bytes = b"") -> None:
        self._begin()
        try:
            await self.response.write_eof(data)
        except asyncio.CancelledError:
            self._cancelled()
            raise
        finally:
            self._end()

    def _expired(self) -> Exception:
        return ClientStalled(self.timeout)


async def send_whole(request: web.Request, response: web.Response, timeout: float) -> bool:
    """Send a large whole answer under ``write_timeout`` too (nginx bounds every response's
    writes, not only streams'); False when the client stalled and its connection was dropped."""
    await response.prepare(request)
    with WriteGuard(response, timeout) as out:
        try:
            await out.write_eof()
        except ClientStalled:
            abort(request)
            return False
    return True


def abort(request: web.Request) -> None:
    """Drop the connection at once, unsent data and all (nothing more can reach the client)."""
    request.protocol.force_close()
    if request.transport is not None:
        request.transport.abort()
