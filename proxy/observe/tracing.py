"""OpenTelemetry traces: one SERVER span per request, one CLIENT span per call to Ollama.

Imported only when ``[tracing] enabled`` (the ``tracing`` extra brings the SDK and the OTLP
exporter), so a proxy without it pays nothing. A caller's W3C ``traceparent`` is honoured: the
SERVER span continues the caller's trace. Every call to Ollama made while serving a request gets
a CLIENT span, and its ``traceparent`` goes on to Ollama, so a trace-aware gateway in front of
Ollama joins the same trace. Background calls (the health probe, the model-label refresh) belong
to no request and are not traced.

A call that generates (``/api/chat``, ``/api/generate``, ``/api/embed``) is a GenAI span named
``{operation} {model}`` with the GenAI semantic-convention attributes; its end, tokens and finish
reason come from the request's ``Outcome`` (``on_outcome``), since a stream's body outlives the
response head that aiohttp's client hooks report. Any span still open when the request ends
(a pass-through relay) is ended by the SERVER span's middleware.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..appkeys import CONFIG, UPSTREAM_TRACES
from ..config import TracingConfig
from ..errors import ProxyError
from ..upstream.outcome import CLIENT_CLOSED, OUTCOME_LISTENERS, Outcome

__all__ = ["OPERATIONS", "SPAN_EXPORTER", "TRACING", "Tracing", "install_tracing"]

log = logging.getLogger("proxy.tracing")

# Ollama's generating endpoints → gen_ai.operation.name (GenAI semantic conventions).
OPERATIONS = {"/api/chat": "chat", "/api/generate": "text_completion", "/api/embed": "embeddings"}


class Tracing:
    """The tracer of one app and the hooks that make its spans."""

    def __init__(self, config: TracingConfig) -> None:
        self.config = config
        self.provider: TracerProvider | None = None
        self.tracer: trace.Tracer = trace.NoOpTracer()
        self.propagator = TraceContextTextMapPropagator()
        # The open CLIENT span of the request being served (a request's task has its own).
        self._client_span: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
            "ollama_client_span", default=None)

    def start(self, exporter: SpanExporter | None) -> None:
        """Set up the provider: OTLP/HTTP in batches, or ``exporter`` span by span (tests)."""
        config = self.config
        provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        )
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.endpoint or None)))
        else:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.provider = provider
        self.tracer = provider.get_tracer("ollama-openai-proxy")

    async def shutdown(self) -> None:
        """Flush the spans still batched; in a thread, as the export is blocking I/O that may
        take up to the exporter's time-out."""
        if self.provider is not None:
            await asyncio.to_thread(self.provider.shutdown)

    # ------------------------------------------------------------------ SERVER span

    def middleware(self) -> Middleware:
        @web.middleware
        async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
            parent = self.propagator.extract(request.headers)
            info = request.match_info
            route = info.route.resource.canonical if info.route.resource is not None and \
                info.http_exception is None else None
            span = self.tracer.start_span(
                f"{request.method} {route}" if route else request.method,
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"http.request.method": request.method, "url.path": request.path,
                            "url.scheme": request.scheme, **({"http.route": route} if route else {})},
            )
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except (ProxyError, web.HTTPException) as exc:
                status = exc.status
                raise
            except asyncio.CancelledError:
                status = CLIENT_CLOSED
                raise
            except Exception as exc:
                span.record_exception(exc)
                raise
            finally:
                self._end_client_span(None)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
                otel_context.detach(token)

        return traced

    # ------------------------------------------------------------------ CLIENT spans

    def trace_config(self) -> aiohttp.TraceConfig:
        """aiohttp client hooks: open a CLIENT span per call and send its ``traceparent``."""
        config = aiohttp.TraceConfig()
        config.on_request_start.append(self._on_request_start)
        config.on_request_end.append(self._on_request_end)
        config.on_request_exception.append(self._on_request_exception)
        return config

    async def _on_request_start(self, _session: aiohttp.ClientSession, ctx: SimpleNamespace,
                                params: aiohttp.TraceRequestStartParams) -> None:
        if not trace.get_current_span().get_span_context().is_valid:
            return  # not serving a request (probe, label refresh): no trace of its own
        self._end_client_span(None)  # a retry or a second call: the first one is over
        url = params.url
        operation = OPERATIONS.get(url.path)
        attributes: dict[str, Any] = {"http.request.method": params.method, "server.address": url.host or "",
                                      "server.port": url.port or 0}
        if operation is not None:
            attributes.update({"gen_ai.operation.name": operation, "gen_ai.provider.name": "ollama"})
        span = self.tracer.start_span(operation or params.method, kind=SpanKind.CLIENT, attributes=attributes)
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        for name, value in carrier.items():
            params.headers[name] = value
        ctx.span = span
        ctx.generating = operation is not None
        self._client_span.set(span)

    async def _on_request_end(self, _session: aiohttp.ClientSession, ctx: SimpleNamespace,
                              params: aiohttp.TraceRequestEndParams) -> None:
        span: Span | None = getattr(ctx, "span", None)
        if span is None:
            return
        span.set_attribute("http.response.status_code", params.response.status)
        if params.response.status >= 400:
            span.set_status(Status(StatusCode.ERROR))
        if not ctx.generating or params.response.status != 200:
            self._end_client_span(span)  # no outcome will follow for it (or it failed already)

    async def _on_request_exception(self, _session: aiohttp.ClientSession, ctx: SimpleNamespace,
                                    params: aiohttp.TraceRequestExceptionParams) -> None:
        span: Span | None = getattr(ctx, "span", None)
        if span is not None:
            span.record_exception(params.exception)
            span.set_status(Status(StatusCode.ERROR, type(params.exception).__name__))
            self._end_client_span(span)

    def on_outcome(self, outcome: Outcome) -> None:
        """The outcome listener: the generating call's model, tokens and finish reason; its end."""
        span = self._client_span.get()
        if span is None or not span.is_recording():
            return
        operation = OPERATIONS_BY_ENDPOINT.get(outcome.endpoint, "chat")
        span.update_name(f"{operation} {outcome.model}")
        span.set_attributes({
            "gen_ai.request.model": outcome.requested_model,  # an alias's name, as the client sent it
            "gen_ai.response.model": outcome.model,  # the Ollama model that served it
            "gen_ai.usage.input_tokens": outcome.prompt_tokens,
            "gen_ai.usage.output_tokens": outcome.completion_tokens,
        })
        reason = outcome.extra.get("finish_reason")
        if isinstance(reason, str):
            span.set_attribute("gen_ai.response.finish_reasons", (reason,))
        if outcome.error is not None:
            span.set_attribute("error.type", outcome.error)
            span.set_status(Status(StatusCode.ERROR, outcome.error))
        self._end_client_span(span)

    def _end_client_span(self, span: Span | None) -> None:
        """End ``span`` (None: whichever is open) if it is the request's open CLIENT span."""
        current = self._client_span.get()
        if current is None or (span is not None and span is not current):
            if span is not None:
                span.end()
            return
        self._client_span.set(None)
        current.end()


# Outcome endpoints → the operation of their call (named before the model was known).
OPERATIONS_BY_ENDPOINT = {"chat.completions": "chat", "completions": "text_completion",
                          "embeddings": "embeddings", "responses": "chat", "messages": "chat",
                          "messages.count_tokens": "chat"}


TRACING = web.AppKey("tracing", Tracing)
# Where finished spans go instead of OTLP when set before start-up (tests: the in-memory exporter).
SPAN_EXPORTER = web.AppKey("span_exporter", SpanExporter)


def install_tracing(app: web.Application) -> Middleware:
    """Tracing for ``app``: the client hooks, the outcome listener, the provider's lifetime;
    returns the SERVER-span middleware."""
    tracing = Tracing(app[CONFIG].tracing)
    app[TRACING] = tracing
    app[UPSTREAM_TRACES] = [tracing.trace_config()]
    app[OUTCOME_LISTENERS].append(tracing.on_outcome)
    app.cleanup_ctx.insert(0, _tracing_ctx)  # before the Ollama client: closed after it
    return tracing.middleware()


async def _tracing_ctx(app: web.Application) -> AsyncIterator[None]:
    tracing = app[TRACING]
    tracing.start(app.get(SPAN_EXPORTER))
    yield
    await tracing.shutdown()
