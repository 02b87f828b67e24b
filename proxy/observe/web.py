"""Observability on the app: ``GET /metrics``, the middleware around every request, the
background refresh of the model labels, and the structured access record.

The middleware sits just inside the error middleware, so it sees the exception a request
ended with (a rate limit's kind, an upstream fault's class) and the status it became. It is
installed only when something needs it (metrics on, or the JSON access record): a proxy with
both off runs exactly as before.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import disable_created_metrics

from ..appkeys import ADMISSION, CATALOG, CONFIG
from ..caller import caller
from ..errors import ProxyError
from ..gates.errors import error_middleware, request_id
from ..gates.pipeline import KEYED, route
from ..translate.openai.models import model_id
from ..upstream.catalog import ModelCatalog
from ..upstream.outcome import CLIENT_CLOSED, OUTCOME, OUTCOME_LISTENERS
from .labels import ModelLabels, endpoint_of
from .metrics import METRICS, LiveGauges, Metrics

__all__ = ["ScrapeUnauthorized", "access_record", "escape", "install_metrics", "observe_middleware", "scrape"]

log = logging.getLogger("proxy.metrics")
access_log = logging.getLogger("proxy.access")


class ScrapeUnauthorized(ProxyError):
    """A scrape without the ``[metrics] token``."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


def install_metrics(app: web.Application) -> None:
    """Metrics for ``app`` (``[metrics] enabled``): the registry, the outcome listener, the
    ``/metrics`` route (or its own listener) and the background work."""
    config = app[CONFIG].metrics
    # No "_created" series beside every counter and histogram: Prometheus does not need them
    # and they double the exposition (prometheus-client's switch is process-wide).
    disable_created_metrics()  # type: ignore[no-untyped-call]
    metrics = Metrics(config, ModelLabels())
    app[METRICS] = metrics
    app[OUTCOME_LISTENERS].append(metrics.observe)
    if metrics.multiprocess_dir is None:
        metrics.registry.register(LiveGauges(app[ADMISSION], metrics.labels, config.per_key_labels))
    app[ADMISSION].on_wait = metrics.observe_wait  # only queued requests: the free-slot path pays nothing
    if not config.port:
        route(app, "GET", "/metrics", scrape, KEYED)  # behind the API key, like every route
    app.cleanup_ctx.append(_metrics_ctx)


async def scrape(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text exposition, behind the optional bearer token."""
    metrics = request.app[METRICS]
    token = metrics.config.token
    if token:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise ScrapeUnauthorized("Scraping /metrics needs the bearer token of [metrics] token.")
    return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})


async def _metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """The model-label refresher, the multiprocess sampler and the metrics listener."""
    metrics = app[METRICS]
    tasks = [asyncio.create_task(_refresh_models(app[CATALOG], metrics.labels, metrics.config.model_refresh),
                                 name="metrics model labels")]
    if metrics.multiprocess_dir is not None:
        tasks.append(asyncio.create_task(_sample(metrics, app), name="metrics sampler"))
    runner = await _listen(app, metrics) if metrics.config.port else None
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if runner is not None:
            await runner.cleanup()


async def _listen(app: web.Application, metrics: Metrics) -> web.AppRunner:
    """``/metrics`` on a port of its own: no API key there, only the optional token."""
    config = metrics.config
    own = web.Application(middlewares=[error_middleware])
    own[METRICS] = metrics
    own.router.add_get("/metrics", scrape)
    runner = web.AppRunner(own, access_log=None, handle_signals=False)
    await runner.setup()
    workers = app[CONFIG].server.workers
    site = web.TCPSite(runner, config.host, config.port, reuse_port=workers > 1 or None)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    log.info("metrics on http://%s:%d/metrics", config.host, config.port)
    return runner


async def _refresh_models(catalog: ModelCatalog, labels: ModelLabels, every: float) -> None:
    """Keep the model label set to what Ollama lists, read every ``every`` seconds (not at
    start-up: until then the models Ollama serves are learnt from its answers)."""
    while True:
        await asyncio.sleep(every)
        try:
            labels.update(model_id(tag) for tag in await catalog.tags())
        except ProxyError as exc:
            log.debug("model list for metrics labels not read: %s", exc.message)


async def _sample(metrics: Metrics, app: web.Application) -> None:
    admission = app[ADMISSION]
    while True:
        metrics.sample(admission)
        await asyncio.sleep(metrics.config.sample_interval)


def observe_middleware(metrics: Metrics | None, access: bool) -> Middleware:
    """Counts what the outcome listener cannot see and writes the structured access record."""

    @web.middleware
    async def observed(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        error: BaseException | None = None
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except (ProxyError, web.HTTPException) as exc:
            error, status = exc, exc.status
            raise
        except asyncio.CancelledError as exc:
            error, status = exc, CLIENT_CLOSED
            raise
        except Exception as exc:
            error = exc
            raise
        finally:
            outcome = request.get(OUTCOME)
            if outcome is not None and outcome.status == CLIENT_CLOSED:
                status = CLIENT_CLOSED  # a stream's headers said 200; its client left
            endpoint = outcome.endpoint if outcome is not None else endpoint_of(request)
            duration = time.monotonic() - started
            try:
                if metrics is not None:
                    metrics.http(request, endpoint, status, error, duration, outcome)
                if access:
                    access_record(request, endpoint, status, duration)
            except Exception:  # a bug in keeping account must not fail the request it counts
                log.exception("%s metrics or access record failed", request_id(request))

    return observed


# Control characters (and the Unicode line separators) in a client's text could forge log
# lines in a text log: they are written escaped.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\"\\]")
_MAX_TEXT = 256


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return "\\" + char if char in "\"\\" else char.encode("unicode_escape").decode("ascii")


def escape(text: str) -> str:
    """``text`` safe for a one-line log: control characters, quotes and backslashes escaped,
    cut to 256 characters."""
    escaped = _UNSAFE.sub(_escaped, text[:_MAX_TEXT])
    return escaped + ("..." if len(text) > _MAX_TEXT else "")


def access_record(request: web.Request, endpoint: str, status: int, duration: float) -> None:
    """One record per request on ``proxy.access``; its fields ride as ``extra`` (a JSON log
    format writes each as a key), its message is the same in one readable line."""
    outcome = request.get(OUTCOME)
    route = request.match_info.route.resource
    fields: dict[str, Any] = {
        "request_id": request_id(request),
        "method": escape(request.method),
        "route": route.canonical if route is not None and request.match_info.http_exception is None else None,
        "path": escape(request.path),
        "endpoint": endpoint,
        "status": status,
        "duration": round(duration, 6),
        "key_id": caller(request).key_id,
        "client": escape(request.remote or ""),
    }
    if outcome is not None:
        ttfb = outcome.time_to_first_byte
        fields.update(
            model=escape(outcome.model),
            requested_model=escape(outcome.requested_model),  # an alias's name; else the model
            stream=outcome.stream,
            ttfb=None if ttfb is None else round(ttfb, 6),
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            error=outcome.error,
        )
        if isinstance(user := outcome.extra.get("user"), str):  # Messages metadata.user_id: attribution
            fields["user"] = escape(user[:256])
    access_log.info('%s %s "%s %s" %d %.3fs', fields["request_id"], fields["client"], fields["method"],
                    fields["path"], status, duration, extra=fields)
