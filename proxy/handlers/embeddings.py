"""``POST /v1/embeddings``: validate, translate, call Ollama's ``/api/embed``, answer."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import ADMISSION, CLIENT, CONFIG, VALIDATOR
from ..outcome import account
from ..translate.embeddings import from_openai, to_embedding_list
from .common import check_ollama_extras, json_response, read_json_object

__all__ = ["embeddings"]


async def embeddings(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    limits = request.app[VALIDATOR].check(body)  # the model gates and the [limits] table, as for chat
    embed = from_openai(body)
    await check_ollama_extras(request, embed.body, limits)  # options.*, num_ctx, keep_alive
    async with (
        request.app[ADMISSION].slot(embed.model, request),
        account(request, "embeddings", embed.model) as outcome,
    ):
        data = await request.app[CLIENT].request_json("POST", "/api/embed", embed.body)
        if isinstance(data, dict):
            outcome.count_tokens(data)
    camel = request.app[CONFIG].response.keys == "camel"
    return json_response(to_embedding_list(data, embed), camel=camel)
