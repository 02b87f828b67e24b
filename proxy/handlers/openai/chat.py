"""``POST /v1/chat/completions``: validate, translate, call Ollama, answer or stream."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ...appkeys import ADMISSION, CLIENT, CONFIG, STORE_SERVICE, VALIDATOR
from ...caller import caller
from ...errors import UnsupportedParameter
from ...gates.resolve import fill_defaults, resolve_model
from ...models.limits import with_defaults
from ...store.base import ChatRecord
from ...store.history import should_store
from ...translate.openai.assemble import StreamAssembly
from ...translate.openai.chat import (
    ReplyShape,
    ResponseContext,
    choice_bodies,
    from_openai,
    reasoning_keys,
    to_completion,
)  # fmt: skip
from ...translate.openai.stream import (
    StreamState,
    frames_for_forced_read,
    frames_for_read,
    new_stream,
)
from ...upstream.admission import SERVICE_TIER, answer_tier, requested_tier
from ...upstream.outcome import account
from ..common import (
    check_ollama_extras,
    count_stream_tokens,
    json_response,
    new_id,
    read_json_object,
    relay_stream,
    whole_answer,
)
from .choices import relay_many, whole_answers

__all__ = ["chat_completions"]

Reader = Callable[[StreamState, bytes], bytes]


async def chat_completions(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    client = request.app[CLIENT]
    body = await read_json_object(request)
    names = resolve_model(request, body)  # [models.aliases]: body["model"] is Ollama's model now
    limits = request.app[VALIDATOR].check(body, names.requested)  # the [limits] table, before translation
    tier = requested_tier(body)
    if tier is not None:  # read by admission only if the request has to wait
        request[SERVICE_TIER] = tier
    chat = from_openai(body)
    await check_ollama_extras(request, chat.body, limits)  # options.*, num_ctx, keep_alive
    ollama = with_defaults(await fill_defaults(request, chat.body, limits), limits)
    service = request.app.get(STORE_SERVICE)
    keep = should_store(chat.store, None if service is None else config.store.chat_completions)
    if keep and chat.n > 1 and chat.stream:
        raise UnsupportedParameter("store: true is not supported with n > 1 on a streamed answer; "
                                   "store one choice, or ask without stream.", param="store")
    messages = body.get("messages") if keep else None  # as the client sent them, for the history
    del body  # translated; a long conversation is not held twice
    call_ids: list[str] = []
    ctx = ResponseContext(
        id=new_id("chatcmpl-"),
        created=int(time.time()),
        model=names.requested,  # the id the client asked for, as OpenAI answers
        new_call_id=_recording(call_ids) if keep and chat.stream else (lambda: new_id("call_")),
        service_tier=None if tier is None else answer_tier(request.app[ADMISSION].priority_of(request)),
    )
    camel = config.response.keys == "camel"
    shape = ReplyShape(reasoning_keys(config.response.reasoning_field), chat.one_tool_call, chat.forced)
    reader: Reader = frames_for_read if chat.forced is None else frames_for_forced_read
    if chat.n > 1:  # one request to Ollama per choice, each under its own slot (handlers/choices.py)
        bodies = choice_bodies(ollama, chat.n)
        async with account(request, "chat.completions", chat.model, stream=chat.stream) as outcome:
            if not chat.stream:
                answers = await whole_answers(request, chat.model, bodies)
                outcome.count_tokens(*answers)
                completion = to_completion(answers, ctx, shape)
                if keep and service is not None:
                    service.save_chat(_record(request, ctx, messages, completion, chat.metadata))
                return json_response(completion, camel=camel)
            states = [new_stream(ctx, include_usage=chat.include_usage, camel=camel, index=i, closes_answer=False,
                                 max_line_bytes=config.upstream.max_line_bytes, shape=shape)
                      for i in range(chat.n)]
            del ollama
            try:
                return await relay_many(request, chat.model, bodies, states, reader)
            finally:
                count_stream_tokens(outcome, *states)
                if any(state.error is not None for state in states):
                    outcome.error = outcome.error or "mid_stream"
    async with (
        request.app[ADMISSION].slot(chat.model, request),  # given back however the answer ends
        account(request, "chat.completions", chat.model, stream=chat.stream) as outcome,
    ):
        if not chat.stream:
            answer = whole_answer(await client.request_json("POST", "/api/chat", ollama))
            outcome.count_tokens(answer)
            completion = to_completion(answer, ctx, shape)
            if keep and service is not None:
                service.save_chat(_record(request, ctx, messages, completion, chat.metadata))
            return json_response(completion, camel=camel)
        state = new_stream(ctx, include_usage=chat.include_usage, camel=camel,
                           max_line_bytes=config.upstream.max_line_bytes, shape=shape)
        metadata = chat.metadata
        call = client.open("POST", "/api/chat", ollama)
        del chat, ollama  # JSON bytes in the call now, dropped once sent: not held for the stream
        # Only a stream to be stored is assembled beside its translation; others are untouched.
        assembly = StreamAssembly() if keep and service is not None else None
        frames = reader if assembly is None else _assembling(assembly, reader)
        async with call as upstream:
            response = await relay_stream(request, client, upstream, state, frames, outcome)
        if assembly is not None and service is not None and state.done and state.error is None \
                and outcome.error is None:  # complete answers only
            sent = iter(call_ids)  # the tool-call ids the stream gave out, in the same order
            replay = ResponseContext(ctx.id, ctx.created, ctx.model, lambda: next(sent, None) or new_id("call_"))
            completion = to_completion(assembly.answer(), replay, shape)
            service.save_chat(_record(request, ctx, messages, completion, metadata))
        return response


def _assembling(assembly: StreamAssembly, reader: Reader) -> Reader:
    """The stream's reader that also hands each read to the assembly (stored streams only)."""

    def frames(state: StreamState, data: bytes) -> bytes:
        assembly.feed(data)
        return reader(state, data)

    return frames


def _recording(ids: list[str]) -> Callable[[], str]:
    """New tool-call ids, remembered so the stored answer carries the ids the stream sent."""

    def new_call_id() -> str:
        ids.append(call_id := new_id("call_"))
        return call_id

    return new_call_id


def _record(request: web.Request, ctx: ResponseContext, messages: Any, completion: dict[str, Any],
            metadata: dict[str, str] | None) -> ChatRecord:
    return ChatRecord(ctx.id, caller(request).key_id, ctx.created, ctx.model,
                      messages if isinstance(messages, list) else [], completion, metadata or {})
