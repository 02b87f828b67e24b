"""Ollama's native ``/api/*`` on the proxy's address, relayed byte for byte (off by default).

With ``[passthrough] enabled = true``, Ollama clients (the ``ollama`` libraries, Open WebUI's
Ollama connection…) can use the same address as OpenAI clients. A listed path is relayed as
it is: method, query, body and content type go to Ollama; Ollama's status, content type and
body bytes come back, each socket read written on at once (NDJSON streams keep their pace;
nothing is parsed or buffered). A request naming a ``model`` passes the same model gates and
admission bounds as the OpenAI routes. Ollama's own errors stay Ollama's (``{"error": ...}``), because
its clients expect that shape; what the proxy itself refuses is in OpenAI's envelope:
model management (pull, push, create, copy, delete, blobs) is 403 unless listed, any other
unlisted path 404.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

import orjson
from aiohttp import web

from ..appkeys import ADMISSION, CLIENT, CONFIG, VALIDATOR
from ..errors import NotFound, PermissionDenied, ProxyError
from ..middleware import REQUEST_ID_HEADER, request_id

__all__ = ["MODEL_MANAGEMENT", "is_listed", "passthrough"]

log = logging.getLogger("proxy.passthrough")

# Paths that change what is on Ollama's disk: never reachable by accident.
MODEL_MANAGEMENT = (
    "/api/pull",
    "/api/push",
    "/api/create",
    "/api/copy",
    "/api/delete",
    "/api/blobs",
)
# Response headers that describe the body bytes, which are relayed unchanged.
_RELAYED_HEADERS = ("Content-Type", "Content-Encoding")


def is_listed(path: str, prefixes: Iterable[str]) -> bool:
    """``path`` is a prefix or below one: ``/api/blobs`` covers ``/api/blobs/sha256:…``."""
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


async def passthrough(request: web.Request) -> web.StreamResponse:
    path = request.path
    if not is_listed(path, request.app[CONFIG].passthrough.allowed_paths):
        if is_listed(path, MODEL_MANAGEMENT):
            raise PermissionDenied(
                f"{path} manages Ollama's models and is not relayed; list it in "
                "passthrough.allowed_paths to allow it.",
                code="passthrough_refused",
            )
        raise NotFound(f"Unknown request URL: {request.method} {path}.", code="unknown_url")

    client = request.app[CLIENT]
    body = await request.read()  # bounded by limits.max_body_bytes; Ollama decodes it whole anyway
    model = _model_of(body)
    if model is not None:
        request.app[VALIDATOR].check_model(model)  # the same gates as the OpenAI routes
    target = path + (f"?{request.query_string}" if request.query_string else "")
    headers = {"Content-Type": request.headers["Content-Type"]} if "Content-Type" in request.headers else None
    rid = request_id(request)
    async with (
        request.app[ADMISSION].slot(model) if model is not None else contextlib.nullcontext(),
        # No decompression: the body bytes go to the client exactly as Ollama sent them.
        client.send(request.method, target, data=body or None, headers=headers, auto_decompress=False) as upstream,
    ):
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name in _RELAYED_HEADERS:
            if name in upstream.headers:
                response.headers[name] = upstream.headers[name]
        response.headers[REQUEST_ID_HEADER] = rid
        await response.prepare(request)
        try:
            with client.idle_timer() as timer:
                while data := await timer.read(upstream.content):
                    await response.write(data)
            await response.write_eof()
        except ProxyError as exc:
            # The status is out; end the body the way Ollama ends a failed stream: an error line.
            log.warning("%s %s relay ended by upstream fault: %s", rid, path, exc.message)
            await _write_quietly(response, orjson.dumps({"error": exc.message}) + b"\n")
        except ConnectionResetError:
            log.info("%s client went away mid-relay; upstream request closed", rid)
        except Exception:
            # A bug after the status went out: end the body as Ollama ends a failed stream.
            log.exception("%s %s relay failed", rid, path)
            message = f"The proxy hit an internal error (request id {rid})."
            await _write_quietly(response, orjson.dumps({"error": message}) + b"\n")
    return response


def _model_of(body: bytes) -> str | None:
    """The ``model`` a native request names (chat, generate, embed, show…), if it is JSON."""
    if not body or b'"model"' not in body:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # not ours to judge: Ollama answers it in its own words
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


async def _write_quietly(response: web.StreamResponse, data: bytes) -> None:
    try:
        await response.write(data)
    except ConnectionResetError:
        pass  # the client is gone too; nothing left to tell
