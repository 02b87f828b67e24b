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
from typing import Any

import aiohttp
import orjson
from yarl import URL

from ..config import UpstreamConfig
from ..errors import (
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    ProxyError,
    RateLimited,
    UpstreamBusy,
    UpstreamError,
    UpstreamFault,
    UpstreamMalformed,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from .waits import WaitWatch

__all__ = ["Call", "Deadline", "IdleTimer", "OllamaClient", "error_from_status"]

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


_URL_CACHE = 64  # bounded all the same: a caller could pass paths that vary


class OllamaClient:
    """Talks to one Ollama server; owns its connection pool for the app's lifetime."""

    def __init__(self, config: UpstreamConfig, trace_configs: list[aiohttp.TraceConfig] | None = None) -> None:
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        timeouts = config.timeouts
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=config.max_connections, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect),
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            read_bufsize=2**16,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
            # One session serves every client: a cookie Ollama (or what fronts it) sets must not
            # ride along on other clients' requests, and there is no jar to search per request.
            cookie_jar=aiohttp.DummyCookieJar(),
            trace_configs=trace_configs,  # [tracing]: a CLIENT span and traceparent per call
        )
        self._urls: dict[str, URL] = {}  # the proxy's own paths (a handful), parsed once each

    async def close(self) -> None:
        await self.session.close()

    async def _head(self, method: str, path: str, data: bytes | None, headers: dict[str, str] | None,
                    deadline: Deadline, auto_decompress: bool = True, encoded: bool = False,
                    ) -> aiohttp.ClientResponse:
        """Send a request and wait for the response head, within ``deadline``.

        ``encoded``: ``path`` (with its query) is already in canonical, escaped form and is used
        as it is; otherwise yarl would decode and normalise it (``%2e%2e`` → ``..`` → gone).
        """
        url = URL(self.base_url + path, encoded=True) if encoded else self._url(path)
        try:
            return await self.session.request(method, url, data=data, headers=headers,
                                              auto_decompress=auto_decompress)
        except asyncio.CancelledError:
            if deadline.expired():
                raise UpstreamTimeout(f"Ollama did not answer within {deadline.delay:g} s.") from None
            raise
        except TimeoutError:  # aiohttp's own: the connect time-out (timeouts.connect)
            raise UpstreamTimeout("Could not connect to Ollama in time.") from None
        except aiohttp.ServerDisconnectedError:
            # Connected and sent; Ollama closed the connection without an answer (a non-streamed
            # answer comes whole at the end, so this is a generation cut off midway).
            log.debug("ollama closed the connection before answering")
            raise UpstreamError("Ollama closed the connection before the answer was complete.") from None
        except aiohttp.ClientConnectionError as exc:
            # Debug only: the caller logs the failure once, with the request id.
            log.debug("ollama unreachable: %s", exc)
            raise UpstreamUnavailable("Could not connect to Ollama.") from None
        except aiohttp.ClientError as exc:
            log.debug("ollama request failed: %s", exc)
            raise UpstreamError("The request to Ollama failed.") from None

    def _url(self, path: str) -> URL:
        """The URL of one of the proxy's own paths (``/api/chat``, …), parsed by yarl once."""
        url = self._urls.get(path)
        if url is None:
            url = URL(self.base_url + path)
            if len(self._urls) < _URL_CACHE:
                self._urls[path] = url
        return url

    def send(self, method: str, path: str, *, data: bytes | None = None, headers: dict[str, str] | None = None,
             first_byte: float | None = None, auto_decompress: bool = True, encoded: bool = False) -> Call:
        """``async with``: Ollama's response, whatever its status, its body not yet read.
        ``encoded``: ``path`` is canonical and escaped already, sent exactly as it is."""
        timeout = first_byte if first_byte is not None else self.config.timeouts.first_byte
        return Call(self, method, path, data, headers, timeout, auto_decompress, check=False, encoded=encoded)

    def open(self, method: str, path: str, body: dict[str, Any] | None = None,
             *, first_byte: float | None = None) -> Call:
        """``async with``: Ollama's response with status 200 to ``body`` sent as JSON; others raise."""
        data, headers = _encode(body)
        timeout = first_byte if first_byte is not None else self.config.timeouts.first_byte
        model = body.get("model") if body is not None else None
        return Call(self, method, path, data, headers, timeout, True, check=True, model=model)

    async def request_json(self, method: str, path: str, body: dict[str, Any] | None = None,
                           *, first_byte: float | None = None) -> Any:
        """A whole JSON answer (non-streaming calls).

        One deadline, ``first_byte``, covers the head and the body: Ollama sends a non-streamed
        answer all at once when it has finished, so there is no gap in between to bound.
        """
        data, headers = _encode(body)
        deadline = Deadline(first_byte if first_byte is not None else self.config.timeouts.first_byte)
        try:
            response = await self._head(method, path, data, headers, deadline)
            try:
                await self._raise_for_status(response, (body or {}).get("model"))
                raw = await self._read_whole(response)
            finally:
                _done_with(response)
        except asyncio.CancelledError:
            if deadline.expired():
                raise UpstreamTimeout(f"Ollama did not answer within {deadline.delay:g} s.") from None
            raise
        except aiohttp.ClientError:
            raise UpstreamError("The connection to Ollama broke during the answer.") from None
        finally:
            deadline.cancel()
        return decode_json(raw)

    async def _read_whole(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, refused (502) as soon as it is known to exceed ``max_answer_bytes``:
        an announced length is checked first, and nothing is buffered beyond the limit."""
        limit = self.config.max_answer_bytes
        if response.content_length is not None and response.content_length > limit:
            raise _too_big(limit)
        parts: list[bytes] = []
        size = 0
        while chunk := await response.content.readany():
            size += len(chunk)
            if size > limit:
                raise _too_big(limit)
            parts.append(chunk)
        return b"".join(parts)

    async def _raise_for_status(self, response: aiohttp.ClientResponse, model: Any) -> None:
        if response.status != 200:
            raise error_from_status(response.status, await self.error_text(response),
                                    model=model if isinstance(model, str) else None)

    async def error_text(self, response: aiohttp.ClientResponse) -> str:
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

    def idle_timer(self) -> IdleTimer:
        """A bound, ``timeouts.idle``, on each wait for more of a streamed body."""
        return IdleTimer(self.config.timeouts.idle)


class Deadline:
    """Cancels the current task after ``delay`` seconds unless cancelled first.

    What ``asyncio.timeout`` does, for one await on every request, without its context-manager
    machinery: the handler that catches the ``CancelledError`` asks ``expired()`` whether the
    cancellation was this deadline's (and then absorbs it) or someone else's (the client left).
    """

    __slots__ = ("_handle", "_task", "delay", "fired")

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.fired = False
        self._task = asyncio.current_task()
        self._handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self.fired = True
        if self._task is not None:
            self._task.cancel()

    def expired(self) -> bool:
        """Whether the cancellation being handled is this deadline's own (then absorbed)."""
        self._handle.cancel()
        return self.fired and self._task is not None and self._task.uncancel() == 0

    def cancel(self) -> None:
        self._handle.cancel()


class Call:
    """One request to Ollama as ``async with``: the response on entry; on exit the connection
    goes back to the pool, or is closed when the body was not read to the end (so Ollama sees
    the request end and stops generating), including when the handler is cancelled because
    its client went away. With ``check``, only a 200 is an answer (others raise). The request
    body is held as bytes only until it is sent."""

    __slots__ = ("_auto_decompress", "_check", "_client", "_data", "_encoded", "_headers", "_method",
                 "_model", "_path", "_response", "_timeout")

    def __init__(self, client: OllamaClient, method: str, path: str, data: bytes | None,
                 headers: dict[str, str] | None, timeout: float, auto_decompress: bool,
                 *, check: bool, model: Any = None, encoded: bool = False) -> None:
        self._client, self._method, self._path = client, method, path
        self._data, self._headers, self._timeout = data, headers, timeout
        self._auto_decompress, self._check, self._model = auto_decompress, check, model
        self._encoded = encoded
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        deadline = Deadline(self._timeout)
        data, self._data = self._data, None  # sent once; not kept for the life of a stream
        try:
            response = await self._client._head(self._method, self._path, data, self._headers,
                                                deadline, self._auto_decompress, self._encoded)
        finally:
            deadline.cancel()
        if self._check:
            try:
                await self._client._raise_for_status(response, self._model)
            except BaseException:
                _done_with(response)
                raise
        self._response = response
        return response

    async def __aexit__(self, *exc_info: object) -> None:
        if self._response is not None:
            _done_with(self._response)


class IdleTimer(WaitWatch):
    """Bounds every wait for more of a streamed body by ``idle`` seconds.

    ``read`` is the streaming hot path, called once per socket read. Re-arming a timer per read
    (as ``asyncio.timeout`` would) costs a timer handle each time; here a read only notes when
    its wait began, and one timer per idle period checks that note: it fires when a wait has
    lasted ``idle``, and otherwise moves itself to when the current wait would. Time spent
    writing to a slow client is no wait on Ollama, so it is not counted. Use it as a ``with``
    block so no timer outlives the stream.
    """

    def __init__(self, idle: float) -> None:
        super().__init__(idle)
        self.idle = idle

    async def read(self, content: aiohttp.StreamReader) -> bytes:
        """Whatever the next socket read brings (``b""`` at the end of the body)."""
        # ``_begin()`` and ``_end()`` written out: this runs once per socket read of a stream.
        now = self._loop.time()
        self._since = now
        if self._handle is None:
            self._handle = self._loop.call_at(now + self.limit, self._check)
        try:
            return await content.readany()
        except asyncio.CancelledError:
            self._cancelled()
            raise
        except aiohttp.ClientError:
            raise UpstreamError("The connection to Ollama broke during the stream.") from None
        finally:
            self._since = None

    def _expired(self) -> Exception:
        return UpstreamTimeout(f"Ollama sent nothing for {self.idle:g} s.")


def _too_big(limit: int) -> UpstreamError:
    return UpstreamError(f"Ollama's answer is larger than {limit} bytes (upstream.max_answer_bytes).",
                         code="upstream_answer_too_large")


def _encode(body: dict[str, Any] | None) -> tuple[bytes | None, dict[str, str] | None]:
    """``body`` as the JSON bytes and headers of a request to Ollama."""
    if body is None:
        return None, None
    try:
        return orjson.dumps(body), {"Content-Type": "application/json"}
    except orjson.JSONEncodeError as exc:
        # orjson parses integers beyond 64 bits from a client but will not write them back.
        raise InvalidRequest(f"The request holds a value Ollama cannot take: {exc}.", code="invalid_value") from None


def _done_with(response: aiohttp.ClientResponse) -> None:
    """Give the connection back to the pool, or close it when the body was not read to the end
    (so Ollama sees the request end and stops generating)."""
    if response.content.is_eof():
        response.release()
    else:
        response.close()


def decode_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamMalformed("Ollama sent an answer that is not JSON.") from None


def error_from_status(status: int, message: str, *, model: str | None = None) -> ProxyError:
    """Ollama's HTTP error → our error family.

    Only what is the client's doing stays a 4xx: a bad request (400/413/422, Ollama's message
    kept and ``param`` guessed from it), a refusal (403), Ollama's own rate limit (429). A 401
    means the proxy's access to Ollama is wrong, which no client can fix: a 502 like other
    upstream failures. A 5xx is Ollama's own failure, whose text (paths, GPU errors) stays in
    the log: ``UpstreamFault`` carries it as ``detail`` and shows the client OpenAI's generic text.
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
    if status >= 500:
        return UpstreamFault(f"HTTP {status}{detail}")
    return UpstreamError(f"Ollama answered HTTP {status}{detail}")
