"""The application factory: routes, middlewares and the lifetimes of shared things."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .appkeys import CLIENT, CONFIG
from .config import Config
from .handlers.chat import chat_completions
from .middleware import error_middleware
from .upstream import OllamaClient

__all__ = ["create_app"]


def create_app(config: Config) -> web.Application:
    """A ready-to-run proxy for ``config``; the Ollama client opens on start-up."""
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=config.limits.max_body_bytes,
    )
    app[CONFIG] = config
    app.cleanup_ctx.append(_ollama_client)
    app.router.add_post("/v1/chat/completions", chat_completions)
    return app


async def _ollama_client(app: web.Application) -> AsyncIterator[None]:
    """One shared connection pool for the app's life, closed on shutdown."""
    client = OllamaClient(app[CONFIG].upstream)
    app[CLIENT] = client
    yield
    await client.close()
