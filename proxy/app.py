"""The application factory: routes, middlewares and the lifetimes of shared things."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .admission import Admission
from .appkeys import ADMISSION, CLIENT, CONFIG, VALIDATOR
from .config import Config
from .handlers.chat import chat_completions
from .handlers.completions import completions
from .handlers.embeddings import embeddings
from .handlers.health import health_probe_ctx, liveness, readiness
from .handlers.models import list_models, model_catalog_ctx, retrieve_model
from .handlers.passthrough import passthrough
from .inbound import body_guard, expect_guard, server_settings
from .middleware import error_middleware
from .upstream import OllamaClient
from .validate import Validator

__all__ = ["create_app"]


def create_app(config: Config) -> web.Application:
    """A ready-to-run proxy for ``config``; the Ollama client opens on start-up."""
    app = web.Application(
        middlewares=[error_middleware, body_guard],
        client_max_size=config.limits.max_body_bytes,
        # Header limits and the keep-alive/header deadline reach every runner this way.
        handler_args=server_settings(config.server),
    )
    app[CONFIG] = config
    app[VALIDATOR] = Validator(config.limits)
    app[ADMISSION] = Admission(config.admission)
    app.cleanup_ctx.append(_ollama_client)
    app.cleanup_ctx.append(health_probe_ctx)  # after the client: closed before it
    app.cleanup_ctx.append(model_catalog_ctx)
    # Routes with a body answer "Expect: 100-continue" themselves (413/415/417 before 100).
    app.router.add_post("/v1/chat/completions", chat_completions, expect_handler=expect_guard)
    app.router.add_post("/v1/completions", completions, expect_handler=expect_guard)
    app.router.add_post("/v1/embeddings", embeddings, expect_handler=expect_guard)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{id:.+}", retrieve_model)  # ids hold "/" and ":"
    app.router.add_get("/v1/health", readiness)  # add_get also answers HEAD
    app.router.add_get("/readyz", readiness)
    app.router.add_get("/livez", liveness)
    if config.passthrough.enabled:
        app.router.add_route("*", "/api/{path:.*}", passthrough, expect_handler=expect_guard)
    return app


async def _ollama_client(app: web.Application) -> AsyncIterator[None]:
    """One shared connection pool for the app's life, closed on shutdown."""
    client = OllamaClient(app[CONFIG].upstream)
    app[CLIENT] = client
    yield
    await client.close()
