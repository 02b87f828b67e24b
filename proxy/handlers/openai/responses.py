"""``/v1/responses``: create (answer or stream), and with the store on retrieve, list input
items and delete.

Creating passes the same gates as chat (``[limits]``, admission, accounting) and calls Ollama's
``/api/chat``. With records on the app (the store) a response is kept before the client learns
it is done (the JSON answer, or the stream's terminal event), so the very next request can
continue from it with ``previous_response_id``; an agent chains calls back to back. Every lookup
is by the caller's key: another key's response is "not found", like one that never was.

Responses always answer in OpenAI's snake_case: the response object repeats client JSON (tool
schemas, metadata) whose keys ``[response] keys = "camel"`` must not rename.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from ...appkeys import ADMISSION, CLIENT, CONFIG, VALIDATOR
from ...caller import caller
from ...errors import InvalidRequest, NotFound, ProxyError, UnsupportedParameter, UpstreamError
from ...gates.errors import request_id
from ...gates.outbound import ClientStalled, WriteGuard
from ...gates.resolve import fill_defaults, resolve_model
from ...models.limits import with_defaults
from ...store.reasoning_key import REASONING_KEY
from ...store.records import RESPONSE_RECORDS, ResponseRecords
from ...translate.openai.responses import (
    ResponsesContext,
    ResponsesRequest,
    from_openai,
    previous_response_id,
    skeleton,
    to_history,
    to_response,
)
from ...translate.openai.responses_input import SEALED, item_ids, references, response_of
from ...translate.openai.responses_stream import (
    ResponsesStream,
    failed,
    frames_for_read,
    new_stream,
)
from ...translate.openai.sealed import Sealer
from ...upstream.admission import SERVICE_TIER, answer_tier, requested_tier
from ...upstream.client import OllamaClient
from ...upstream.outcome import CLIENT_CLOSED, Outcome, account
from ...upstream.pool import Pool
from ..common import (
    count_stream_tokens,
    json_response,
    new_id,
    read_json_object,
    stalled,
    whole_answer,
)
from ..sse import start_event_stream

__all__ = ["create_response", "delete_response", "list_input_items", "retrieve_response"]

log = logging.getLogger("proxy.stream")

# Names the hosted tools (web_search…) a request offered that the model was not shown.
DROPPED_TOOLS = "X-Ollama-Proxy-Dropped-Tools"
STORE_OFF = "The proxy keeps no responses: turn the store on with `[store] enabled = true` in its config"
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # what a response id may be before a store sees it


def _now() -> int:
    return int(time.time())


async def create_response(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    client = request.app[CLIENT]
    body = await read_json_object(request)
    names = resolve_model(request, body)  # [models.aliases], before the gates
    limits = request.app[VALIDATOR].check(body, names.requested)  # the [limits] table, before translation
    tier = requested_tier(body)
    if tier is not None:  # read by admission only if the request has to wait
        request[SERVICE_TIER] = tier
    records = request.app.get(RESPONSE_RECORDS)
    key_id = caller(request).key_id
    history = await _history(records, previous_response_id(body), key_id)
    await _dereference(records, body, key_id)
    response_id = new_id("resp_")
    ctx = ResponsesContext(id=response_id, created_at=_now(), new_id=item_ids(response_id), now=_now)
    sealer = Sealer(await request.app[REASONING_KEY].get(), key_id) if _seals(body) else None
    req = from_openai(body, ctx, history, sealer, config.responses.hosted_tools == "refuse")
    req.echo["model"] = names.requested  # the response names the model the client asked for
    del body, history
    headers = _dropped(request, req)
    keep = None
    if records is not None and _keeps(records, req):  # `is not None`: a store may define __len__
        keep = Keeping(records, key_id, req.input_items, req.messages)
    response = skeleton(req, ctx, stored=keep is not None)
    if tier is not None:  # the class it ran in, as OpenAI reports it
        response["service_tier"] = answer_tier(request.app[ADMISSION].priority_of(request))
    ollama = with_defaults(await fill_defaults(request, req.body, limits), limits)
    model, stream, tool_names = req.model, req.stream, req.names
    sealing = sealer if req.sealed_reasoning else None
    del req  # translated; what the store needs is in `keep`, the rest is not held for the stream
    async with (
        request.app[ADMISSION].slot(model, request),  # given back however the answer ends
        account(request, "responses", model, stream=stream) as outcome,
    ):
        if not stream:
            answer = whole_answer(await client.request_json("POST", "/api/chat", ollama))
            outcome.count_tokens(answer)
            done = to_response(answer, response, ctx, sealing, tool_names)
            if keep is not None:
                await keep.put(done)
            answered = json_response(done)
            answered.headers.update(headers)
            return answered
        state = new_stream(ctx, response, config.upstream.max_line_bytes, sealing, tool_names)
        call = client.open("POST", "/api/chat", ollama)
        del ollama  # JSON bytes in the call now, dropped once sent
        async with call as upstream:
            return await _relay(request, client, upstream, state, outcome, keep, headers)


def _seals(body: dict[str, Any]) -> bool:
    """Whether the request asks for sealed reasoning or hands some back (then the key is read)."""
    include, items = body.get("include"), body.get("input")
    if isinstance(include, list) and SEALED in include:
        return True
    return isinstance(items, list) and any(
        isinstance(item, dict) and item.get("type") == "reasoning" and item.get("encrypted_content")
        for item in items)


def _dropped(request: web.Request, req: ResponsesRequest) -> dict[str, str]:
    """The answer's header naming the hosted tools left out (and a debug line saying so)."""
    if not req.dropped_tools:
        return {}
    shown = ", ".join(req.dropped_tools)
    log.debug("%s hosted tools left out of what the model sees: %s", request_id(request), shown)
    return {DROPPED_TOOLS: shown}


def _keeps(records: ResponseRecords, req: ResponsesRequest) -> bool:
    """``[store] responses``: "always", "never", or as the request's ``store`` says (default true)."""
    return records.mode == "always" or (records.mode == "on_request" and req.store)


async def _history(records: ResponseRecords | None, previous: str | None, key_id: str) -> list[dict[str, Any]] | None:
    """The stored conversation ``previous_response_id`` continues, or None for a fresh one."""
    if previous is None:
        return None
    if records is None:
        raise InvalidRequest(f"'previous_response_id' needs stored responses. {STORE_OFF}.",
                             param="previous_response_id", code="store_disabled")
    found = await records.get_response(previous, key_id) if _ID.fullmatch(previous) else None
    if found is None:
        raise NotFound(f"Previous response with id '{previous[:128]}' not found.",
                       param="previous_response_id", code="previous_response_not_found")
    messages: list[dict[str, Any]] = found["messages"]
    return messages


async def _dereference(records: ResponseRecords | None, body: dict[str, Any], key_id: str) -> None:
    """Put the stored items that ``item_reference`` items name in their place in ``input``.

    An item's id names the response that made it (input or output), so each is one lookup of
    the caller's own responses; an id that leads nowhere is a 404 naming the reference.
    """
    found = references(body.get("input"))
    if not found:
        return
    if records is None:
        raise InvalidRequest(f"Item references need stored responses. {STORE_OFF}.",
                             param=f"input[{found[0][0]}]", code="store_disabled")
    stored: dict[str, dict[str, Any] | None] = {}
    for index, item_id in found:
        response_id = response_of(item_id) if _ID.fullmatch(item_id) else None
        data = None
        if response_id is not None:
            if response_id not in stored:
                stored[response_id] = await records.get_response(response_id, key_id)
            data = stored[response_id]
        items = [*data["input_items"], *data["response"]["output"]] if data is not None else []
        item = next((item for item in items if item.get("id") == item_id), None)
        if item is None:
            raise NotFound(f"Item with id '{item_id[:128]}' not found.", param=f"input[{index}].id",
                           code="item_not_found")
        body["input"][index] = item


@dataclass(frozen=True, slots=True)
class Keeping:
    """What storing one response needs: where, whose, its input and the conversation so far."""

    records: ResponseRecords
    key_id: str
    input_items: list[dict[str, Any]]
    messages: list[dict[str, Any]]  # without instructions, as the next response continues it

    async def put(self, done: dict[str, Any]) -> None:
        """Store a finished response with its input and the conversation it ends."""
        data = {"response": done, "input_items": self.input_items,
                "messages": to_history(done["output"], self.messages)}
        await self.records.put_response(done["id"], self.key_id, done["created_at"], data)


async def _relay(request: web.Request, client: OllamaClient | Pool, upstream: aiohttp.ClientResponse,
                 state: ResponsesStream, outcome: Outcome, keep: Keeping | None,
                 headers: dict[str, str]) -> web.StreamResponse:
    """Ollama's NDJSON → Responses events, each read's events in one write, at once.

    The terminal event waits for the store. Faults end the response with ``response.failed``; a
    client that goes away ends it quietly, and one that stops reading is cut off after
    ``server.write_timeout`` (leaving the caller's ``async with`` closes Ollama's request).
    """
    rid = request_id(request)
    response = await start_event_stream(request, rid, headers)
    with WriteGuard(response, request.app[CONFIG].server.write_timeout) as guard:
        return await _relay_guarded(request, client, upstream, state, outcome, keep, guard, rid)


async def _relay_guarded(request: web.Request, client: OllamaClient | Pool, upstream: aiohttp.ClientResponse,
                         state: ResponsesStream, outcome: Outcome, keep: Keeping | None, guard: WriteGuard,
                         rid: str) -> web.StreamResponse:
    response = guard.response
    ended = False  # whether the terminal event went out
    try:
        with client.idle_timer() as timer:
            while data := await timer.read(upstream.content):
                if state.done:
                    continue  # the end of Ollama's body: read on so its connection can be reused
                out = frames_for_read(state, data)
                if outcome.first_byte is None and out:
                    outcome.first_byte = time.monotonic()
                if state.done:
                    if state.error is not None:
                        log.warning("%s response stream ended by upstream fault: %s", rid, state.error.log_text)
                        outcome.error = "mid_stream"
                    ended = True
                    await _end(request, guard, state, keep, out, rid)
                    if state.error is not None:
                        return response
                elif out:
                    await guard.write(out)
        if not state.done:
            raise UpstreamError("Ollama ended the stream before it was complete.")
    except ProxyError as exc:
        if ended:  # a fault while draining Ollama's body after the answer was whole: nothing lost
            log.info("%s after the response ended: %s", rid, exc.message)
            return response
        log.warning("%s response stream ended by upstream fault: %s", rid, exc.log_text)
        outcome.error = "mid_stream"
        ended = True
        await _end(request, guard, state, keep, failed(state, exc), rid, terminal=False)
    except ClientStalled as exc:
        outcome.status, outcome.error = CLIENT_CLOSED, "client_stalled"
        stalled(request, rid, exc)
    except ConnectionResetError:
        log.info("%s client went away mid-stream; upstream request closed", rid)
        outcome.status, outcome.error = CLIENT_CLOSED, "client_disconnect"
    except Exception:
        # A bug, after the status went out: the stream still ends with its one terminal event.
        log.exception("%s response stream failed", rid)
        outcome.error = "internal"
        if not ended:
            error = ProxyError(f"The proxy hit an internal error (request id {rid}).")
            await _end(request, guard, state, None, failed(state, error), rid, terminal=False)
    finally:
        count_stream_tokens(outcome, state)
    return response


async def _end(request: web.Request, guard: WriteGuard, state: ResponsesStream, keep: Keeping | None, out: bytes, rid: str,
               *, terminal: bool = True) -> None:
    """Store the finished response (if kept), then send the last events and the body's end.

    ``terminal``: whether ``out`` still lacks the terminal event (held in ``state.terminal``).
    A store that fails turns the answer into ``response.failed``: a client must not chain from
    a response that was never kept.
    """
    if keep is not None and state.finished is not None:
        try:
            await keep.put(state.finished)
        except Exception:
            log.exception("%s storing response %s failed", rid, state.finished["id"])
            if terminal:  # a finished response that was not kept is told as failed
                out += failed(state, ProxyError(f"The response could not be stored (request id {rid})."))
                terminal = False
    try:
        await guard.write_eof(out + state.terminal if terminal else out)
    except ClientStalled as exc:
        stalled(request, rid, exc)
    except ConnectionResetError:
        pass  # the client is gone; the response is stored all the same


# ---- stored responses ----------------------------------------------------------------------


async def _stored(request: web.Request) -> tuple[ResponseRecords, str, dict[str, Any]]:
    """The caller's stored response named in the path; 404 when there is none (or no store)."""
    response_id = request.match_info["response_id"]
    records = request.app.get(RESPONSE_RECORDS)
    shown = response_id[:128]
    if records is None:
        raise NotFound(f"No response with id '{shown}' is stored. {STORE_OFF}.", code="store_disabled")
    key_id = caller(request).key_id
    found = await records.get_response(response_id, key_id) if _ID.fullmatch(response_id) else None
    if found is None:
        raise NotFound(f"No response found with id '{shown}'.", param="response_id", code="response_not_found")
    return records, key_id, found


def _no_extras(request: web.Request) -> None:
    """Retrieval options that only apply to OpenAI's background responses or includes."""
    if request.query.get("stream", "false").lower() not in ("false", "0", ""):
        raise UnsupportedParameter("Replaying a stored response as a stream is not supported.", param="stream")
    if request.query.getall("include", []) or request.query.getall("include[]", []):
        raise UnsupportedParameter("'include' is not supported: the proxy has nothing to add.", param="include")


async def retrieve_response(request: web.Request) -> web.Response:
    _no_extras(request)
    _, _, found = await _stored(request)
    return json_response(found["response"])


async def delete_response(request: web.Request) -> web.Response:
    records, key_id, found = await _stored(request)
    response_id = found["response"]["id"]
    await records.delete_response(response_id, key_id)
    return json_response({"id": response_id, "object": "response", "deleted": True})


async def list_input_items(request: web.Request) -> web.Response:
    """A page of the response's input items: ``limit`` (1–100, 20), ``order`` (desc), ``after``."""
    _no_extras(request)
    _, _, found = await _stored(request)
    query = request.query
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise InvalidRequest("'limit' must be an integer between 1 and 100.", param="limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
    items: list[dict[str, Any]] = found["input_items"]
    if order == "desc":
        items = items[::-1]
    after = query.get("after")
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequest(f"No input item with id '{after[:128]}' in this response.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return json_response({
        "object": "list", "data": page,
        "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    })
