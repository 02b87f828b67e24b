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
* on every route but a pass-through blob upload, the JSON shape check
  (``Validator.check_raw``: depth, objects and arrays) runs on the bytes before any parser does.

The body is read once, here; a handler's ``request.read()`` returns the cached bytes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from .appkeys import CONFIG, VALIDATOR
from .config import ServerConfig
from .errors import InvalidRequest, PayloadTooLarge, RequestTimeout
from .middleware import error_response, request_id

__all__ = ["body_guard", "server_settings"]

log = logging.getLogger("proxy")


def server_settings(server: ServerConfig) -> dict[str, Any]:
    """aiohttp ``RequestHandler`` keyword arguments for ``[server]`` (``handler_args``)."""
    return {
        "keepalive_timeout": server.keepalive_timeout,
        "max_line_size": server.max_line_size,
        "max_field_size": server.max_field_size,
        "max_headers": server.max_headers,
    }


@web.middleware
async def body_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.body_exists or request.match_info.http_exception is not None:
        return await handler(request)  # no body, or an unknown route: its 404/405 comes first
    config = request.app[CONFIG]
    max_bytes = config.limits.max_body_bytes
    announced = request.content_length
    if announced is not None and announced > max_bytes:
        raise _too_large(max_bytes, announced)
    timeout = config.server.body_timeout
    try:
        if request.content.is_eof():  # the usual case: the body came with the headers
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
    if not request.path.startswith("/api/blobs/"):
        # Every JSON body (the /v1 routes and the /api/* pass-through, which parses and
        # re-serialises it) is shape-checked before a parser sees it; a blob upload is binary.
        request.app[VALIDATOR].check_raw(raw)
    return await handler(request)


async def _body_timed_out(request: web.Request, timeout: float) -> web.StreamResponse:
    """Send the 408 and close the connection at once.

    Left to itself aiohttp would then "linger", reading the unread body for up to 10 s more
    before closing, which hands a slow client exactly the time this deadline took away.
    """
    rid = request_id(request)
    log.info("%s request body not received within %g s; connection closed", rid, timeout)
    response = error_response(RequestTimeout(
        f"The request body did not arrive within {timeout:g} s (server.body_timeout)."), rid)
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the transport flushes the 408 before it closes
    return response


def _too_large(limit: int, announced: int | None = None) -> PayloadTooLarge:
    size = f"announces {announced} bytes, above" if announced is not None else "exceeds"
    return PayloadTooLarge(f"The request body {size} the limit of {limit} bytes (limits.max_body_bytes).")
