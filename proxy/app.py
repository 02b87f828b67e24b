"""The application factory: routes, middlewares and the lifetimes of shared things."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .access.gate import access_ctx, access_guard, decorate, meter
from .admission import Admission
from .appkeys import ADMISSION, CLIENT, CONFIG, VALIDATOR
from .config import Config
from .handlers.chat import chat_completions
from .handlers.completions import completions
from .handlers.embeddings import embeddings
from .handlers.health import health_probe_ctx, liveness, readiness
from .handlers.models import list_models, model_catalog_ctx, retrieve_model
from .handlers.passthrough import passthrough
from .inbound import body_guard, server_settings
from .middleware import error_middleware
from .outcome import OUTCOME_LISTENERS
from .upstream import OllamaClient
from .validate import Validator

__all__ = ["create_app"]


def create_app(config: Config) -> web.Application:
    """A ready-to-run proxy for ``config``; the Ollama client opens on start-up."""
    app = web.Application(
        # access_guard (Origin, Host, key, content type) before any body is read; meter (the
        # key's models and rate limits) once the body guard has read it.
        middlewares=[error_middleware, access_guard, body_guard, meter],
        client_max_size=config.limits.max_body_bytes,
        # Header limits and the keep-alive/header deadline reach every runner this way.
        handler_args=server_settings(config.server),
    )
    app[CONFIG] = config
    app[VALIDATOR] = Validator(config.limits)
    app[ADMISSION] = Admission(config.admission)
    app[OUTCOME_LISTENERS] = []  # rate-limit settlement, usage and metrics add theirs
    app.cleanup_ctx.append(access_ctx)
    app.on_response_prepare.append(decorate)  # CORS and x-ratelimit-* headers, streams included
    app.cleanup_ctx.append(_ollama_client)
    app.cleanup_ctx.append(health_probe_ctx)  # after the client: closed before it
    app.cleanup_ctx.append(model_catalog_ctx)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{id:.+}", retrieve_model)  # ids hold "/" and ":"
    app.router.add_get("/v1/health", readiness)  # add_get also answers HEAD
    app.router.add_get("/readyz", readiness)
    app.router.add_get("/livez", liveness)
    if config.passthrough.enabled:
        app.router.add_route("*", "/api/{path:.*}", passthrough)
    return app


async def _ollama_client(app: web.Application) -> AsyncIterator[None]:
    """One shared connection pool for the app's life, closed on shutdown."""
    client = OllamaClient(app[CONFIG].upstream)
    app[CLIENT] = client
    yield
    await client.close()
