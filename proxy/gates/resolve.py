"""Operator-side models: ``[models.aliases]`` and ``[models.defaults]`` (docs/models.md).

The one place a request's model is resolved is ``resolve_model(request, body)``: every route
whose body names a model calls it once, right after parsing the body and before anything looks
at the model (the model gates, ``[limits]``, the key's model list, admission and routing). It
puts the Ollama model in ``body["model"]`` and returns a ``Resolved`` with both names. A new route
(Anthropic ``/v1/messages``, a batch line) gets aliases the same way::

    body = await read_json_object(request)
    names = resolve_model(request, body)          # body["model"] is now Ollama's model
    limits = request.app[VALIDATOR].check(body, names.requested)
    ...translate...
    ollama = await fill_defaults(request, ollama, limits)   # per-model defaults, client wins
    ...answer with names.requested as the model id...

Work done outside a request (a batch line) calls ``app[MODELS].resolve(name)`` and
``resolved.defaults.fill(body, limits)`` directly. The access record, metrics and usage get the
requested name from ``account()`` (``proxy/upstream/outcome.py``), which reads what ``resolve_model`` left
on the request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ..appkeys import CATALOG, CONFIG
from ..errors import InvalidRequest, ModelNotFound
from ..models.aliases import Alias, Aliases
from ..models.defaults import NO_DEFAULTS, Defaults, DefaultsTable
from ..models.limits import Limits
from ..models.table import ModelTable, Resolved
from ..upstream.outcome import OUTCOME, REQUESTED_MODEL

__all__ = [
    "MODELS", "NO_DEFAULTS", "RESOLVED", "Alias", "Aliases", "Defaults", "DefaultsTable", "ModelTable",
    "Resolved", "alias_not_found", "check_name", "fill_defaults", "models_ctx", "resolve_model",
]  # fmt: skip

MODELS = web.AppKey("model_table", ModelTable)
# What resolve_model found for this request: the meter and the handler parse the body apart,
# and both must see the same names even if SIGHUP swaps the table in between.
RESOLVED = web.RequestKey("resolved_model", Resolved)
_NONE = Resolved("", "")


def check_name(name: str, param: str) -> None:
    """A name that reaches Ollama holds no NUL (Go strings may; Ollama's C code stops at it)."""
    if "\x00" in name:
        raise InvalidRequest(f"'{param}' must not contain NUL characters.", param=param, code="invalid_value")


def resolve_model(request: web.Request, body: dict[str, Any], field: str = "model") -> Resolved:
    """Resolve ``body[field]``: the alias's target goes in its place; both names come back.

    Call it once per request body, before the model gates; a body without a string model
    comes back unchanged (the translation refuses it in its own words).
    """
    name = body.get(field)
    if not isinstance(name, str):
        return _NONE
    check_name(name, field)
    resolved: Resolved | None = request.get(RESOLVED)
    # Asked again (the meter, then the handler) the body may name the target already: the same.
    if resolved is None or name not in (resolved.requested, resolved.served):
        resolved = request.app[MODELS].resolve(name)
        request[RESOLVED] = resolved
        request[REQUESTED_MODEL] = name
    body[field] = resolved.served
    return resolved


async def fill_defaults(request: web.Request, body: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Ollama's request ``body`` with the request's per-model defaults where the client set
    nothing (a new dict, or ``body`` itself when there is nothing to add)."""
    resolved: Resolved | None = request.get(RESOLVED)
    if resolved is None or not resolved.defaults:
        return body
    defaults = resolved.defaults
    context_length = None
    options = body.get("options")
    if defaults.wants_context_length and not (isinstance(options, dict) and "num_ctx" in options):
        context_length = await request.app[CATALOG].context_length(resolved.served)  # cached by digest
    return defaults.fill(body, limits, context_length)


@web.middleware
async def alias_not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Ollama lacks an alias's target: say so naming both, not "``llama9`` does not exist" to a
    client that asked for ``gpt-5-mini``. Only for a request that reached Ollama (its outcome
    exists); a gate's 404 keeps its own words."""
    try:
        return await handler(request)
    except ModelNotFound:
        resolved = request.get(RESOLVED)
        if resolved is None or resolved.alias is None or OUTCOME not in request:
            raise
        raise ModelNotFound(
            f"The model `{resolved.requested}` is an alias (models.aliases.\"{resolved.alias.pattern}\") "
            f"for `{resolved.served}`, which Ollama does not have.", param="model") from None


async def models_ctx(app: web.Application) -> AsyncIterator[None]:
    """The model table for the app's life (SIGHUP reloads it in place)."""
    app[MODELS] = ModelTable(app[CONFIG].models)
    yield
