"""``POST /v1/completions`` (legacy): validate, translate, call ``/api/generate``, answer/stream."""

from __future__ import annotations

import time

from aiohttp import web

from ...appkeys import ADMISSION, CLIENT, CONFIG, VALIDATOR
from ...gates.resolve import fill_defaults, resolve_model
from ...models.limits import with_defaults
from ...translate.openai.completions import (
    CompletionContext,
    frames_for_read,
    from_openai,
    new_stream,
    styled,
    to_completion,
)
from ...upstream.admission import SERVICE_TIER, requested_tier
from ...upstream.outcome import account
from ..common import (
    check_ollama_extras,
    json_response,
    new_id,
    read_json_object,
    relay_stream,
    whole_answer,
)

__all__ = ["completions"]


async def completions(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    client = request.app[CLIENT]
    body = await read_json_object(request)
    names = resolve_model(request, body)  # [models.aliases], before the gates
    limits = request.app[VALIDATOR].check(body, names.requested)  # gates and the [limits] table, as for chat
    tier = requested_tier(body)  # its class in the queue (a legacy completion does not echo it)
    if tier is not None:
        request[SERVICE_TIER] = tier
    completion = from_openai(body)
    ctx = CompletionContext(id=new_id("cmpl-"), created=int(time.time()), model=names.requested)
    camel = config.response.keys == "camel"
    await check_ollama_extras(request, completion.body, limits)  # options.*, num_ctx, keep_alive
    ollama = with_defaults(await fill_defaults(request, completion.body, limits), limits)
    async with (
        request.app[ADMISSION].slot(completion.model, request),
        account(request, "completions", completion.model, stream=completion.stream) as outcome,
    ):
        if not completion.stream:
            answer = whole_answer(await client.request_json("POST", "/api/generate", ollama))
            outcome.count_tokens(answer)
            return json_response(styled(to_completion(answer, ctx, completion.logprobs), camel))
        async with client.open("POST", "/api/generate", ollama) as upstream:
            state = new_stream(ctx, completion, camel=camel, max_line_bytes=config.upstream.max_line_bytes)
            return await relay_stream(request, client, upstream, state, frames_for_read, outcome)
