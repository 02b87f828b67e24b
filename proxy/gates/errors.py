"""The request id and the one place where errors become OpenAI's envelope.

``error_middleware`` is the outermost guard (like Starlette's ``ServerErrorMiddleware``): a
``ProxyError`` is rendered with its status; aiohttp's own HTTP errors (unknown route, wrong
method, body too large) are mapped into the same family; anything else is a bug, logged with
its traceback and answered as a generic 500 naming only the request id.
"""

from __future__ import annotations

import logging
import math
import re

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from ..appkeys import CONFIG
from ..errors import (
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ProxyError,
    anthropic_status,
    to_anthropic_envelope,
    to_envelope,
)
from ..ids import new_id
from ..logs import REQUEST_ID as REQUEST_ID_VAR
from ..logs import escape
from .outbound import WHOLE_BODY_GUARDED_ABOVE, send_whole

__all__ = ["REQUEST_ID_HEADER", "SERVER_NAME", "api_family", "error_middleware", "error_response", "request_id"]

log = logging.getLogger("proxy")

REQUEST_ID_HEADER = "X-Request-Id"
# What the proxy calls itself in ``Server`` instead of aiohttp's "Python/3.x aiohttp/3.y.z":
# a name without versions, as nginx's ``server_tokens off`` does.
SERVER_NAME = "ollama-openai-proxy"
REQUEST_ID = web.RequestKey("request_id", str)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(request: web.Request) -> str:
    """The request's id: the client's ``X-Request-Id`` when it is sane, else a new one."""
    rid = request.get(REQUEST_ID)
    if rid is None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        rid = incoming if _REQUEST_ID.fullmatch(incoming) else new_id("req_")
        request[REQUEST_ID] = rid
    return rid


def api_family(request: web.BaseRequest) -> str:
    """Whose API a request speaks, for the shape of its errors: ``"anthropic"`` on the Messages
    routes (and ``/v1/models`` asked with ``anthropic-version``), else ``"openai"``."""
    path = request.path
    if path.startswith("/v1/messages") or (path.startswith("/v1/models") and "anthropic-version" in request.headers):
        return "anthropic"
    return "openai"


def error_response(error: ProxyError, rid: str, family: str = "openai") -> web.Response:
    headers = {REQUEST_ID_HEADER: rid, "Server": SERVER_NAME, **dict(error.headers)}
    if family == "anthropic":
        status, _ = anthropic_status(error)
        headers["request-id"] = rid
        body = to_anthropic_envelope(error, rid)
        retry = error.retry_after if error.retry_after is not None or status not in (429, 529) else 1.0
    else:
        status, body, retry = error.status, to_envelope(error, rid), error.retry_after
    if retry is not None:
        headers["Retry-After"] = f"{max(1, math.ceil(retry))}"  # whole seconds, rounded up
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> ProxyError:
    if exc.status == 404:
        return NotFound(f"Unknown request URL: {request.method} {request.path}.", code="unknown_url")
    if exc.status == 405:
        return MethodNotAllowed(f"Method {request.method} is not allowed for {request.path}.")
    if exc.status == 413:
        return PayloadTooLarge("The request body is too large.")
    error = ProxyError(exc.reason or "HTTP error")
    error.status = exc.status
    error.type = "invalid_request_error" if exc.status < 500 else "api_error"
    return error


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request_id(request)
    REQUEST_ID_VAR.set(rid)  # records logged while handling this request carry its id (JSON log)
    try:
        response = await handler(request)
    except ProxyError as exc:
        if exc.status >= 500:
            log.warning("%s %s %s -> %d %s", rid, request.method, escape(request.path), exc.status, exc.log_text)
        return error_response(exc, rid, api_family(request))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(_from_http_exception(exc, request), rid, api_family(request))
        if "Allow" in exc.headers:  # a 405 must say which methods are (RFC 9110 15.5.6)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("%s %s %s -> unhandled error", rid, request.method, escape(request.path))
        return error_response(ProxyError(f"The proxy hit an internal error (request id {rid})."), rid,
                              api_family(request))
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = rid
        response.headers["Server"] = SERVER_NAME
        if (isinstance(response, web.Response) and isinstance(body := response.body, bytes)
                and len(body) > WHOLE_BODY_GUARDED_ABOVE):
            # A large answer could wait on the client forever: sent here, under write_timeout.
            timeout = request.app[CONFIG].server.write_timeout
            if not await send_whole(request, response, timeout):
                log.warning("%s %s %s: the client took no data for %g s (server.write_timeout); "
                            "connection dropped", rid, request.method, escape(request.path), timeout)
    return response
