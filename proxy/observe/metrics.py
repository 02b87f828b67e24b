"""The proxy's Prometheus metrics (prometheus-client) and the two places that update them.

Ollama has no ``/metrics``, so the proxy is where an operator sees time to first token, token
rates, queueing and faults. Updates happen at two points per request, never per chunk:

* ``observe`` is an outcome listener (``proxy/upstream/outcome.py``): once per request to Ollama, at its
  end, it adds the request, its tokens, time to first token, time per output token,
  Ollama's own load and prompt-evaluation times, and how it ended.
* ``http`` runs in the metrics middleware: every request's duration from its arrival, and the
  requests that never reached Ollama (a 400, a 404, a rate limit, an admission rejection, a
  failed model listing): one counter or two.

The in-flight and queue gauges cost nothing per request: one process reads them from the
admission state when scraped (``LiveGauges``). With ``server.workers > 1`` each worker is its
own process, so prometheus-client's multiprocess mode sums the workers' files on every scrape;
there each worker writes its gauges every ``[metrics] sample_interval`` (``sample``).

Histogram buckets are vLLM's (``vllm/v1/metrics/loggers.py``): the time to first token reaches
2560 s because a cold model load can take minutes, and time per output token spans fast
decoding to stalls; request durations use vLLM's end-to-end buckets below a few short ones
for the routes that never wait on a model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ..caller import caller
from ..config import MetricsConfig
from ..errors import ProxyError, RateLimited
from ..upstream.admission import PRIORITIES, Admission, AdmissionRejected
from ..upstream.outcome import CLIENT_CLOSED, Outcome
from .labels import NO_MODEL, OTHER, UPSTREAM_KINDS, ModelLabels, upstream_kind
from .multiproc import MULTIPROC_ENV

__all__ = [
    "DURATION_BUCKETS", "METRICS", "MULTIPROC_ENV", "PREFIX", "TPOT_BUCKETS", "TTFT_BUCKETS", "LiveGauges",
    "Metrics",
]

PREFIX = "ollama_proxy_"


TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0,
                    20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
RATE_LIMIT_KINDS = ("requests", "tokens", "concurrency")
_ALIAS_LABELS = 256
# Admission waits: from no wait worth speaking of to the default queue_timeout and beyond.
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


class Metrics:
    """Every metric of one proxy process, in a registry of its own (no global state)."""

    def __init__(self, config: MetricsConfig, labels: ModelLabels) -> None:
        self.config = config
        self.labels = labels
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        self.registry = registry = CollectorRegistry()
        key = ("key_id",) if config.per_key_labels else ()
        self._per_key = bool(key)

        def counter(name: str, doc: str, labelnames: tuple[str, ...] = ()) -> Counter:
            return Counter(PREFIX + name, doc, labelnames, registry=registry)

        def histogram(name: str, doc: str, labelnames: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
            return Histogram(PREFIX + name, doc, labelnames, registry=registry, buckets=buckets)

        self.requests = counter("requests", "Requests answered, by endpoint, model and HTTP status "
                                "(499: the client went away first).", ("endpoint", "model", "status_code", *key))
        self.duration = histogram("request_duration_seconds", "Time from the request's arrival to "
                                  "its last byte.", ("endpoint", "model"), DURATION_BUCKETS)
        self.ttft = histogram("time_to_first_token_seconds", "Streams: time from the request's "
                              "admission to the first token written to the client.", ("model",), TTFT_BUCKETS)
        self.tpot = histogram("time_per_output_token_seconds", "Mean time per output token after "
                              "the first, per request.", ("model",), TPOT_BUCKETS)
        self.tokens = counter("tokens", "Tokens Ollama counted, by type (prompt or completion).",
                              ("model", "type", *key))
        self.upstream_errors = counter("upstream_errors", "Requests Ollama failed, by kind (refused, "
                                       "timeout, 5xx, malformed, mid_stream).", ("kind",))
        self.disconnects = counter("client_disconnects", "Requests whose client went away before "
                                   "the answer was complete.")
        self.admission_rejected = counter("admission_rejected", "Requests refused with 429 because "
                                          "the admission queue was full or the wait too long.")
        self.rate_limited = counter("rate_limited", "Requests refused with 429 by a rate limit, by "
                                    "kind (requests, tokens, concurrency).", ("kind", *key))
        self.alias_requests = counter("alias_requests", "Requests for a [models.aliases] name, by the name "
                                      "asked for and the Ollama model that served it.", ("requested", "model"))
        self._aliases_seen: set[str] = set()  # the requested label's values: bounded, as model's
        self.load = histogram("upstream_load_duration_seconds", "Ollama's load_duration: time it "
                              "spent loading the model for a request.", ("model",), TTFT_BUCKETS)
        self.prompt_eval = histogram("upstream_prompt_eval_seconds", "Ollama's prompt_eval_duration: "
                                     "time it spent reading the prompt.", ("model",), TTFT_BUCKETS)
        self.admission_wait = histogram("admission_wait_seconds", "Time a request queued for an "
                                        "admission slot, by priority class (requests that found a free "
                                        "slot at once are not counted).", ("priority",), WAIT_BUCKETS)
        self._waits = tuple(self.admission_wait.labels(name) for name in PRIORITIES)
        for kind in UPSTREAM_KINDS:
            self.upstream_errors.labels(kind)  # every kind is exported from the start, at 0
        if not key:
            for kind in RATE_LIMIT_KINDS:
                self.rate_limited.labels(kind)
        self._by_model: dict[str, _Series] = {}
        self._children: dict[tuple[Any, ...], Any] = {}
        self._in_flight: Gauge | None = None
        self._waiting: Gauge | None = None
        self._sampled: set[str] = set()
        self._sampled_waiting: set[tuple[str, ...]] = set()
        if self.multiprocess_dir is None:
            ProcessCollector(registry=registry)
        else:
            # Written by each worker (``sample``), summed over the live ones at scrape time.
            self._in_flight = Gauge(PREFIX + "requests_in_flight", _IN_FLIGHT_DOC, ("model",),
                                    registry=registry, multiprocess_mode="livesum")
            self._waiting = Gauge(PREFIX + "admission_waiting", _WAITING_DOC, ("priority", *key),
                                  registry=registry, multiprocess_mode="livesum")
            started = Gauge(PREFIX + "worker_start_time_seconds", "Start time of each live worker "
                            "process (Unix seconds), one series per pid.", registry=registry,
                            multiprocess_mode="liveall")
            started.set(time.time())

    # ------------------------------------------------------------------ per request

    def observe(self, outcome: Outcome) -> None:
        """The outcome listener: a request to Ollama ended."""
        model = self.labels.label(outcome.model)
        if model == OTHER and outcome.status < 400:
            model = self.labels.learn(outcome.model)
        key = (outcome.key_id,) if self._per_key else ()
        self._child(self.requests, outcome.endpoint, model, str(outcome.status), *key).inc()
        if outcome.requested:
            self._child(self.alias_requests, self._alias_label(outcome.requested), model).inc()
        if outcome.prompt_tokens or outcome.completion_tokens:
            self._child(self.tokens, model, "prompt", *key).inc(outcome.prompt_tokens)
            self._child(self.tokens, model, "completion", *key).inc(outcome.completion_tokens)
        if outcome.status == CLIENT_CLOSED:
            self.disconnects.inc()
        elif (kind := upstream_kind(outcome.error)) is not None:
            self.upstream_errors.labels(kind).inc()
        elif outcome.error is None:
            self._observe_timing(outcome, self._series(model))

    def _alias_label(self, requested: str) -> str:
        """An alias name as a label: a glob alias lets clients choose names (``gpt-5-anything``),
        so only the first ``_ALIAS_LABELS`` distinct names get a series of their own."""
        if requested in self._aliases_seen:
            return requested
        if len(self._aliases_seen) >= _ALIAS_LABELS or len(requested) > 128:
            return OTHER
        self._aliases_seen.add(requested)
        return requested

    def _observe_timing(self, outcome: Outcome, series: _Series) -> None:
        """Token timings of a request that completed."""
        timings = outcome.timings
        first = outcome.first_byte
        if outcome.stream and first is not None:
            series.ttft.observe(first - outcome.started)
            # What the client saw: the stream after its first token, over the tokens after it.
            if outcome.completion_tokens > 1 and outcome.ended is not None:
                series.tpot.observe((outcome.ended - first) / (outcome.completion_tokens - 1))
        elif outcome.completion_tokens > 0 and "eval_duration" in timings:
            # A whole answer has no first byte of its own: Ollama's decode time per token.
            series.tpot.observe(timings["eval_duration"] / outcome.completion_tokens)
        if "load_duration" in timings:
            series.load.observe(timings["load_duration"])
        if "prompt_eval_duration" in timings:
            series.prompt_eval.observe(timings["prompt_eval_duration"])

    # Label lookups cost more than the updates they lead to, so each labelled series is looked
    # up once and kept; the keys are bounded label values, so these dicts are bounded too.

    def _series(self, model: str) -> _Series:
        series = self._by_model.get(model)
        if series is None:
            series = _Series(self, model)
            self._by_model[model] = series
        return series

    def _child(self, metric: Counter | Histogram, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def http(self, request: web.Request, endpoint: str, status: int, exc: BaseException | None,
             duration: float, outcome: Outcome | None) -> None:
        """The middleware's part: every request's duration from its arrival (queueing
        included), refusals, and requests that never reached Ollama (a 400, a 404, a failed
        model listing); the outcome listener counted the others."""
        model = NO_MODEL if outcome is None else self.labels.label(outcome.model)
        self._child(self.duration, endpoint, model).observe(duration)
        if isinstance(exc, AdmissionRejected):
            self.admission_rejected.inc()
        elif isinstance(exc, RateLimited):
            # Rate limits (the access layer's) say which kind; Ollama's own 429 (only from a
            # gateway in front of it) has none and counts as concurrency.
            kind = str(getattr(exc, "kind", "concurrency"))
            if self._per_key:
                self.rate_limited.labels(kind, caller(request).key_id).inc()
            else:
                self.rate_limited.labels(kind).inc()
        if outcome is not None:
            return
        if isinstance(exc, ProxyError) and (fault := upstream_kind(exc.code)) is not None:
            self.upstream_errors.labels(fault).inc()  # /v1/models and others Ollama failed
        key = (caller(request).key_id,) if self._per_key else ()
        self._child(self.requests, endpoint, NO_MODEL, str(status), *key).inc()

    def observe_wait(self, priority: int, seconds: float) -> None:
        """``Admission.on_wait``: a queued request got its slot after ``seconds``."""
        self._waits[priority].observe(seconds)

    # ------------------------------------------------------------------ gauges and scrapes

    def sample(self, admission: Admission) -> None:
        """Multiprocess mode: write this worker's in-flight and queue gauges."""
        if self._in_flight is None or self._waiting is None:
            return
        waiting = _waiting(admission, self._per_key)
        for gone in self._sampled_waiting - waiting.keys():
            self._waiting.labels(*gone).set(0)
        for labels, count in waiting.items():
            self._waiting.labels(*labels).set(count)
        self._sampled_waiting = set(waiting)
        now = _by_label(admission, self.labels)
        for model in self._sampled - now.keys():
            self._in_flight.labels(model).set(0)
        for model, count in now.items():
            self._in_flight.labels(model).set(count)
        self._sampled = set(now)

    def render(self) -> bytes:
        """The exposition of this process, or of every worker in multiprocess mode."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    content_type = CONTENT_TYPE_LATEST


class _Series:
    """The per-model series of one model label, looked up once."""

    __slots__ = ("load", "prompt_eval", "tpot", "ttft")

    def __init__(self, metrics: Metrics, model: str) -> None:
        self.ttft = metrics.ttft.labels(model)
        self.tpot = metrics.tpot.labels(model)
        self.load = metrics.load.labels(model)
        self.prompt_eval = metrics.prompt_eval.labels(model)


_IN_FLIGHT_DOC = "Requests holding an admission slot (at Ollama or streaming from it), by model."
_WAITING_DOC = "Requests queued for an admission slot, by priority class."


def _waiting(admission: Admission, per_key: bool) -> dict[tuple[str, ...], int]:
    """Queued requests by (priority[, key]): every class at 0 without key labels; with them,
    the classes and keys that have waiters (an anonymous caller's address is never a label)."""
    counts: dict[tuple[str, ...], int] = {} if per_key else {(name,): 0 for name in PRIORITIES}
    for priority, party, count in admission.waiting_by():
        labels = (priority, party.partition(" ")[0]) if per_key else (priority,)
        counts[labels] = counts.get(labels, 0) + count
    return counts


def _by_label(admission: Admission, labels: ModelLabels) -> dict[str, int]:
    counts: dict[str, int] = {}
    for model, count in admission.by_model.items():
        label = labels.label(model)
        counts[label] = counts.get(label, 0) + count
    return counts


class LiveGauges(Collector):
    """One process: the in-flight and queue gauges, read from the admission state at scrape
    time, so requests pay nothing for them."""

    def __init__(self, admission: Admission, labels: ModelLabels, per_key: bool = False) -> None:
        self._admission = admission
        self._labels = labels
        self._per_key = per_key

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(PREFIX + "requests_in_flight", _IN_FLIGHT_DOC, labels=("model",))
        for model, count in sorted(_by_label(self._admission, self._labels).items()):
            in_flight.add_metric((model,), count)
        yield in_flight
        waiting = GaugeMetricFamily(PREFIX + "admission_waiting", _WAITING_DOC,
                                    labels=("priority", "key_id") if self._per_key else ("priority",))
        for labels, count in sorted(_waiting(self._admission, self._per_key).items()):
            waiting.add_metric(labels, count)
        yield waiting


METRICS = web.AppKey("metrics", Metrics)
