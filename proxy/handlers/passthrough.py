"""Ollama's native ``/api/*`` on the proxy's address, relayed byte for byte (off by default).

With ``[passthrough] enabled = true``, Ollama clients (the ``ollama`` libraries, Open WebUI's
Ollama connection…) can use the same address as OpenAI clients. Only a listed path in canonical
form is relayed (``proxy/upstream/native.py``: no escapes, no dot segments; 400 otherwise), with its query
byte for byte. A JSON body is parsed, its keys read as Go reads them, checked like a ``/v1`` body
(model gates on every field naming a model, ``[limits]``, Ollama's knobs, the default budget)
and re-serialised, so Ollama gets exactly what was checked; a blob upload is relayed as is.
Ollama's status, content type and body bytes come back, each socket read written on at once
(NDJSON streams keep their pace). ``/api/tags`` and ``/api/ps`` hide models the gates deny, as
``/v1/models`` does, and ``/api/show`` answers 404 for them. Ollama's own 4xx errors stay
Ollama's (``{"error": ...}``), because its clients expect that shape; its 5xx and the error
lines of a failing stream keep the shape but not the text (logged only). What the proxy itself refuses is in OpenAI's envelope: model
management (pull, push, create, copy, delete, blobs) is 403 unless listed, any other path 404.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from ..appkeys import ADMISSION, CLIENT, CONFIG, VALIDATOR
from ..errors import (
    UPSTREAM_FAULT_MESSAGE,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    PermissionDenied,
    ProxyError,
    UpstreamFault,
)
from ..gates.body import body_of, handed_over
from ..gates.errors import REQUEST_ID_HEADER, SERVER_NAME, request_id
from ..gates.outbound import ClientStalled, WriteGuard
from ..gates.resolve import check_name, fill_defaults, resolve_model
from ..logs import escape
from ..models.limits import with_defaults
from ..upstream.native import (
    MODEL_FIELDS,
    canonical_target,
    filter_listing,
    hide_error_lines,
    named_models,
    parse_object,
)
from .common import check_ollama_extras, json_response, stalled

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
# Listings that show models: filtered by the model gates when any gate is set.
_LISTINGS = ("/api/tags", "/api/ps")
# Requests that generate: the default token budget applies, as on /v1.
_GENERATING = ("/api/chat", "/api/generate")
# Requests that load a model: [models.defaults] apply (options, keep_alive…), as on /v1.
_DEFAULTED = ("/api/chat", "/api/generate", "/api/embed")


def is_listed(path: str, prefixes: Iterable[str]) -> bool:
    """``path`` is a prefix or below one: ``/api/blobs`` covers ``/api/blobs/sha256:…``."""
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


async def passthrough(request: web.Request) -> web.StreamResponse:
    # The raw target, not aiohttp's decoded ``request.path``: the allow-list and the upstream URL
    # see the very same string (proxy/upstream/native.py).
    path, query = canonical_target(request.raw_path)
    config = request.app[CONFIG]
    if not is_listed(path, config.passthrough.allowed_paths):
        if is_listed(path, MODEL_MANAGEMENT):
            raise PermissionDenied(
                f"{path} manages Ollama's models and is not relayed; list it in "
                "passthrough.allowed_paths to allow it.",
                code="passthrough_refused",
            )
        raise NotFound(f"Unknown request URL: {request.method} {path}.", code="unknown_url")

    validator = request.app[VALIDATOR]
    if path in _LISTINGS and request.method in ("GET", "HEAD") and not validator.open:
        # Denied models are hidden here exactly as /v1/models hides them.
        listing = await request.app[CLIENT].request_json("GET", path)
        return json_response(filter_listing(listing, validator.allows))
    raw = await body_of(request)  # bounded by limits.max_body_bytes; Ollama decodes it whole anyway
    model: str | None = None
    headers = None
    if raw and not is_listed(path, ("/api/blobs",)):  # a blob upload is binary: relayed as is
        body = await _checked_body(request, path, raw)
        model = _first(named_models(body))
        raw = _encode(body)  # Ollama reads exactly what was checked
        headers = {"Content-Type": "application/json"}
    elif "Content-Type" in request.headers:
        headers = {"Content-Type": request.headers["Content-Type"]}
    target = f"{path}?{query}" if query else path
    return await _relay(request, target, raw, headers, model)


async def _checked_body(request: web.Request, path: str, raw: bytes) -> dict[str, Any]:
    """The body as Ollama will read it, after the gates, the limits and Ollama's own knobs."""
    validator = request.app[VALIDATOR]
    handed_over(request)  # the meter's parse, dropped: Ollama reads keys as Go does (parse_object)
    body = parse_object(raw)
    for field in MODEL_FIELDS:  # no NUL in any name Ollama reads
        if isinstance(value := body.get(field), str):
            check_name(value, field)
    names = resolve_model(request, body, "model" if "model" in body else "name")  # [models.aliases]
    try:
        for name in named_models(body):
            validator.check_model(name, names.requested if name == names.served else None)  # as on /v1
    except PermissionDenied:
        if path == "/api/show":  # hidden, as /v1/models/{id} hides it
            raise ModelNotFound(f"The model '{body.get('model') or body.get('name')}' does not exist.",
                                param="model") from None
        raise
    limits = validator.check(body, names.requested)
    await check_ollama_extras(request, body, limits)
    if path in _DEFAULTED:
        body = await fill_defaults(request, body, limits)  # [models.defaults], the client's values first
    return with_defaults(body, limits) if path in _GENERATING else body


async def _relay(request: web.Request, target: str, data: bytes, headers: dict[str, str] | None,
                 model: str | None) -> web.StreamResponse:
    client = request.app[CLIENT]
    rid = request_id(request)
    async with (
        request.app[ADMISSION].slot(model, request) if model is not None else contextlib.nullcontext(),
        # No decompression: the body bytes go to the client exactly as Ollama sent them.
        client.send(request.method, target, data=data or None, headers=headers, auto_decompress=False,
                    encoded=True) as upstream,
    ):
        if upstream.status >= 500 and upstream.status != 503:
            return await _hide_fault(request, upstream, rid)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name in _RELAYED_HEADERS:
            if name in upstream.headers:
                response.headers[name] = upstream.headers[name]
        response.headers[REQUEST_ID_HEADER] = rid
        response.headers["Server"] = SERVER_NAME
        await response.prepare(request)
        path = target.partition("?")[0]
        with WriteGuard(response, request.app[CONFIG].server.write_timeout) as out:
            try:
                hidden = f"{UPSTREAM_FAULT_MESSAGE} (request id {rid})"
                answering = upstream.status == 200  # a 4xx's error is the client's own: it passes
                with client.idle_timer() as timer:
                    while data := await timer.read(upstream.content):
                        if answering and b'"error"' in data:  # Ollama failing mid-answer: text to the log
                            data, texts = hide_error_lines(data, hidden)
                            for text in texts:
                                log.warning("%s %s stream ended by upstream fault: %s", rid, path, escape(text))
                        await out.write(data)
                await out.write_eof()
            except ProxyError as exc:
                # The status is out; end the body the way Ollama ends a failed stream: an error line.
                log.warning("%s %s relay ended by upstream fault: %s", rid, path, exc.log_text)
                await _write_quietly(request, out, rid, orjson.dumps({"error": exc.message}) + b"\n")
            except ClientStalled as exc:
                stalled(request, rid, exc)
            except ConnectionResetError:
                log.info("%s client went away mid-relay; upstream request closed", rid)
            except Exception:
                # A bug after the status went out: end the body as Ollama ends a failed stream.
                log.exception("%s %s relay failed", rid, path)
                message = f"The proxy hit an internal error (request id {rid})."
                await _write_quietly(request, out, rid, orjson.dumps({"error": message}) + b"\n")
    return response


async def _hide_fault(request: web.Request, upstream: aiohttp.ClientResponse, rid: str) -> web.Response:
    """Ollama's own 5xx, in Ollama's shape but with OpenAI's generic text: its text, which can
    hold file paths and GPU errors, goes to the log only."""
    fault = UpstreamFault(f"HTTP {upstream.status}: {await request.app[CLIENT].error_text(upstream)}")
    log.warning("%s %s %s -> %d %s", rid, request.method, request.path, upstream.status, fault.log_text)
    body = {"error": f"{fault.message} (request id {rid})"}
    return web.Response(status=upstream.status, body=orjson.dumps(body), content_type="application/json",
                        headers={REQUEST_ID_HEADER: rid, "Server": SERVER_NAME})


def _encode(body: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:  # integers beyond 64 bits parse but do not serialise
        raise InvalidRequest(f"The request holds a value Ollama cannot take: {exc}.", code="invalid_value") from None


def _first(names: list[str]) -> str | None:
    return names[0] if names else None


async def _write_quietly(request: web.Request, out: WriteGuard, rid: str, data: bytes) -> None:
    try:
        await out.write_eof(data)
    except ClientStalled as exc:
        stalled(request, rid, exc)
    except ConnectionResetError:
        pass  # the client is gone too; nothing left to tell
