"""What every handler needs: the JSON body, ids, the JSON response, and the stream relay."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import orjson
from aiohttp import web

from ..errors import InvalidRequest, ProxyError, UpstreamError, UpstreamMalformed
from ..ids import new_id
from ..middleware import request_id
from ..outcome import CLIENT_CLOSED, Outcome
from ..pool import Pool
from ..sse import error_frame, start_event_stream
from ..translate.keys import camelize
from ..translate.ndjson import LineState
from ..upstream import OllamaClient

__all__ = [
    "count_stream_tokens", "json_response", "new_id", "read_json_object", "relay_stream", "whole_answer",
]

log = logging.getLogger("proxy.stream")

S = TypeVar("S", bound=LineState)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; aiohttp enforces the size limit while reading."""
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body must be valid JSON.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def json_response(payload: Any, *, camel: bool = False, status: int = 200) -> web.Response:
    body = orjson.dumps(camelize(payload) if camel else payload)
    return web.Response(status=status, body=body, content_type="application/json")


def whole_answer(data: Any) -> dict[str, Any]:
    """Ollama's non-streaming answer as a JSON object; an ``{"error"}`` body is a 502."""
    if not isinstance(data, dict):
        raise UpstreamMalformed("Ollama sent an unexpected answer.")
    if "error" in data:
        raise UpstreamError(str(data["error"] or "Ollama sent an unexpected answer."))
    return data


async def relay_stream(request: web.Request, client: OllamaClient | Pool, upstream: aiohttp.ClientResponse,
                       state: S, frames_for_read: Callable[[S, bytes], bytes],
                       outcome: Outcome) -> web.StreamResponse:
    """Stream Ollama's NDJSON to the client as SSE: each read's frames in one write, at once.

    Faults after the headers went out end the stream with an error frame; a client that goes
    away ends it quietly (leaving the caller's ``async with`` closes the upstream request).
    ``outcome`` learns when the first frame went out, the token counts and how the stream ended.
    """
    rid = request_id(request)
    response = await start_event_stream(request, rid)
    try:
        with client.idle_timer() as timer:
            while data := await timer.read(upstream.content):
                if state.done:
                    continue  # the end of Ollama's body: read on so its connection can be reused
                out = frames_for_read(state, data)
                if outcome.first_byte is None and out:
                    outcome.first_byte = time.monotonic()
                if state.error is not None:
                    log.warning("%s stream ended by upstream fault: %s", rid, state.error.message)
                    outcome.error = "mid_stream"
                    await response.write_eof(out)
                    return response
                if state.done:
                    await response.write_eof(out)  # the last frames and the body's end in one write
                elif out:
                    await response.write(out)
        if not state.done:
            raise UpstreamError("Ollama ended the stream before it was complete.")
    except ProxyError as exc:
        log.warning("%s stream ended by upstream fault: %s", rid, exc.message)
        outcome.error = "mid_stream"
        await _end_with_error(response, exc)
    except ConnectionResetError:
        log.info("%s client went away mid-stream; upstream request closed", rid)
        outcome.status, outcome.error = CLIENT_CLOSED, "client_disconnect"
    except Exception:
        # A bug, after the status went out: the middleware can no longer answer, so the stream
        # ends with a generic error frame (the traceback stays in the log).
        log.exception("%s stream failed", rid)
        outcome.error = "internal"
        await _end_with_error(response, ProxyError(f"The proxy hit an internal error (request id {rid})."))
    finally:
        count_stream_tokens(outcome, state)
    return response


def count_stream_tokens(outcome: Outcome, *states: LineState) -> None:
    """Ollama's counts from its final lines; for a stream cut short, the lines relayed so far
    (each of Ollama's lines carries about one token; the first and last carry none)."""
    outcome.count_tokens(*(state.final for state in states if state.final is not None))
    outcome.completion_tokens += sum(max(0, state.lines - 1) for state in states if state.final is None)


async def _end_with_error(response: web.StreamResponse, error: ProxyError) -> None:
    try:
        await response.write_eof(error_frame(error))
    except ConnectionResetError:
        pass  # the client is gone too; nothing left to tell
