"""Metrics, traces and the structured access record; each loaded only when configured on."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..appkeys import CONFIG
from ..config import Config
from ..middleware import error_middleware

__all__ = ["install", "structured_access"]


def structured_access(config: Config) -> bool:
    """The access record goes to ``proxy.access`` with its fields when logs are JSON; in text
    format aiohttp's access logger writes the line, as before."""
    return config.log.access and getattr(config.log, "format", "text") == "json"


def install(app: web.Application) -> None:
    """Add what ``[metrics]``, ``[tracing]`` and ``[log]`` ask for to ``app``. Its middlewares go
    just inside the error middleware, tracing outermost so its span covers the rest; with all
    three off nothing is added (and neither prometheus_client nor OpenTelemetry is imported)."""
    config = app[CONFIG]
    middlewares: list[Middleware] = []
    if config.tracing.enabled:
        from .tracing import install_tracing

        middlewares.append(install_tracing(app))
    if config.metrics.enabled:
        from .web import install_metrics

        install_metrics(app)
    access = structured_access(config)
    if config.metrics.enabled or access:
        from .metrics import METRICS
        from .web import observe_middleware

        middlewares.append(observe_middleware(app.get(METRICS), access))
    at = 1 if app.middlewares and app.middlewares[0] is error_middleware else 0
    for offset, middleware in enumerate(middlewares):
        app.middlewares.insert(at + offset, middleware)
