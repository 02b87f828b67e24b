"""``GET /v1/models`` and ``GET /v1/models/{id}``: Ollama's models with their details.

Both read ``/api/tags`` (so a new or removed model shows at once) and take the details from
the ``ModelCatalog`` (cached by digest). Ids contain ``/`` and ``:`` (``hf.co/org/repo:Q4_K_M``),
so the route takes the rest of the path; the SDK sends ``/`` as ``%2F``, which aiohttp decodes
into the same id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ...appkeys import CATALOG, CLIENT, CONFIG, VALIDATOR
from ...errors import ModelNotFound
from ...gates.access import key_allows
from ...gates.resolve import MODELS, check_name
from ...translate.anthropic.models import to_anthropic_model, to_anthropic_model_list
from ...translate.openai.models import find_tag, model_id, to_model, to_model_list
from ...upstream.catalog import ModelCatalog
from ..common import json_response

__all__ = ["list_models", "model_catalog_ctx", "retrieve_model"]


async def list_models(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    validator = request.app[VALIDATOR]
    # Only what a client may use is listed: the allowed/denied model gates and the key's
    # own model list apply here too.
    tags = await catalog.tags()
    entries = [tag for tag in tags
               if validator.allows(name := model_id(tag)) and key_allows(request, name)]
    listed = await catalog.with_details(entries, prune=True)
    models = to_model_list(listed)
    for model in models["data"]:
        _place(request, model)
    models["data"].extend(await _aliases(request, tags))
    if "anthropic-version" in request.headers:  # Anthropic's SDKs: its list shape
        return json_response(to_anthropic_model_list(models))
    return json_response(models, camel=request.app[CONFIG].response.keys == "camel")


async def _aliases(request: web.Request, tags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The exact aliases whose target Ollama has and the caller may use, each as a model object
    with the alias's id, the target's details, and ``alias_for`` naming the target. A glob
    alias (``gpt-5*``) names no one id, so it is not listed (``/v1/models/{id}`` answers it)."""
    validator = request.app[VALIDATOR]
    listed: list[dict[str, Any]] = []
    for alias in request.app[MODELS].aliases.exact():
        tag = find_tag(tags, alias.target)
        if tag is None or not validator.allows(alias.target, alias.pattern) \
                or not key_allows(request, alias.target, alias.pattern):
            continue
        model = _place(request, to_model(tag, await request.app[CATALOG].details(tag)))
        listed.append({**model, "id": alias.pattern, "alias_for": model["id"]})
    return listed


async def retrieve_model(request: web.Request) -> web.Response:
    wanted = request.match_info["id"]
    check_name(wanted, "model")
    resolved = request.app[MODELS].resolve(wanted)  # an alias: its target's details, its own id
    served = resolved.served
    catalog = request.app[CATALOG]
    tag = find_tag(await catalog.tags(), served)
    if tag is None or not request.app[VALIDATOR].allows(model_id(tag), wanted) \
            or not key_allows(request, model_id(tag), wanted):
        raise ModelNotFound(f"The model '{wanted}' does not exist.", param="model")
    model = _place(request, to_model(tag, await catalog.details(tag)))
    if resolved.alias is not None:
        model = {**model, "id": wanted, "alias_for": model["id"]}
    if "anthropic-version" in request.headers:
        return json_response(to_anthropic_model(model))
    return json_response(model, camel=request.app[CONFIG].response.keys == "camel")


def _place(request: web.Request, model: dict[str, Any]) -> dict[str, Any]:
    """With several servers: ``upstreams``, which have the model and which have it loaded
    (an extra field, which OpenAI clients ignore)."""
    placement = request.app[CLIENT].placement(model["id"])
    if placement is not None:
        model["upstreams"] = placement
    return model


async def model_catalog_ctx(app: web.Application) -> AsyncIterator[None]:
    """The details cache for the app's life (after the Ollama client; closed before it)."""
    catalog = ModelCatalog(app[CLIENT], app[CONFIG].models)
    app[CATALOG] = catalog
    yield
    await catalog.close()
