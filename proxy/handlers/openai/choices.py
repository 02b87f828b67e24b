"""``n`` > 1: one concurrent request to Ollama per choice, merged into one answer.

Ollama generates one answer per request, so ``n`` choices are ``n`` requests, each under its
own admission slot (they count against ``[admission]`` like any request). Without a stream the
answers are merged into ``choices[i]``. With one, every upstream's frames go out as they arrive,
each carrying its choice ``index``; the answer ends (usage, ``[DONE]``) once all have. The SSE
headers go out only when every upstream has answered, so a refusal (404, 429, 503) is still an
HTTP status; until then frames that arrive are queued (a choice waiting for a slot another
choice holds gets it once that one is read to its end). A fault in any one ends the whole
answer with an error frame, as a fault ends a single stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from aiohttp import web

from ...appkeys import ADMISSION, CLIENT, CONFIG
from ...errors import ProxyError, UpstreamError
from ...gates.errors import request_id
from ...gates.outbound import ClientStalled, WriteGuard
from ...translate.openai.stream import StreamState, closing_frames
from ..common import stalled, whole_answer
from ..sse import error_frame, start_event_stream

__all__ = ["relay_many", "whole_answers"]

log = logging.getLogger("proxy.stream")

T = TypeVar("T")
Reader = Callable[[StreamState, bytes], bytes]


async def whole_answers(request: web.Request, model: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ollama's non-streaming answers to ``bodies``, fetched concurrently, in order."""
    client = request.app[CLIENT]
    admission = request.app[ADMISSION]

    async def one(body: dict[str, Any]) -> dict[str, Any]:
        async with admission.slot(model, request):
            return whole_answer(await client.request_json("POST", "/api/chat", body))

    return await all_of([one(body) for body in bodies])


async def all_of(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Every result, or the first failure (the others are then cancelled and awaited)."""
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]
    finally:
        await _stop(tasks)


async def _stop(tasks: Sequence[asyncio.Future[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# An item of the merged stream: frames to write, and whether (and how) one choice ended.
_Item = tuple[bytes, bool, ProxyError | None]
# Reads held for the client once the answer is being written: past this, every choice waits for
# the client, so a slow reader slows Ollama's reads as it does for a single stream.
BACKLOG_READS = 64


class Backlog:
    """The merged stream's queue. Unbounded until the answer starts (a choice waiting for a slot
    that another choice holds needs that one read to its end), then at most ``limit`` reads."""

    def __init__(self, limit: int = BACKLOG_READS) -> None:
        self.items: asyncio.Queue[_Item] = asyncio.Queue()
        self.limit = limit
        self.bounded = False  # set once the answer's headers are out
        self._space = asyncio.Event()
        self._space.set()

    def put_nowait(self, item: _Item) -> None:
        self.items.put_nowait(item)

    async def put(self, item: _Item) -> None:
        self.items.put_nowait(item)
        if self.bounded and self.items.qsize() >= self.limit:
            self._space.clear()
            await self._space.wait()

    async def get(self) -> _Item:
        item = await self.items.get()
        if self.items.qsize() < self.limit:
            self._space.set()
        return item


async def relay_many(request: web.Request, model: str, bodies: list[dict[str, Any]],
                     states: list[StreamState], reader: Reader) -> web.StreamResponse:
    """Stream ``len(bodies)`` answers as one: frames as they come, the end once all ended."""
    loop = asyncio.get_running_loop()
    heads: list[asyncio.Future[None]] = [loop.create_future() for _ in bodies]
    queue = Backlog()
    tasks = [asyncio.ensure_future(_pump(request, model, body, state, reader, head, queue))
             for body, state, head in zip(bodies, states, heads, strict=True)]
    del bodies  # each pump holds its own until sent
    try:
        await asyncio.wait(heads, return_when=asyncio.FIRST_EXCEPTION)
        failed = [head.exception() for head in heads if head.done() and head.exception() is not None]
        if failed:
            raise failed[0]  # type: ignore[misc]
        return await _write(request, states, queue)
    finally:
        await _stop(tasks)
        for head in heads:
            if head.done() and not head.cancelled():
                head.exception()  # retrieved: no "never retrieved" noise for the ones not raised


async def _pump(request: web.Request, model: str, body: dict[str, Any], state: StreamState,
                reader: Reader, head: asyncio.Future[None], queue: Backlog) -> None:
    """One choice: its slot, its upstream request, its frames onto ``queue``, then its end."""
    client = request.app[CLIENT]
    try:
        async with request.app[ADMISSION].slot(model, request):
            call = client.open("POST", "/api/chat", body)
            del body
            async with call as upstream:
                head.set_result(None)
                with client.idle_timer() as timer:
                    while data := await timer.read(upstream.content):
                        if state.done:
                            continue  # the end of Ollama's body: read on so its connection is reused
                        out = reader(state, data)
                        if state.error is not None:  # the error frame is in ``out``
                            queue.put_nowait((out, True, state.error))
                            return
                        if out:
                            await queue.put((out, False, None))
                if not state.done:
                    raise UpstreamError("Ollama ended the stream before it was complete.")
    except ProxyError as exc:
        _fail(head, queue, exc)
        return
    except Exception:
        log.exception("%s stream of choice %d failed", request_id(request), state.index)
        _fail(head, queue, ProxyError(f"The proxy hit an internal error (request id {request_id(request)})."))
        return
    queue.put_nowait((b"", True, None))


def _fail(head: asyncio.Future[None], queue: Backlog, error: ProxyError) -> None:
    if not head.done():
        head.set_exception(error)  # before the stream started: the answer's HTTP status
    else:
        queue.put_nowait((error_frame(error), True, error))


async def _write(request: web.Request, states: list[StreamState], queue: Backlog) -> web.StreamResponse:
    rid = request_id(request)
    response = await start_event_stream(request, rid)
    queue.bounded = True
    left = len(states)
    with WriteGuard(response, request.app[CONFIG].server.write_timeout) as out_guard:
        try:
            while left:
                out, ended, error = await queue.get()
                if error is not None:
                    log.warning("%s stream ended by upstream fault: %s", rid, error.log_text)
                    await out_guard.write_eof(out)
                    return response
                left -= ended
                if not left:
                    await out_guard.write_eof(out + closing_frames(states))
                elif out:
                    await out_guard.write(out)
        except ClientStalled as exc:
            stalled(request, rid, exc)
        except ConnectionResetError:
            log.info("%s client went away mid-stream; upstream requests closed", rid)
        except Exception:
            # A bug, after the status went out: a generic error frame, the traceback in the log.
            log.exception("%s stream failed", rid)
            try:
                await out_guard.write_eof(
                    error_frame(ProxyError(f"The proxy hit an internal error (request id {rid}).")))
            except (ClientStalled, ConnectionResetError):
                pass  # the client is gone too
    return response
