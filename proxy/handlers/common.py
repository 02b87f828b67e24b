"""What every handler needs: the JSON body, ids, the JSON response, and the stream relay."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import orjson
from aiohttp import web

from ..appkeys import CATALOG, CONFIG
from ..errors import InvalidRequest, ProxyError, UpstreamError, UpstreamFault, UpstreamMalformed
from ..gates.body import body_of, handed_over
from ..gates.errors import request_id
from ..gates.outbound import ClientStalled, WriteGuard, abort
from ..ids import new_id
from ..logs import escape
from ..models.limits import Limits
from ..models.options import check_extras, needs_context_length
from ..translate.keys import camelize
from ..translate.ndjson import LineState
from ..upstream.client import OllamaClient
from ..upstream.outcome import CLIENT_CLOSED, Outcome
from ..upstream.pool import Pool
from .sse import error_frame, start_event_stream

__all__ = [
    "check_ollama_extras", "count_stream_tokens", "json_response", "new_id", "read_json_object",
    "relay_stream", "stalled", "whole_answer",
]  # fmt: skip

log = logging.getLogger("proxy.stream")

S = TypeVar("S", bound=LineState)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; aiohttp enforces the size limit while reading."""
    parsed = handed_over(request)  # the meter's parse of the same bytes
    if parsed is not None:
        return parsed
    raw = await body_of(request)
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


async def check_ollama_extras(request: web.Request, body: dict[str, Any], limits: Limits) -> None:
    """Hold Ollama's own knobs in ``body`` (the request Ollama gets) to ``limits``; the model's
    context length is looked up (``/api/show``, cached by digest) only for a large ``num_ctx``."""
    context_length = None
    model = body.get("model")
    if isinstance(model, str) and needs_context_length(body, limits):
        context_length = await request.app[CATALOG].context_length(model)
    check_extras(body, limits, context_length)


def json_response(payload: Any, *, camel: bool = False, status: int = 200) -> web.Response:
    body = orjson.dumps(camelize(payload) if camel else payload)
    return web.Response(status=status, body=body, content_type="application/json")


def whole_answer(data: Any) -> dict[str, Any]:
    """Ollama's non-streaming answer as a JSON object; an ``{"error"}`` body is a 502."""
    if not isinstance(data, dict):
        raise UpstreamMalformed("Ollama sent an unexpected answer.")
    if "error" in data:
        if message := data["error"]:  # Ollama's own failure: its text stays in the log
            raise UpstreamFault(str(message))
        raise UpstreamError("Ollama sent an unexpected answer.")
    return data


async def relay_stream(request: web.Request, client: OllamaClient | Pool, upstream: aiohttp.ClientResponse,
                       state: S, frames_for_read: Callable[[S, bytes], bytes],
                       outcome: Outcome, *, fault_frame: Callable[[ProxyError, str], bytes] = error_frame,
                       headers: dict[str, str] | None = None,
                       cut_short: Callable[[S], bool] | None = None,
                       keepalive: tuple[bytes, float] | None = None) -> web.StreamResponse:
    """Stream Ollama's NDJSON to the client as SSE: each read's frames in one write, at once.

    Faults after the headers went out end the stream with an error frame; a client that goes
    away ends it quietly, and one that stops reading is cut off after ``server.write_timeout``
    (leaving the caller's ``async with`` closes the upstream request and frees the slot).
    ``outcome`` learns when the first frame went out, the token counts and how the stream ended.
    ``fault_frame`` renders a fault in the API's own envelope (the Messages API's ``error``
    event); ``cut_short(state)`` true at the end: the proxy ended the answer (a stop sequence),
    so Ollama's body is not read on but closed, which stops its generation. ``keepalive``
    (frame, seconds): that frame whenever nothing went out for so long (Anthropic's ``ping``).
    """
    rid = request_id(request)
    response = await start_event_stream(request, rid, headers)
    pinger = Pinger(response, *keepalive) if keepalive is not None and keepalive[1] > 0 else None
    with WriteGuard(response, request.app[CONFIG].server.write_timeout) as out:
        try:
            with client.idle_timer() as timer:
                while data := await timer.read(upstream.content):
                    if state.done:
                        continue  # the end of Ollama's body: read on so its connection can be reused
                    frames = frames_for_read(state, data)
                    if outcome.first_byte is None and frames:
                        outcome.first_byte = time.monotonic()
                    if state.error is not None:
                        log.warning("%s stream ended by upstream fault: %s", rid, state.error.log_text)
                        outcome.error = "mid_stream"
                        await out.write_eof(frames)
                        return response
                    if state.done:
                        await out.write_eof(frames)  # the last frames and the body's end in one write
                        if cut_short is not None and cut_short(state):
                            return response
                    elif frames:
                        await out.write(frames)
                        if pinger is not None:
                            pinger.wrote()
            if not state.done:
                raise UpstreamError("Ollama ended the stream before it was complete.")
        except ProxyError as exc:
            log.warning("%s stream ended by upstream fault: %s", rid, exc.log_text)
            outcome.error = "mid_stream"
            await _end_with_error(request, out, fault_frame(exc, rid), rid)
        except ClientStalled as exc:
            outcome.status, outcome.error = CLIENT_CLOSED, "client_stalled"
            stalled(request, rid, exc)
        except ConnectionResetError:
            log.info("%s client went away mid-stream; upstream request closed", rid)
            outcome.status, outcome.error = CLIENT_CLOSED, "client_disconnect"
        except Exception:
            # A bug, after the status went out: the middleware can no longer answer, so the stream
            # ends with a generic error frame (the traceback stays in the log).
            log.exception("%s stream failed", rid)
            outcome.error = "internal"
            error = ProxyError(f"The proxy hit an internal error (request id {rid}).")
            await _end_with_error(request, out, fault_frame(error, rid), rid)
        finally:
            if pinger is not None:
                pinger.close()
            count_stream_tokens(outcome, state)
    return response


class Pinger:
    """Writes ``frame`` when the stream has sent nothing for ``interval`` seconds.

    One timer per interval, none per read: a read that wrote only notes the time. The ping is
    a write of its own, between whole events (each write hands whole events to the transport),
    so it never splits one; once the stream ended no ping follows (``close``).
    """

    def __init__(self, response: web.StreamResponse, frame: bytes, interval: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._response = response
        self._frame = frame
        self._interval = interval
        self._last = self._loop.time()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._handle = self._loop.call_later(interval, self._check)

    def wrote(self) -> None:
        self._last = self._loop.time()

    def _check(self) -> None:
        now = self._loop.time()
        if now - self._last >= self._interval and (self._task is None or self._task.done()):
            self._last = now
            self._task = self._loop.create_task(self._ping())
        when = self._last + self._interval
        self._handle = self._loop.call_at(when if when > now else now + self._interval, self._check)

    async def _ping(self) -> None:
        if self._closed:
            return
        try:
            await self._response.write(self._frame)
        except (ConnectionError, RuntimeError):  # the client went away, or the stream just ended
            pass

    def close(self) -> None:
        self._closed = True
        self._handle.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()


def count_stream_tokens(outcome: Outcome, *states: LineState) -> None:
    """Ollama's counts from its final lines; for a stream cut short, the lines relayed so far
    (each of Ollama's lines carries about one token; the first and last carry none)."""
    outcome.count_tokens(*(state.final for state in states if state.final is not None))
    outcome.completion_tokens += sum(max(0, state.lines - 1) for state in states if state.final is None)


def stalled(request: web.Request, rid: str, exc: ClientStalled) -> None:
    """Log a client that stopped reading, once, and drop its connection."""
    log.warning("%s %s %s: %s; stream aborted, upstream request closed", rid, request.method,
                escape(request.path), exc)
    abort(request)


async def _end_with_error(request: web.Request, out: WriteGuard, frame: bytes, rid: str) -> None:
    try:
        await out.write_eof(frame)
    except ClientStalled as exc:
        stalled(request, rid, exc)
    except ConnectionResetError:
        pass  # the client is gone too; nothing left to tell
