"""``POST /v1/completions`` (legacy): validate, translate, call ``/api/generate``, answer/stream."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from ..appkeys import CLIENT, CONFIG
from ..errors import ProxyError, UpstreamError
from ..middleware import request_id
from ..sse import error_frame, start_event_stream
from ..translate.completions import (
    CompletionContext,
    frames_for_read,
    from_openai,
    new_stream,
    styled,
    to_completion,
)
from ..upstream import decode_json
from .common import json_response, new_id, read_json_object

__all__ = ["completions"]

log = logging.getLogger("proxy.completions")


async def completions(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    client = request.app[CLIENT]
    completion = from_openai(await read_json_object(request))
    ctx = CompletionContext(id=new_id("cmpl-"), created=int(time.time()), model=completion.model)
    camel = config.response.keys == "camel"
    async with client.open("POST", "/api/generate", completion.body) as upstream:
        if not completion.stream:
            data = decode_json(await client.read_body(upstream))
            if not isinstance(data, dict) or "error" in data:
                message = data.get("error") if isinstance(data, dict) else None
                raise UpstreamError(str(message or "Ollama sent an unexpected answer."))
            return json_response(styled(to_completion(data, ctx, completion.logprobs), camel))

        rid = request_id(request)
        state = new_stream(
            ctx, completion, camel=camel, max_line_bytes=config.upstream.max_line_bytes
        )
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
