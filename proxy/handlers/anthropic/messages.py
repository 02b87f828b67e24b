"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: validate, translate, call Ollama,
answer or stream, exactly as chat completions do (admission, accounting, the stream relay)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from aiohttp import web

from ...appkeys import ADMISSION, CATALOG, CLIENT, CONFIG, VALIDATOR
from ...caller import caller
from ...errors import UpstreamError
from ...gates.errors import request_id
from ...gates.resolve import fill_defaults, resolve_model
from ...models.limits import with_defaults
from ...store.reasoning_key import REASONING_KEY
from ...translate.anthropic import (
    PING,
    AnswerShape,
    MessageContext,
    MessagesRequest,
    MessagesStream,
    Signer,
    StopCollector,
    error_event,
    frames_for_read,
    from_anthropic,
    new_stream,
    to_message,
)  # fmt: skip
from ...upstream.admission import SERVICE_TIER
from ...upstream.outcome import account
from ..common import (
    check_ollama_extras,
    json_response,
    new_id,
    read_json_object,
    relay_stream,
    whole_answer,
)

__all__ = ["DROPPED_TOOLS_HEADER", "count_tokens", "create_message"]

log = logging.getLogger("proxy.anthropic")

DROPPED_TOOLS_HEADER = "X-Ollama-Proxy-Dropped-Tools"
_TIERS = {"auto": "auto", "standard_only": "default"}  # Anthropic's service tiers → admission's


async def signing_key(app: web.Application) -> bytes:
    """The key thinking signatures are made with (translate/anthropic/signature.py): the Responses
    API's sealing key (``[responses] reasoning_key``, its key file, or one per process), with a
    purpose of its own, so a signature outlives a restart and holds across workers and replicas
    exactly as sealed reasoning does."""
    return hmac.new(await app[REASONING_KEY].get(), b"anthropic thinking signature", hashlib.sha256).digest()


async def _translated(request: web.Request,
                      body: dict[str, Any]) -> tuple[MessagesRequest, Signer, dict[str, Any], str]:
    """The request checked against ``[limits]`` and translated: Ollama's body with the model's
    defaults, and the model name the client asked for (an alias's, as Anthropic answers it)."""
    names = resolve_model(request, body)  # [models.aliases]: body["model"] is Ollama's model now
    tier = body.get("service_tier")  # Anthropic's "auto" / "standard_only": the key's class / the default one
    if tier in _TIERS:
        request[SERVICE_TIER] = _TIERS[tier]
    limits = request.app[VALIDATOR].check(body, names.requested)
    signer = Signer(await signing_key(request.app), caller(request).key_id)
    refuse = request.app[CONFIG].anthropic.server_tools == "refuse"
    messages = from_anthropic(body, signer, refuse_server_tools=refuse)
    await check_ollama_extras(request, messages.body, limits)
    ollama = await fill_defaults(request, messages.body, limits)
    if "think" not in ollama:
        ollama = {**ollama, "think": False}  # no thinking asked (nor a model default): none, as Anthropic
    ollama = with_defaults(await _thinking_if_able(request, ollama), limits)
    return messages, signer, ollama, names.requested or messages.model


async def _thinking_if_able(request: web.Request, ollama: dict[str, Any]) -> dict[str, Any]:
    """Ollama's body without ``think`` for a model that cannot think: Ollama refuses ``think``
    there with a 400, while an Anthropic client (Claude Code asks for adaptive thinking on every
    request) means "think if you can" — so it is relaxed, as Ollama's own Anthropic layer does."""
    if not ollama.get("think"):
        return ollama
    capabilities = await request.app[CATALOG].capabilities(ollama["model"])
    if capabilities is None or "thinking" in capabilities:
        return ollama
    log.debug("%s cannot think: the request's thinking is left out", ollama["model"])
    return {key: value for key, value in ollama.items() if key != "think"}


def _headers(request: web.Request, messages: MessagesRequest) -> dict[str, str]:
    headers = {"request-id": request_id(request)}
    if messages.dropped:
        headers[DROPPED_TOOLS_HEADER] = ", ".join(messages.dropped)
    return headers


async def create_message(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    client = request.app[CLIENT]
    body = await read_json_object(request)
    messages, signer, ollama, requested = await _translated(request, body)
    del body  # translated; a long conversation is not held twice
    model = messages.model
    ctx = MessageContext(new_id("msg_"), requested, lambda: new_id("toolu_"), signer)
    shape = AnswerShape(messages.forced, messages.one_tool_call, messages.show_thinking, messages.stop_sequences)
    headers = _headers(request, messages)
    async with (
        request.app[ADMISSION].slot(model, request),  # given back however the answer ends
        account(request, "messages", model, stream=messages.stream) as outcome,
    ):
        if messages.user_id is not None:
            outcome.extra["user"] = messages.user_id  # attribution only; never sent to Ollama
        if not messages.stream:
            matched = None
            if shape.stop_sequences:
                answer, matched = await _until_stop(request, ollama, shape.stop_sequences)
            else:
                answer = whole_answer(await client.request_json("POST", "/api/chat", ollama))
            outcome.count_tokens(answer)
            response = json_response(to_message(answer, ctx, shape, matched))
            response.headers.update(headers)
            return response
        state = new_stream(ctx, shape, max_line_bytes=config.upstream.max_line_bytes)
        call = client.open("POST", "/api/chat", ollama)
        del messages, ollama  # JSON bytes in the call now, dropped once sent
        async with call as upstream:
            return await relay_stream(request, client, upstream, state, frames_for_read, outcome,
                                      fault_frame=error_event, headers=headers, cut_short=_stopped,
                                      keepalive=(PING, config.anthropic.ping_interval))


def _stopped(state: MessagesStream) -> bool:
    return state.ended_by_stop


async def _until_stop(request: web.Request, ollama: dict[str, Any],
                      stops: tuple[str, ...]) -> tuple[dict[str, Any], str | None]:
    """A non-streamed answer with ``stop_sequences``: read as a stream so the proxy sees which
    stop sequence ends it (and closes Ollama's stream there, which stops its generation)."""
    client = request.app[CLIENT]
    limit = request.app[CONFIG].upstream.max_answer_bytes
    collector = StopCollector(stops)
    read = 0
    async with client.open("POST", "/api/chat", {**ollama, "stream": True}) as upstream:
        with client.idle_timer() as timer:
            while data := await timer.read(upstream.content):
                read += len(data)
                if read > limit:
                    raise UpstreamError(f"Ollama's answer is larger than {limit} bytes (upstream.max_answer_bytes).",
                                        code="upstream_answer_too_large")
                if collector.feed(data):
                    break
    if not collector.done:
        raise UpstreamError("Ollama ended the stream before it was complete.")
    return collector.answer()


async def count_tokens(request: web.Request) -> web.Response:
    """``{"input_tokens": N}``: Ollama's own count of the prompt the same body would be, from
    a prompt evaluation that generates one token (Ollama's ``prompt_eval_count`` includes the
    cached prefix, so the count is exact and a repeat costs little; docs/anthropic.md)."""
    client = request.app[CLIENT]
    body = await read_json_object(request)
    body.setdefault("max_tokens", 1)  # count_tokens takes no max_tokens
    messages, _, ollama, _ = await _translated(request, body)
    del body
    ollama = {**ollama, "stream": False, "options": {**(ollama.get("options") or {}), "num_predict": 1}}
    async with (
        request.app[ADMISSION].slot(messages.model, request),
        account(request, "messages.count_tokens", messages.model) as outcome,
    ):
        answer = whole_answer(await client.request_json("POST", "/api/chat", ollama))
        outcome.count_tokens(answer)
    response = json_response({"input_tokens": int(answer.get("prompt_eval_count") or 0)})
    response.headers.update(_headers(request, messages))
    return response
