"""The application factory: routes with their kinds, the gate pipeline and the lifetimes of shared things."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .appkeys import ADMISSION, CLIENT, CONFIG, STORE, STORE_SERVICE, UPSTREAM_TRACES, VALIDATOR
from .config import Config
from .console import add_console_routes, console_enabled
from .gates.access import access_ctx, access_guard, decorate, meter, metering
from .gates.body import body_guard, server_settings
from .gates.drain import DRAIN, Drain, close_while_draining
from .gates.errors import error_middleware
from .gates.pipeline import (
    EMBED,
    GENERATE,
    KEYED,
    PASSTHROUGH,
    PROBE,
    STATIC,
    UPDATE,
    UPLOAD,
    Gate,
    Kind,
    add_gate,
    add_hook,
    declare,
    rebuild,
    route,
)
from .gates.pipeline import install as install_pipeline
from .gates.reload import ON_RELOAD
from .gates.resolve import MODELS, ModelTable, alias_not_found
from .handlers import batches
from .handlers.admin.stored import (
    delete_stored,
    list_messages,
    list_stored,
    retrieve_stored,
    update_stored,
)
from .handlers.admin.usage import completions_usage, embeddings_usage
from .handlers.anthropic import count_tokens, create_message
from .handlers.health import health_probe_ctx, liveness, readiness
from .handlers.openai.chat import chat_completions
from .handlers.openai.completions import completions
from .handlers.openai.embeddings import embeddings
from .handlers.openai.models import list_models, model_catalog_ctx, retrieve_model
from .handlers.openai.responses import (
    create_response,
    delete_response,
    list_input_items,
    retrieve_response,
)
from .handlers.passthrough import passthrough
from .jobs.runner import batch_runner_ctx
from .models.limits import Validator
from .observe import install as install_observability
from .store.backends import open_store
from .store.reasoning_key import REASONING_KEY, ReasoningKey
from .store.records import RESPONSE_RECORDS
from .store.responses import StoredResponses
from .store.service import StoreService
from .upstream.admission import Admission
from .upstream.outcome import OUTCOME_LISTENERS
from .upstream.pool import Pool, expose_upstream, session_affinity

__all__ = ["create_app"]


def create_app(config: Config) -> web.Application:
    """A ready-to-run proxy for ``config``; the Ollama client opens on start-up."""
    app = web.Application(
        client_max_size=config.limits.max_body_bytes,
        # Header limits and the keep-alive/header deadline reach every runner this way.
        handler_args=server_settings(config.server),
    )
    app[CONFIG] = config
    app[VALIDATOR] = Validator(config.limits)
    app[ADMISSION] = Admission(config.admission)
    app[MODELS] = ModelTable(config.models)  # [models.aliases] and [models.defaults]; SIGHUP swaps them
    app[REASONING_KEY] = ReasoningKey(config.responses)  # read at the first sealed reasoning
    app[OUTCOME_LISTENERS] = []  # rate-limit settlement, usage and metrics add theirs
    # One middleware and one response hook run every gate in pipeline.ORDER: access (Origin,
    # Host, key, content type) before any body is read; meter (the key's models and rate
    # limits) once the body guard has read it, and only while some key has models or limits.
    install_pipeline(app)
    app[ON_RELOAD] = []
    app[ON_RELOAD].append(rebuild)  # SIGHUP's new keys may need the meter, or no longer
    add_gate(app, Gate("errors", error_middleware))
    add_gate(app, Gate("access", access_guard))
    add_gate(app, Gate("body", body_guard))
    add_gate(app, Gate("meter", meter, takes=Kind.json, needed=metering))
    # An alias's missing target named in Ollama's 404 (proxy/models); only while aliases exist.
    add_gate(app, Gate("aliases", alias_not_found, takes=Kind.json, needed=_has_aliases))
    app[DRAIN] = Drain()  # SIGUSR1 (server.py) before a stop: /readyz 503, Connection: close
    add_hook(app, close_while_draining)
    app.cleanup_ctx.append(access_ctx)
    add_hook(app, decorate)  # CORS and x-ratelimit-* headers, streams included
    app.cleanup_ctx.append(_ollama_client)
    if config.routing.expose_upstream:
        # X-Upstream, also on a stream's headers: configured server names only, never an address
        add_hook(app, expose_upstream(config))
    if config.routing.sticky:
        add_gate(app, Gate("affinity", session_affinity))  # X-Session-Id for the pool's stickiness
    app.cleanup_ctx.append(health_probe_ctx)  # after the client: closed before it
    app.cleanup_ctx.append(model_catalog_ctx)
    # Each route is registered once, with its kind: the pipeline decides the gates it passes.
    route(app, "POST", "/v1/chat/completions", chat_completions, GENERATE)
    route(app, "POST", "/v1/completions", completions, GENERATE)
    route(app, "POST", "/v1/embeddings", embeddings, EMBED)
    route(app, "POST", "/v1/responses", create_response, GENERATE)
    route(app, "GET", "/v1/responses/{response_id}", retrieve_response, KEYED)
    route(app, "DELETE", "/v1/responses/{response_id}", delete_response, KEYED)
    route(app, "GET", "/v1/responses/{response_id}/input_items", list_input_items, KEYED)
    route(app, "POST", "/v1/messages", create_message, GENERATE)  # Anthropic's Messages API
    route(app, "POST", "/v1/messages/count_tokens", count_tokens, EMBED)  # a prompt evaluation: no answer
    route(app, "GET", "/v1/models", list_models, KEYED)
    route(app, "GET", "/v1/models/{id:.+}", retrieve_model, KEYED)  # ids hold "/" and ":"
    route(app, "GET", "/v1/health", readiness, PROBE)  # a GET route also answers HEAD
    route(app, "GET", "/readyz", readiness, PROBE)
    route(app, "GET", "/livez", liveness, PROBE)
    if config.passthrough.enabled:
        route(app, "*", "/api/{path:.*}", passthrough, PASSTHROUGH)
    if console_enabled(config):  # static files only; nothing on the API routes' path
        add_console_routes(app, config.console.path)
        for added in app.router.routes():
            if (added.name or "").startswith("console."):
                declare(app, added, STATIC)
    _add_batches(app)  # always routed: with the store off they answer 400 saying so
    if config.store.enabled:
        _add_store(app)
    install_observability(app)  # [metrics], [tracing], the JSON access record: /metrics, middlewares
    return app


def _has_aliases(app: web.Application) -> bool:
    return bool(app[MODELS].aliases)


def _add_batches(app: web.Application) -> None:
    """The Files and Batch APIs (``proxy/handlers/batches.py``, run by ``proxy/jobs/``)."""
    route(app, "POST", "/v1/files", batches.create_file, UPLOAD)  # multipart: no JSON, no inference
    route(app, "GET", "/v1/files", batches.list_files, KEYED)
    route(app, "GET", "/v1/files/{file_id}", batches.retrieve_file, KEYED)
    route(app, "DELETE", "/v1/files/{file_id}", batches.delete_file, KEYED)
    route(app, "GET", "/v1/files/{file_id}/content", batches.file_content, KEYED)
    # A batch costs nothing until its lines run, each metered as the request it is.
    route(app, "POST", "/v1/batches", batches.create_batch, UPDATE)
    route(app, "GET", "/v1/batches", batches.list_batches, KEYED)
    route(app, "GET", "/v1/batches/{batch_id}", batches.retrieve_batch, KEYED)
    route(app, "POST", "/v1/batches/{batch_id}/cancel", batches.cancel_batch, UPDATE)


def _add_store(app: web.Application) -> None:
    """Usage accounting and stored completions; with the store off none of this exists."""
    app.cleanup_ctx.append(_store)
    route(app, "GET", "/v1/chat/completions", list_stored, KEYED)
    route(app, "GET", "/v1/chat/completions/{id}", retrieve_stored, KEYED)
    route(app, "POST", "/v1/chat/completions/{id}", update_stored, UPDATE)
    route(app, "DELETE", "/v1/chat/completions/{id}", delete_stored, KEYED)
    route(app, "GET", "/v1/chat/completions/{id}/messages", list_messages, KEYED)
    route(app, "GET", "/v1/organization/usage/completions", completions_usage, KEYED)
    route(app, "GET", "/v1/organization/usage/embeddings", embeddings_usage, KEYED)
    if app[CONFIG].batches.enabled:
        app.cleanup_ctx.append(batch_runner_ctx)  # after the store: stopped before it closes


async def _store(app: web.Application) -> AsyncIterator[None]:
    """Open and migrate the store at start; flush what is pending and close it on a graceful stop."""
    config = app[CONFIG].store
    store = await open_store(config.url, pool_size=config.pool_size, busy_timeout=config.busy_timeout)
    service = StoreService(store, config)
    app[STORE] = store
    app[STORE_SERVICE] = service
    app[RESPONSE_RECORDS] = StoredResponses(store, config.responses)
    app[OUTCOME_LISTENERS].append(service.usage.listen)
    service.start()
    yield
    await service.stop()


async def _ollama_client(app: web.Application) -> AsyncIterator[None]:
    """The pool of Ollama servers (one connection pool each) for the app's life."""
    client = Pool(app[CONFIG], trace_configs=app.get(UPSTREAM_TRACES))
    app[CLIENT] = client
    client.start()  # with two or more servers: probes and discovery in the background
    yield
    await client.close()
