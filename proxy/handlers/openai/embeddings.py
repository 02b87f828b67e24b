"""``POST /v1/embeddings``: validate, translate, call Ollama's ``/api/embed``, answer."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from ...appkeys import ADMISSION, CLIENT, CONFIG, VALIDATOR
from ...gates.resolve import fill_defaults, resolve_model
from ...translate.openai.embeddings import from_openai, to_embedding_list
from ...upstream.outcome import account
from ..common import check_ollama_extras, json_response, read_json_object

__all__ = ["embeddings"]


async def embeddings(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    names = resolve_model(request, body)  # [models.aliases], before the gates
    limits = request.app[VALIDATOR].check(body, names.requested)  # the model gates and the [limits] table
    embed = from_openai(body)
    await check_ollama_extras(request, embed.body, limits)  # options.*, num_ctx, keep_alive
    embed = dataclasses.replace(embed, body=await fill_defaults(request, embed.body, limits))
    async with (
        request.app[ADMISSION].slot(embed.model, request),
        account(request, "embeddings", embed.model) as outcome,
    ):
        data = await request.app[CLIENT].request_json("POST", "/api/embed", embed.body)
        if isinstance(data, dict):
            outcome.count_tokens(data)
    camel = request.app[CONFIG].response.keys == "camel"
    answered = dataclasses.replace(embed, model=names.requested)  # the id the client asked for
    return json_response(to_embedding_list(data, answered), camel=camel)
