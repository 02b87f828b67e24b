"""``POST /v1/chat/completions``: validate, translate, call Ollama, answer or stream."""

from __future__ import annotations

import time

from aiohttp import web

from ..appkeys import ADMISSION, CLIENT, CONFIG, VALIDATOR
from ..translate.chat import ResponseContext, from_openai, to_completion
from ..translate.stream import frames_for_read, new_stream
from ..validate import with_defaults
from .common import (
    check_ollama_extras,
    json_response,
    new_id,
    read_json_object,
    relay_stream,
    whole_answer,
)

__all__ = ["chat_completions"]


async def chat_completions(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    client = request.app[CLIENT]
    body = await read_json_object(request)
    limits = request.app[VALIDATOR].check(body)  # the [limits] table, before translation
    chat = from_openai(body)
    await check_ollama_extras(request, chat.body, limits)  # options.*, num_ctx, keep_alive
    ollama = with_defaults(chat.body, limits)
    del body  # translated; a long conversation is not held twice
    ctx = ResponseContext(
        id=new_id("chatcmpl-"),
        created=int(time.time()),
        model=chat.model,
        new_call_id=lambda: new_id("call_"),
    )
    camel = config.response.keys == "camel"
    async with request.app[ADMISSION].slot(chat.model):  # given back however the answer ends
        if not chat.stream:
            answer = whole_answer(await client.request_json("POST", "/api/chat", ollama))
            return json_response(to_completion(answer, ctx), camel=camel)
        state = new_stream(ctx, include_usage=chat.include_usage, camel=camel,
                           max_line_bytes=config.upstream.max_line_bytes)
        call = client.open("POST", "/api/chat", ollama)
        del chat, ollama  # JSON bytes in the call now, dropped once sent: not held for the stream
        async with call as upstream:
            return await relay_stream(request, client, upstream, state, frames_for_read)
