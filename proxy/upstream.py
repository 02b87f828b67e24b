"""The Ollama client: one shared ``ClientSession``, time-outs, and Ollama's errors as ours.

Every upstream failure leaves this module as a ``ProxyError``: a refused connection is
``UpstreamUnavailable``, a time-out ``UpstreamTimeout``, Ollama's 404 ``ModelNotFound``, its 400s
``InvalidRequest`` (the client's fault, Ollama's message kept), its 503 ``UpstreamBusy`` and any
other failure ``UpstreamError``. Callers never see aiohttp exceptions.

Time-outs (``config.Timeouts``): ``connect`` for the TCP connection, ``first_byte`` until the
response headers (Ollama sends them with its first token, after loading the model), and ``idle``
for each read of the body, applied by the caller through ``read_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from .config import UpstreamConfig
from .errors import (
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    ProxyError,
    RateLimited,
    UpstreamBusy,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = ["OllamaClient", "error_from_status"]

log = logging.getLogger("proxy.upstream")

# Ollama's 400s name what the model cannot do; point ``param`` at the field that asked for it.
_PARAM_HINTS = (
    ("does not support tools", "tools"),
    ("does not support thinking", "reasoning_effort"),
    ("does not support insert", "suffix"),
    ("does not support image", "messages"),
    ("does not support embed", "model"),
    ("does not support generate", "model"),
    ("does not support chat", "model"),
    ("top_logprobs", "top_logprobs"),
    ("invalid format", "response_format"),
    ("input length exceeds the context length", "input"),
)


class OllamaClient:
    """Talks to one Ollama server; owns its connection pool for the app's lifetime."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        timeouts = config.timeouts
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=config.max_connections, limit_per_host=0,
                                           enable_cleanup_closed=True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect),
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            read_bufsize=2**16,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        await self.session.close()

    @asynccontextmanager
    async def send(self, method: str, path: str, *, data: bytes | None = None,
                   headers: dict[str, str] | None = None, first_byte: float | None = None,
                   auto_decompress: bool = True) -> AsyncIterator[aiohttp.ClientResponse]:
        """Ollama's response, whatever its status, its body not yet read.

        The connection is released (or closed, when the body was not read to the end) on exit,
        including when the caller is cancelled because its client went away.
        """
        timeout = first_byte if first_byte is not None else self.config.timeouts.first_byte
        try:
            async with asyncio.timeout(timeout):
                response = await self.session.request(method, self.base_url + path, data=data, headers=headers,
                                                      auto_decompress=auto_decompress)
        except TimeoutError:
            raise UpstreamTimeout(f"Ollama did not answer within {timeout:g} s.") from None
        except aiohttp.ClientConnectionError as exc:
            # Debug only: the caller logs the failure once, with the request id.
            log.debug("ollama unreachable: %s", exc)
            raise UpstreamUnavailable("Could not connect to Ollama.") from None
        except aiohttp.ClientError as exc:
            log.debug("ollama request failed: %s", exc)
            raise UpstreamError("The request to Ollama failed.") from None
        try:
            yield response
        finally:
            response.close() if not response.content.is_eof() else response.release()

    @asynccontextmanager
    async def open(self, method: str, path: str, body: dict[str, Any] | None = None,
                   *, first_byte: float | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """A response from Ollama with status 200 to ``body`` sent as JSON; others raise."""
        try:
            data = orjson.dumps(body) if body is not None else None
        except orjson.JSONEncodeError as exc:
            # orjson parses integers beyond 64 bits from a client but will not write them back.
            raise InvalidRequest(f"The request holds a value Ollama cannot take: {exc}.",
                                 code="invalid_value") from None
        headers = {"Content-Type": "application/json"} if data is not None else None
        async with self.send(method, path, data=data, headers=headers, first_byte=first_byte) as response:
            if response.status != 200:
                raise error_from_status(response.status, await self._error_text(response),
                                        model=(body or {}).get("model"))
            yield response

    async def _error_text(self, response: aiohttp.ClientResponse) -> str:
        """Ollama's ``{"error": ...}`` message, or a short note when the body is not Ollama's."""
        try:
            async with asyncio.timeout(self.config.timeouts.idle):
                raw = await response.content.read(64 * 1024)
        except (TimeoutError, aiohttp.ClientError):
            return ""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return ""
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return str(data["error"])
        return ""

    async def request_json(self, method: str, path: str, body: dict[str, Any] | None = None,
                           *, first_byte: float | None = None) -> Any:
        """A whole JSON answer (non-streaming calls)."""
        async with self.open(method, path, body, first_byte=first_byte) as response:
            raw = await self.read_body(response)
        return decode_json(raw)

    async def read_body(self, response: aiohttp.ClientResponse) -> bytes:
        """The rest of the body, each read bounded by the idle time-out."""
        try:
            async with asyncio.timeout(self.config.timeouts.idle):
                return await response.read()
        except TimeoutError:
            raise UpstreamTimeout("Ollama stopped sending its answer.") from None
        except aiohttp.ClientError:
            raise UpstreamError("The connection to Ollama broke during the answer.") from None

    async def iter_reads(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """The body as it arrives, one item per socket read, each bounded by ``idle``.

        One timer is rescheduled per read instead of a new ``wait_for`` each time: this loop is
        the streaming hot path.
        """
        idle = self.config.timeouts.idle
        content = response.content
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(idle) as deadline:
                while True:
                    deadline.reschedule(loop.time() + idle)
                    data = await content.readany()
                    # Unarmed while the caller writes to its client: a slow reader is not
                    # Ollama's stall (and the cancellation would land in the caller's code).
                    deadline.reschedule(None)
                    if not data:
                        return
                    yield data
        except TimeoutError:
            raise UpstreamTimeout(f"Ollama sent nothing for {idle:g} s.") from None
        except aiohttp.ClientError:
            raise UpstreamError("The connection to Ollama broke during the stream.") from None


def decode_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError("Ollama sent an answer that is not JSON.") from None


def error_from_status(status: int, message: str, *, model: str | None = None) -> ProxyError:
    """Ollama's HTTP error → our error family.

    Only what is the client's doing stays a 4xx: a bad request (400/413/422, Ollama's message
    kept and ``param`` guessed from it), a refusal (403), Ollama's own rate limit (429). A 401
    means the proxy's access to Ollama is wrong, which no client can fix: a 502 like other
    upstream failures.
    """
    if status == 404:
        name = f" `{model}`" if model else ""
        return ModelNotFound(message or f"The model{name} does not exist.", param="model")
    if status == 503:
        return UpstreamBusy(message or "Ollama is busy; try again shortly.", retry_after=1)
    if status == 429:
        return RateLimited(message or "Ollama is rate limiting requests.", retry_after=1)
    if status == 403 and message:
        return PermissionDenied(message)
    if status in (400, 413, 422) and message:
        param = next((p for hint, p in _PARAM_HINTS if hint in message), None)
        error = InvalidRequest(message, param=param)
        error.status = status
        return error
    detail = f": {message}" if message else ""
    return UpstreamError(f"Ollama answered HTTP {status}{detail}")
