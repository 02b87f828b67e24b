"""The application factory: routes, middlewares and the lifetimes of shared things."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .access.gate import access_ctx, access_guard, decorate, meter
from .admission import Admission
from .appkeys import ADMISSION, CLIENT, CONFIG, STORE, STORE_SERVICE, UPSTREAM_TRACES, VALIDATOR
from .config import Config
from .console import add_console_routes, console_enabled
from .handlers import batches
from .handlers.anthropic import add_anthropic_routes
from .handlers.chat import chat_completions
from .handlers.completions import completions
from .handlers.embeddings import embeddings
from .handlers.health import health_probe_ctx, liveness, readiness
from .handlers.models import list_models, model_catalog_ctx, retrieve_model
from .handlers.passthrough import passthrough
from .handlers.responses import (
    create_response,
    delete_response,
    list_input_items,
    retrieve_response,
)
from .handlers.stored import (
    delete_stored,
    list_messages,
    list_stored,
    retrieve_stored,
    update_stored,
)
from .handlers.usage import completions_usage, embeddings_usage
from .inbound import body_guard, expect_guard, server_settings
from .jobs.runner import batch_runner_ctx
from .middleware import error_middleware
from .models import MODELS, ModelTable, alias_not_found
from .observe import install as install_observability
from .outcome import OUTCOME_LISTENERS
from .pool import Pool, expose_upstream, session_affinity
from .responses_store import RESPONSE_RECORDS
from .store.base import open_store
from .store.responses import StoredResponses
from .store.service import StoreService
from .validate import Validator

__all__ = ["create_app"]


def create_app(config: Config) -> web.Application:
    """A ready-to-run proxy for ``config``; the Ollama client opens on start-up."""
    app = web.Application(
        # access_guard (Origin, Host, key, content type) before any body is read; meter (the
        # key's models and rate limits) once the body guard has read it.
        # alias_not_found words Ollama's 404 for an alias's missing target (proxy/models).
        middlewares=[error_middleware, access_guard, body_guard, meter, alias_not_found],
        client_max_size=config.limits.max_body_bytes,
        # Header limits and the keep-alive/header deadline reach every runner this way.
        handler_args=server_settings(config.server),
    )
    app[CONFIG] = config
    app[VALIDATOR] = Validator(config.limits)
    app[ADMISSION] = Admission(config.admission)
    app[MODELS] = ModelTable(config.models)  # [models.aliases] and [models.defaults]; SIGHUP swaps them
    app[OUTCOME_LISTENERS] = []  # rate-limit settlement, usage and metrics add theirs
    app.cleanup_ctx.append(access_ctx)
    app.on_response_prepare.append(decorate)  # CORS and x-ratelimit-* headers, streams included
    app.cleanup_ctx.append(_ollama_client)
    if config.routing.expose_upstream:
        # X-Upstream, also on a stream's headers: configured server names only, never an address
        app.on_response_prepare.append(expose_upstream(config))
    if config.routing.sticky:
        app.middlewares.append(session_affinity)  # X-Session-Id for the pool's stickiness
    app.cleanup_ctx.append(health_probe_ctx)  # after the client: closed before it
    app.cleanup_ctx.append(model_catalog_ctx)
    # Routes with a body answer "Expect: 100-continue" themselves (413/415/417 before 100).
    app.router.add_post("/v1/chat/completions", chat_completions, expect_handler=expect_guard)
    app.router.add_post("/v1/completions", completions, expect_handler=expect_guard)
    app.router.add_post("/v1/embeddings", embeddings, expect_handler=expect_guard)
    app.router.add_post("/v1/responses", create_response, expect_handler=expect_guard)
    app.router.add_get("/v1/responses/{response_id}", retrieve_response)
    app.router.add_delete("/v1/responses/{response_id}", delete_response)
    app.router.add_get("/v1/responses/{response_id}/input_items", list_input_items)
    add_anthropic_routes(app)  # /v1/messages, /v1/messages/count_tokens
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{id:.+}", retrieve_model)  # ids hold "/" and ":"
    app.router.add_get("/v1/health", readiness)  # add_get also answers HEAD
    app.router.add_get("/readyz", readiness)
    app.router.add_get("/livez", liveness)
    if config.passthrough.enabled:
        app.router.add_route("*", "/api/{path:.*}", passthrough, expect_handler=expect_guard)
    if console_enabled(config):  # static files only; nothing on the API routes' path
        add_console_routes(app, config.console.path)
    _add_batches(app)  # always routed: with the store off they answer 400 saying so
    if config.store.enabled:
        _add_store(app)
    install_observability(app)  # [metrics], [tracing], the JSON access record: /metrics, middlewares
    return app


def _add_batches(app: web.Application) -> None:
    """The Files and Batch APIs (``proxy/handlers/batches.py``, run by ``proxy/jobs/``)."""
    r = app.router
    r.add_post("/v1/files", batches.create_file, expect_handler=expect_guard)
    r.add_get("/v1/files", batches.list_files)
    r.add_get("/v1/files/{file_id}", batches.retrieve_file)
    r.add_delete("/v1/files/{file_id}", batches.delete_file)
    r.add_get("/v1/files/{file_id}/content", batches.file_content)
    r.add_post("/v1/batches", batches.create_batch, expect_handler=expect_guard)
    r.add_get("/v1/batches", batches.list_batches)
    r.add_get("/v1/batches/{batch_id}", batches.retrieve_batch)
    r.add_post("/v1/batches/{batch_id}/cancel", batches.cancel_batch, name="batches.cancel")


def _add_store(app: web.Application) -> None:
    """Usage accounting and stored completions; with the store off none of this exists."""
    app.cleanup_ctx.append(_store)
    app.router.add_get("/v1/chat/completions", list_stored)
    app.router.add_get("/v1/chat/completions/{id}", retrieve_stored)
    app.router.add_post("/v1/chat/completions/{id}", update_stored, expect_handler=expect_guard)
    app.router.add_delete("/v1/chat/completions/{id}", delete_stored)
    app.router.add_get("/v1/chat/completions/{id}/messages", list_messages)
    app.router.add_get("/v1/organization/usage/completions", completions_usage)
    app.router.add_get("/v1/organization/usage/embeddings", embeddings_usage)
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
