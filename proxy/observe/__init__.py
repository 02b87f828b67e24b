"""Metrics, traces and the structured access record; each loaded only when configured on."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import CONFIG
from ..config import Config
from ..gates.pipeline import Gate, add_gate

__all__ = ["install", "structured_access"]


def structured_access(config: Config) -> bool:
    """The access record goes to ``proxy.access`` with its fields when logs are JSON; in text
    format aiohttp's access logger writes the line, as before."""
    return config.log.access and getattr(config.log, "format", "text") == "json"


def install(app: web.Application) -> None:
    """Add what ``[metrics]``, ``[tracing]`` and ``[log]`` ask for to ``app``: its gates take their
    places in the pipeline just inside the error envelope, tracing outermost so its span covers
    the rest; with all three off nothing is added (and neither prometheus_client nor
    OpenTelemetry is imported)."""
    config = app[CONFIG]
    if config.tracing.enabled:
        from .tracing import install_tracing

        add_gate(app, Gate("tracing", install_tracing(app)))
    if config.metrics.enabled:
        from .web import install_metrics

        install_metrics(app)
    access = structured_access(config)
    if config.metrics.enabled or access:
        from .metrics import METRICS
        from .web import observe_middleware

        add_gate(app, Gate("observe", observe_middleware(app.get(METRICS), access)))
