"""The proxy's defences as an HTTP server: slow, oversized or malformed requests.

aiohttp enforces part of it, with the settings ``server_settings`` derives from ``[server]``.
``create_app`` passes them as the application's ``handler_args``, so every runner gets them
(``web.run_app`` in ``__main__`` as well as the tests' ``TestServer``):

* ``max_line_size``, ``max_field_size``, ``max_headers``: a longer request line or header, or
  more headers, is answered 400 by aiohttp's parser and the connection closed.
* ``keepalive_timeout``: aiohttp arms one timer when a connection opens and again after each
  response, and closes the connection if no complete request head has arrived when it fires.
  Dribbling header bytes does not re-arm it, so it is both the keep-alive idle time-out and the
  deadline for the request line and headers (slowloris).

``body_guard`` adds what aiohttp lacks, before any handler sees the body:

* an announced ``Content-Length`` above ``limits.max_body_bytes`` is refused with 413 at once,
  nothing read (aiohttp would buffer up to the limit first); a chunked body is cut off by
  aiohttp's ``client_max_size`` as it arrives (413 too);
* the whole body must arrive within ``server.body_timeout`` seconds (408, connection closed);
* malformed chunked framing is a 400;
* a compressed body (``Content-Encoding`` zstd, gzip or deflate) is decoded here as it arrives,
  never by aiohttp's parser, bounded by ``limits.max_body_bytes`` and
  ``server.max_compression_ratio`` (413; ``proxy/gates/decompress.py``); a corrupt stream is 400, any
  other coding 415, and every compressed body 415 with ``server.accept_compressed_requests = false``;
* on every route but a pass-through blob upload, the JSON shape check
  (``Validator.check_raw``: depth, objects and arrays) runs on the bytes before any parser does.

The body is read once, here; handlers get it from ``body_of(request)`` (aiohttp's cached bytes,
or the inflated body when it came compressed).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp.typedefs import Handler

from ..appkeys import CONFIG, VALIDATOR
from ..config import ServerConfig
from ..errors import (
    ExpectationFailed,
    InvalidRequest,
    PayloadTooLarge,
    ProxyError,
    RequestTimeout,
    UnsupportedMediaType,
)
from ..logs import ProtocolLog
from .decompress import DECODABLE, PIECE, BodyDecoder
from .errors import api_family, error_response, request_id

__all__ = ["BODY", "body_guard", "body_of", "expect_guard", "hand_over", "handed_over", "server_settings"]

# The request body after decoding it, when it came compressed (``body_of`` reads it).
BODY = web.RequestKey("body", bytes)
# The body as a JSON object, when a gate (the meter) parsed it already: the handler takes it.
_PARSED = web.RequestKey("parsed_body", dict)


def hand_over(request: web.Request, body: dict[str, Any]) -> None:
    """Leave the JSON object a gate parsed for the handler, which takes it (``handed_over``)
    instead of parsing the bytes again: an agent's body can be hundreds of kilobytes."""
    request[_PARSED] = body


def handed_over(request: web.Request) -> dict[str, Any] | None:
    """The object a gate parsed, once: taken off the request, so a stream does not hold it."""
    body = request.get(_PARSED)
    if body is not None:
        del request[_PARSED]
    return body


async def body_of(request: web.Request) -> bytes:
    """The request body as the handlers see it: inflated if it came compressed."""
    inflated = request.get(BODY)
    return inflated if inflated is not None else await request.read()


def _content_encoding(request: web.Request, accept: bool) -> str | None:
    """The body's one content coding, or None; 415 for any the proxy does not take.

    nginx relays request bodies as they are and Envoy decodes them only with its opt-in
    decompressor filter; Codex sends zstd in some set-ups, so the proxy decodes by default.
    """
    if "Content-Encoding" not in request.headers:
        return None  # the usual request: nothing to look at
    header = ",".join(request.headers.getall("Content-Encoding"))
    codings = [c.strip().lower() for c in header.split(",") if c.strip().lower() not in ("", "identity")]
    if not codings:
        return None
    shown = header.strip()[:40]
    if not accept:
        raise UnsupportedMediaType(f"Compressed request bodies are not accepted (Content-Encoding: {shown}); "
                                   "send the body uncompressed (server.accept_compressed_requests).",
                                   param="Content-Encoding", code="unsupported_content_encoding")
    if len(codings) != 1 or codings[0] not in DECODABLE:
        raise UnsupportedMediaType(f"Content-Encoding {shown!r} is not supported; use zstd, gzip or deflate.",
                                   param="Content-Encoding", code="unsupported_content_encoding")
    return codings[0]


log = logging.getLogger("proxy")


def server_settings(server: ServerConfig) -> dict[str, Any]:
    """aiohttp ``RequestHandler`` keyword arguments for ``[server]`` (``handler_args``)."""
    return {
        "keepalive_timeout": server.keepalive_timeout,
        "max_line_size": server.max_line_size,
        "max_field_size": server.max_field_size,
        "max_headers": server.max_headers,
        # Request bodies are never inflated by aiohttp's parser: body_guard refuses or inflates
        # them itself, bounded (and an encoding aiohttp cannot decode is a 415, not its 400).
        "auto_decompress": False,
        # A request aiohttp cannot parse is logged as one line at info, not an ERROR traceback.
        "logger": ProtocolLog(logging.getLogger("aiohttp.server")),
    }


async def expect_guard(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue``: refuse before inviting the body, not after it was sent.

    aiohttp's default handler answers ``100 Continue`` to any request, so a client announcing
    a body over ``limits.max_body_bytes`` was told to send it and then got 413. Like nginx, this
    answers 413 (or the 415 of a refused encoding) at once instead; any other ``Expect`` is 417
    (RFC 9110 10.1.1). It runs before the middlewares, so it renders its own envelope.
    """
    if request.version != HttpVersion11:
        return None  # HTTP/1.0 has no 100 Continue (RFC 9110 10.1.1); the body comes anyway
    config = request.app[CONFIG]
    error: ProxyError | None = None
    if request.headers.get("Expect", "").lower() != "100-continue":
        error = ExpectationFailed("Only 'Expect: 100-continue' is supported.", param="Expect")
    elif request.content_length is not None and request.content_length > config.limits.max_body_bytes:
        error = _too_large(config.limits.max_body_bytes, request.content_length)
    else:
        try:
            _content_encoding(request, config.server.accept_compressed_requests)
        except UnsupportedMediaType as exc:
            error = exc
    if error is not None:
        response = error_response(error, request_id(request), api_family(request))
        response.force_close()  # the client holds its body back: nothing to read before closing
        return response
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # as aiohttp's own handler: the response proper has not started
    return None


@web.middleware
async def body_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.body_exists or request.match_info.http_exception is not None:
        return await handler(request)  # no body, or an unknown route: its 404/405 comes first
    config = request.app[CONFIG]
    max_bytes = config.limits.max_body_bytes
    announced = request.content_length
    if announced is not None and announced > max_bytes:
        raise _too_large(max_bytes, announced)
    encoding = _content_encoding(request, config.server.accept_compressed_requests)
    timeout = config.server.body_timeout
    try:
        if encoding is not None:
            async with asyncio.timeout(timeout):
                raw = request[BODY] = await _decoded(request, encoding, max_bytes, config.server.max_compression_ratio)
        elif request.content.is_eof():  # the usual case: the body came with the headers
            raw = await request.read()
        else:
            async with asyncio.timeout(timeout):
                raw = await request.read()
    except TimeoutError:
        return await _body_timed_out(request, timeout)
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(max_bytes) from None
    except web.RequestPayloadError:
        raise InvalidRequest("The request body is malformed (bad chunked or compressed framing).",
                             code="invalid_body") from None
    if not request.path.startswith(("/api/blobs/", "/v1/files")):
        # Every JSON body (the /v1 routes and the /api/* pass-through, which parses and
        # re-serialises it) is shape-checked before a parser sees it; a blob upload is binary,
        # a batch file a multipart upload (each of its lines is checked when it runs).
        request.app[VALIDATOR].check_raw(raw)
    return await handler(request)


async def _decoded(request: web.Request, encoding: str, limit: int, ratio: int) -> bytes:
    """The body decoded piece by piece as it arrives (aiohttp's size check is bypassed: the
    decoder counts the compressed bytes against the same limit)."""
    decoder = BodyDecoder(encoding, limit, ratio)
    async for data in request.content.iter_chunked(PIECE):
        decoder.feed(data)
    return decoder.finish()


async def _body_timed_out(request: web.Request, timeout: float) -> web.StreamResponse:
    """Send the 408 and close the connection at once.

    Left to itself aiohttp would then "linger", reading the unread body for up to 10 s more
    before closing, which hands a slow client exactly the time this deadline took away.
    """
    rid = request_id(request)
    log.info("%s request body not received within %g s; connection closed", rid, timeout)
    response = error_response(RequestTimeout(
        f"The request body did not arrive within {timeout:g} s (server.body_timeout)."), rid, api_family(request))
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the transport flushes the 408 before it closes
    return response


def _too_large(limit: int, announced: int | None = None) -> PayloadTooLarge:
    size = f"announces {announced} bytes, above" if announced is not None else "exceeds"
    return PayloadTooLarge(f"The request body {size} the limit of {limit} bytes (limits.max_body_bytes).")
