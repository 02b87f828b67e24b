"""``POST /v1/chat/completions``: validate, translate, call Ollama, answer or stream."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from ..errors import ProxyError, UpstreamError
from ..appkeys import ADMISSION, CLIENT, CONFIG, VALIDATOR
from ..middleware import request_id
from ..sse import error_frame, start_event_stream
from ..translate.chat import ResponseContext, from_openai, to_completion
from ..translate.stream import frames_for_read, new_stream
from ..upstream import decode_json
from ..validate import with_defaults
from .common import json_response, new_id, read_json_object

__all__ = ["chat_completions"]

log = logging.getLogger("proxy.chat")


async def chat_completions(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    client = request.app[CLIENT]
    body = await read_json_object(request)
    limits = request.app[VALIDATOR].check(body)  # the [limits] table, before translation
    chat = from_openai(body)
    ctx = ResponseContext(
        id=new_id("chatcmpl-"),
        created=int(time.time()),
        model=chat.model,
        new_call_id=lambda: new_id("call_"),
    )
    camel = config.response.keys == "camel"
    async with (
        request.app[ADMISSION].slot(chat.model),  # given back however the answer ends
        client.open("POST", "/api/chat", with_defaults(chat.body, limits)) as upstream,
    ):
        if not chat.stream:
            data = decode_json(await client.read_body(upstream))
            if not isinstance(data, dict) or "error" in data:
                message = data.get("error") if isinstance(data, dict) else None
                raise UpstreamError(str(message or "Ollama sent an unexpected answer."))
            return json_response(to_completion(data, ctx), camel=camel)

        rid = request_id(request)
        state = new_stream(ctx, include_usage=chat.include_usage, camel=camel,
                           max_line_bytes=config.upstream.max_line_bytes)
        response = await start_event_stream(request, rid)
        try:
            async for data in client.iter_reads(upstream):
                out = frames_for_read(state, data)
                if out:
                    await response.write(out)
                if state.error is not None:
                    log.warning("%s stream ended by upstream fault: %s", rid, state.error.message)
                    return response
            if not state.done:
                raise UpstreamError("Ollama ended the stream before it was complete.")
        except ProxyError as exc:
            log.warning("%s stream ended by upstream fault: %s", rid, exc.message)
            await _send_error(response, exc)
        except ConnectionResetError:
            log.info("%s client went away mid-stream; upstream request closed", rid)
        return response


async def _send_error(response: web.StreamResponse, error: ProxyError) -> None:
    try:
        await response.write(error_frame(error))
    except ConnectionResetError:
        pass  # the client is gone too; nothing left to tell
