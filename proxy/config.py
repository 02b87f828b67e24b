"""Configuration: one frozen dataclass tree, read once at start-up from TOML.

Every section is a dataclass whose fields carry their defaults, so ``Config()`` is the
configuration with no file at all. ``load_config`` checks each key of the file against the
tree: an unknown key, a wrong type or a value out of range raises ``ConfigError`` naming the
dotted key (``upstream.idle_timeout``), which the CLI prints as one line before exiting.
Adding a setting is adding a field (with ``check`` metadata when it has a range).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .durations import parse_duration
from .modelglob import canonical

__all__ = [
    "AdmissionConfig",
    "AnthropicConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "ConsoleConfig",
    "CorsConfig",
    "HealthConfig",
    "KeyConfig",
    "LimitsConfig",
    "LogConfig",
    "MetricsConfig",
    "ModelDefaults",
    "ModelLimits",
    "ModelRateLimits",
    "ModelsConfig",
    "PassthroughConfig",
    "RatelimitConfig",
    "ResponseConfig",
    "ResponsesConfig",
    "RoutingConfig",
    "ServerConfig",
    "StoreConfig",
    "Timeouts",
    "TracingConfig",
    "UpstreamConfig",
    "UpstreamServer",
    "check_defaults_within_limits",
    "key_file_relative_to",
    "load_config",
    "pool_servers",
    "store_relative_to",
]


class ConfigError(ValueError):
    """A configuration problem, its message naming the offending key."""


def checked(default: Any, check: Callable[[Any], bool], why: str) -> Any:
    """A dataclass field whose value must satisfy ``check``; ``why`` completes "must be …"."""
    return field(default=default, metadata={"check": check, "why": why})


def _positive(value: float) -> bool:
    return value > 0


@dataclass(frozen=True)
class ServerConfig:
    """Where the proxy listens and how it treats its own clients."""

    host: str = "127.0.0.1"
    port: int = checked(8080, lambda v: 0 <= v <= 65535, "a port number (0-65535)")
    workers: int = checked(1, lambda v: 1 <= v <= 256, "between 1 and 256")
    uvloop: bool = True  # use uvloop when it is installed (the "uvloop" extra)
    # Defences against slow or oversized clients (aiohttp server settings, see proxy/gates/body.py).
    keepalive_timeout: float = checked(75.0, _positive, "> 0")
    body_timeout: float = checked(60.0, _positive, "> 0")
    max_line_size: int = checked(8190, lambda v: v >= 1024, ">= 1024")
    max_field_size: int = checked(8190, lambda v: v >= 1024, ">= 1024")
    max_headers: int = checked(128, lambda v: v >= 16, ">= 16")
    # nginx's send_timeout: the longest one write of a streamed answer may wait for the client
    # to take data; past it the stream is aborted and its upstream request and slot given back.
    write_timeout: float = checked(60.0, _positive, "> 0")
    # Compressed request bodies (zstd, gzip, deflate) are decoded as they arrive, bounded by
    # limits.max_body_bytes and max_compression_ratio (proxy/gates/decompress.py); false: 415, as nginx.
    accept_compressed_requests: bool = True
    # Past 1 MiB decoded, a body may decode to at most this many times its compressed size (0: no
    # bound); JSON compresses 3-5 times, a bomb a thousand.
    max_compression_ratio: int = checked(100, lambda v: v >= 0, ">= 0 (0 means no ratio bound)")
    # Host names accepted in the Host header (DNS-rebinding defence, proxy/access/cors.py).
    # Empty: only localhost/127.0.0.1/[::1] when listening on loopback, else any.
    allowed_hosts: tuple[str, ...] = ()
    # A graceful stop (SIGTERM): seconds requests in flight (long streams) may still take once
    # the listener is closed; past it they are cut off. aiohttp's default.
    shutdown_timeout: float = checked(60.0, _positive, "> 0")


@dataclass(frozen=True)
class Timeouts:
    """Upstream time-outs in seconds, passed down as one value.

    ``connect``: opening the TCP connection to Ollama.
    ``first_byte``: from sending the request to Ollama's response headers; for a stream this
    covers model loading and prompt evaluation, so it is long by default.
    ``idle``: the longest gap allowed between two reads of the response body; a stalled
    stream ends with an error frame after it.
    """

    connect: float = checked(5.0, _positive, "> 0")
    first_byte: float = checked(300.0, _positive, "> 0")
    idle: float = checked(60.0, _positive, "> 0")


@dataclass(frozen=True)
class UpstreamConfig:
    """The Ollama server behind the proxy."""

    base_url: str = "http://localhost:11434"
    timeouts: Timeouts = Timeouts()
    max_connections: int = checked(0, lambda v: v >= 0, ">= 0 (0 means no limit)")
    max_line_bytes: int = checked(16 * 1024 * 1024, _positive, "> 0")
    # A whole (non-streamed) answer above this is a 502, never buffered beyond it.
    max_answer_bytes: int = checked(64 * 1024 * 1024, _positive, "> 0")


_COUNT = (lambda v: v >= 0, ">= 0 (0 means no limit)")
_RANGE = (lambda v: len(v) == 2 and v[0] <= v[1], "a [low, high] pair with low <= high")
_NAMES = (lambda v: all(n and n == n.strip() for n in v), "a list of option names")
_SECONDS = (lambda v: v >= 0, ">= 0 (seconds)")


def limit(default: Any, kind: tuple[Callable[[Any], bool], str]) -> Any:
    """A limit field: ``kind`` is ``_COUNT`` or ``_RANGE``; ``None`` (per-model) means inherit."""
    return checked(default, *kind)


@dataclass(frozen=True)
class ModelLimits:
    """``[limits.models."<glob>"]``: limits for the models matching one pattern.

    A key left out keeps its ``[limits]`` value; every matching table applies, in file order.
    The body size and the JSON shape are checked before the model is known, so they are global.
    """

    max_messages: int | None = limit(None, _COUNT)
    max_message_chars: int | None = limit(None, _COUNT)
    max_total_chars: int | None = limit(None, _COUNT)
    max_images: int | None = limit(None, _COUNT)
    max_image_bytes: int | None = limit(None, _COUNT)
    max_tools: int | None = limit(None, _COUNT)
    max_stop: int | None = limit(None, _COUNT)
    max_tokens: int | None = limit(None, _COUNT)
    default_max_tokens: int | None = limit(None, _COUNT)
    temperature: tuple[float, ...] | None = limit(None, _RANGE)
    top_p: tuple[float, ...] | None = limit(None, _RANGE)
    frequency_penalty: tuple[float, ...] | None = limit(None, _RANGE)
    presence_penalty: tuple[float, ...] | None = limit(None, _RANGE)
    max_inputs: int | None = limit(None, _COUNT)
    allowed_options: tuple[str, ...] | None = checked(None, *_NAMES)
    max_num_ctx: int | None = limit(None, _COUNT)
    max_keep_alive: float | None = checked(None, *_SECONDS)


# Ollama's ``options`` a client may set by default: sampling and the size of its own context.
# Left out are the runner's hardware knobs (num_gpu, main_gpu, num_thread, num_batch, use_mmap,
# use_mlock, numa, low_vram…): they reload the model for everyone and pin or evict memory.
DEFAULT_ALLOWED_OPTIONS = (
    "num_ctx", "num_keep", "seed", "num_predict", "top_k", "top_p", "min_p", "typical_p",
    "repeat_last_n", "temperature", "repeat_penalty", "presence_penalty", "frequency_penalty", "stop",
)  # fmt: skip


@dataclass(frozen=True)
class LimitsConfig:
    """What a client may send; enforced before anything reaches Ollama (``proxy/models/limits.py``).

    The per-request keys mirror ``ModelLimits`` (which may override them per model); the rows
    that check them are ``validate.RULES``.
    """

    max_body_bytes: int = checked(20 * 1024 * 1024, _positive, "> 0")
    # orjson serialises at most 255 levels and Ollama's body nests the client's JSON a few
    # levels deeper than the client did, hence the ceiling.
    max_json_depth: int = checked(64, lambda v: 1 <= v <= 200, "between 1 and 200")
    max_json_containers: int = limit(100_000, _COUNT)
    max_messages: int = limit(1000, _COUNT)
    max_message_chars: int = limit(1_048_576, _COUNT)
    max_total_chars: int = limit(4_194_304, _COUNT)
    max_images: int = limit(32, _COUNT)
    max_image_bytes: int = limit(10 * 1024 * 1024, _COUNT)
    max_tools: int = limit(128, _COUNT)
    max_stop: int = limit(16, _COUNT)
    max_tokens: int = limit(0, _COUNT)
    default_max_tokens: int = limit(0, _COUNT)
    temperature: tuple[float, ...] = limit((0.0, 2.0), _RANGE)
    top_p: tuple[float, ...] = limit((0.0, 1.0), _RANGE)
    frequency_penalty: tuple[float, ...] = limit((-2.0, 2.0), _RANGE)
    presence_penalty: tuple[float, ...] = limit((-2.0, 2.0), _RANGE)
    # Most choices one chat request may ask for ("n"); each is its own request to Ollama.
    max_n: int = checked(4, lambda v: 1 <= v <= 128, "between 1 and 128")
    # Items of /v1/embeddings ``input`` (OpenAI's own bound is 2,048).
    max_inputs: int = limit(2048, _COUNT)
    # Ollama's extras (proxy/models/options.py): which ``options.*`` a client may send at all, the
    # largest ``num_ctx`` (0: the model's context length from /api/show), and the longest
    # ``keep_alive`` in seconds (a negative one, "forever", is refused).
    allowed_options: tuple[str, ...] = checked(DEFAULT_ALLOWED_OPTIONS, *_NAMES)
    max_num_ctx: int = limit(0, _COUNT)
    max_keep_alive: float = checked(1800.0, *_SECONDS)
    allowed_models: tuple[str, ...] = checked(("*",), bool, 'at least one pattern ("*" allows all)')
    denied_models: tuple[str, ...] = ()
    models: dict[str, ModelLimits] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A default budget above the cap would make every request without one a 400.
        for where, cap, default in [
            ("limits", self.max_tokens, self.default_max_tokens),
            *((f'limits.models."{p}"', _pick(m.max_tokens, self.max_tokens),
               _pick(m.default_max_tokens, self.default_max_tokens)) for p, m in self.models.items()),
        ]:
            if cap and default > cap:
                raise ConfigError(f"{where}.default_max_tokens: must be <= max_tokens ({cap}), got {default}")


def _pick(override: int | None, base: int) -> int:
    return base if override is None else override


@dataclass(frozen=True)
class AdmissionConfig:
    """Bounds on concurrent requests to Ollama, with a bounded wait queue (``proxy/upstream/admission.py``).

    Counted per worker process: with ``server.workers = N`` the bounds are N times larger.
    """

    max_concurrent: int = limit(64, _COUNT)
    max_concurrent_per_model: int = limit(0, _COUNT)
    models: dict[str, int] = field(default_factory=dict, metadata={
        "check": lambda v: all(n >= 0 for n in v.values()), "why": ">= 0 for every pattern"})
    max_queue: int = checked(256, lambda v: v >= 0, ">= 0")
    queue_timeout: float = checked(30.0, _positive, "> 0")
    retry_after: int = checked(1, lambda v: v >= 1, ">= 1")
    # Fair queuing (proxy/upstream/fairqueue.py): a waiter queued this long goes before every class
    # (0: strict classes, low may starve); at most this many waiting per key (0: no own bound).
    priority_aging: float = checked(10.0, lambda v: v >= 0, ">= 0")
    max_queue_per_key: int = checked(0, lambda v: v >= 0, ">= 0")


@dataclass(frozen=True)
class BatchesConfig:
    """The Batch API (``proxy/jobs/``; needs ``[store]``): lines run at a time per process, how
    long a claimed line is held before another runner may take it, how often the runner looks
    for work, the most lines a batch may hold, and how long ``completion_window = "24h"`` lasts."""

    enabled: bool = True
    concurrency: int = checked(2, lambda v: 1 <= v <= 256, "between 1 and 256")
    lease: float = checked(60.0, _positive, "> 0")
    poll_interval: float = checked(1.0, _positive, "> 0")
    max_lines: int = checked(50_000, lambda v: v >= 1, ">= 1")
    window: float = checked(86_400.0, _positive, "> 0")


@dataclass(frozen=True)
class ResponseConfig:
    """Shape of the JSON the proxy answers with."""

    keys: Literal["snake", "camel"] = "snake"
    # Where a message's thinking goes. "both" by default: LangChain (JS ChatOpenAI, Python
    # ChatDeepSeek; Python's ChatOpenAI reads neither) and the Vercel AI SDK read
    # "reasoning_content" (DeepSeek/vLLM's name), pydantic-ai and Ollama's own /v1 clients
    # "reasoning"; each reader takes one of the two, never both, so sending both shows the
    # thinking to all of them once (docs/chat.md, "Thinking").
    reasoning_field: Literal["reasoning", "reasoning_content", "both"] = "both"


@dataclass(frozen=True)
class AnthropicConfig:
    """``[anthropic]``: the Messages API (``/v1/messages``, docs/anthropic.md)."""

    # A ``ping`` event when nothing went out for this long (Ollama thinking unseen, a slow
    # prompt), as Anthropic keeps its streams alive; 0 sends none but the first.
    ping_interval: float = checked(10.0, *_SECONDS)
    # Server tools (web_search_*, bash_*, code_execution_*…) offered, not forced: "drop" leaves
    # them out (named in X-Ollama-Proxy-Dropped-Tools), "refuse" answers 400 naming the first.
    server_tools: Literal["drop", "refuse"] = "drop"


@dataclass(frozen=True)
class ResponsesConfig:
    """``[responses]``: what ``/v1/responses`` does with what Ollama cannot run (hosted tools),
    and the key that seals reasoning handed to clients (``encrypted_content``).

    ``hosted_tools``: "drop" leaves OpenAI's hosted tools (``web_search``…) out of what the
    model sees and says so in ``X-Ollama-Proxy-Dropped-Tools``; "refuse" answers 400 instead.
    ``reasoning_key``: the secret (at least 32 characters) every replica sharing clients must
    hold alike; empty: ``reasoning_key_file`` (relative to the config file's directory), made
    with a random secret at first use; empty as well: a random key per process.
    """

    hosted_tools: Literal["drop", "refuse"] = "drop"
    reasoning_key: str = checked("", lambda v: v == "" or len(v) >= 32, "empty or at least 32 characters")
    reasoning_key_file: str = "reasoning.key"


@dataclass(frozen=True)
class LogConfig:
    """Logging of the proxy process."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    # One line per request costs about a third of a non-streaming request's CPU in aiohttp's
    # access logger, so it is opt-in; failures are always logged, with the request id.
    access: bool = False
    # "text": one line per record, control characters of untrusted values escaped;
    # "json": one JSON object per line (proxy/logs.py).
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class HealthConfig:
    """The readiness probe (``/v1/health``, ``/readyz``) and how it spares Ollama.

    ``interval``: seconds one ``GET /api/version`` result is shared by every probe, so a storm
    of probes costs Ollama at most one request per interval (0: share only the call in flight).
    ``timeout``: seconds the upstream check may take before the proxy reports 503.
    """

    interval: float = checked(1.0, lambda v: v >= 0, ">= 0")
    timeout: float = checked(2.0, _positive, "> 0")


# A model name or alias the proxy sends on to Ollama: no control characters (NUL above all).
_MODEL_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
OptionValue = int | float | str | bool | tuple[int | float | str, ...]


def _model_names(table: dict[str, str]) -> bool:
    return all(_MODEL_NAME.fullmatch(k) and k == k.strip() and _MODEL_NAME.fullmatch(v) and v == v.strip()
               and not set(v) & set("*?[") for k, v in table.items())


def _num_ctx_default(value: Any) -> bool:
    return value is None or value == "max" or (type(value) is int and value > 0)


@dataclass(frozen=True)
class ModelDefaults:
    """``[models.defaults."<glob>"]``: what the proxy adds to Ollama's request when the client did
    not send it (``proxy/models/defaults.py``). Every matching table applies, in file order."""

    options: dict[str, OptionValue] = field(default_factory=dict, metadata={
        "check": lambda v: _num_ctx_default(v.get("num_ctx")),
        "why": 'a table of Ollama options (num_ctx: a positive integer or "max")'})
    keep_alive: float | str | None = checked(None, lambda v: v is None or parse_duration(v) is not None,
                                             'seconds or a duration like "30m"')
    think: bool | Literal["low", "medium", "high"] | None = None
    max_tokens: int | None = checked(None, lambda v: v is None or v > 0, "> 0")
    system: str | None = checked(None, lambda v: v is None or "\x00" not in v, "text without NUL")


@dataclass(frozen=True)
class ModelsConfig:
    """``/v1/models``: how model details are fetched from ``/api/show``; and the operator's model
    names: ``aliases`` (``"<name or glob>" = "<ollama model>"``) and per-model ``defaults``."""

    show_concurrency: int = checked(8, lambda v: 1 <= v <= 256, "between 1 and 256")
    show_timeout: float = checked(10.0, _positive, "> 0")
    aliases: dict[str, str] = field(default_factory=dict, metadata={
        "check": _model_names,
        "why": "a table of model names (no control characters; a target is one model, not a glob)"})
    defaults: dict[str, ModelDefaults] = field(default_factory=dict, metadata={
        "check": lambda v: all(_MODEL_NAME.fullmatch(k) for k in v), "why": "a table of model globs"})

    def __post_init__(self) -> None:
        # No alias of an alias: a target naming another exact alias would be a chain.
        exact = {canonical(k): k for k in self.aliases if set(k).isdisjoint("*?[")}
        for name, target in self.aliases.items():
            other = exact.get(canonical(target))
            if other is not None and other != name:
                raise ConfigError(f'models.aliases."{name}": its target {target!r} is itself an alias '
                                  f'(models.aliases."{other}"); aliases do not chain')


PASSTHROUGH_PATHS = (
    "/api/chat", "/api/generate", "/api/embed", "/api/tags", "/api/show", "/api/version", "/api/ps",
)  # fmt: skip


@dataclass(frozen=True)
class PassthroughConfig:
    """Ollama's native API on the proxy's address, for Ollama clients; off by default."""

    enabled: bool = False
    allowed_paths: tuple[str, ...] = checked(
        PASSTHROUGH_PATHS,
        lambda v: all(p.startswith("/api/") and len(p) > 5 for p in v),
        "a list of paths under /api/",
    )


# A server's name goes out in the X-Upstream header and into logs: a safe token only.
_SERVER_NAME = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass(frozen=True)
class UpstreamServer:
    """``[[upstreams]]``: one Ollama server of the pool (``proxy/upstream/``).

    ``weight`` scales its share among equals (in-flight count divided by it, and its turns in
    round-robin); ``max_concurrent`` bounds this proxy's requests in flight to it (0: no
    bound); ``models`` are globs of the models it may serve (empty: whatever it reports).
    The ``[upstream]`` time-outs and limits apply to every server.
    """

    name: str = checked("", lambda v: v == "" or _SERVER_NAME.fullmatch(v) is not None,
                        "1-64 of A-Z a-z 0-9 . _ : - (it is sent in the X-Upstream header)")
    base_url: str = ""
    weight: int = checked(1, lambda v: 1 <= v <= 1000, "between 1 and 1000")
    max_concurrent: int = checked(0, lambda v: v >= 0, ">= 0 (0 means no bound)")
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoutingConfig:
    """How requests are placed on the pool's servers, and how servers are watched.

    Only a pool of two or more servers is watched: a single server is used as it always was,
    with no background calls at all.
    """

    sticky: bool = False  # conversation prefix / X-Session-Id go back to their last server
    sticky_max_entries: int = checked(10_000, _positive, "> 0")
    sticky_idle_ttl: float = checked(600.0, _positive, "> 0")
    # The X-Upstream header: the configured name of the server that answered. Off by default,
    # and never a server's address: a server without a `name` is not named.
    expose_upstream: bool = False
    max_failovers: int = checked(2, lambda v: 0 <= v <= 10, "between 0 and 10")
    discovery_interval: float = checked(5.0, _positive, "> 0")  # /api/tags + /api/ps per server
    discovery_timeout: float = checked(5.0, _positive, "> 0")
    probe_interval: float = checked(5.0, _positive, "> 0")  # active GET /api/version per server
    probe_timeout: float = checked(2.0, _positive, "> 0")
    eject_after: int = checked(3, lambda v: v >= 1, ">= 1")  # consecutive failures
    eject_base: float = checked(10.0, _positive, "> 0")  # first ejection; doubles on each repeat
    eject_max: float = checked(300.0, _positive, "> 0")
_CONSOLE_PATH = re.compile(r"/(?:[A-Za-z0-9._~-]+/)+")


@dataclass(frozen=True)
class ConsoleConfig:
    """The web console (``proxy/console/``): static files only, on top of the public APIs.

    ``enabled``: ``"auto"`` (the default) serves it when the proxy listens on a loopback address
    only, where just this machine's users reach it; ``true`` serves it on any address.
    ``path``: where it is served, an absolute path ending in "/", outside ``/v1/`` and ``/api/``.
    """

    enabled: bool | Literal["auto"] = "auto"
    path: str = checked(
        "/console/",
        lambda v: _CONSOLE_PATH.fullmatch(v) is not None and not v.startswith(("/v1/", "/api/"))
        and not {".", ".."} & set(v.split("/")),
        'an absolute path ending in "/" (letters, digits, ._~-), outside /v1/ and /api/',
    )
StorePolicy = Literal["on_request", "always", "never"]


@dataclass(frozen=True)
class StoreConfig:
    """``[store]``: usage accounting and stored chat completions / responses (``proxy/store/``).

    Off by default: the proxy then keeps nothing and creates no file. ``url`` is
    ``sqlite:///proxy.db`` (a path relative to the config file's directory, or to the current
    directory without one), ``sqlite:////abs/path.db``, ``sqlite://`` (memory), or
    ``postgresql://user:pass@host/db`` when several processes or replicas share it.
    ``flush_interval``: seconds between the background writes of usage (what a crash can lose).
    """

    enabled: bool = False
    url: str = checked("sqlite:///proxy.db", lambda v: v.startswith(("sqlite://", "postgresql://", "postgres://")),
                       "a sqlite:// or postgresql:// URL")
    flush_interval: float = checked(1.0, lambda v: 0.05 <= v <= 3600, "between 0.05 and 3600")
    max_pending: int = checked(10_000, lambda v: v >= 1, ">= 1")
    chat_completions: StorePolicy = "on_request"
    responses: StorePolicy = "on_request"
    retention_days: int = checked(0, lambda v: v >= 0, ">= 0 (0 keeps records forever)")
    pool_size: int = checked(4, lambda v: 1 <= v <= 100, "between 1 and 100")
    busy_timeout: float = checked(5.0, _positive, "> 0")


@dataclass(frozen=True)
class MetricsConfig:
    """``GET /metrics`` in Prometheus' text format (``proxy/observe/``).

    ``port``: when not 0, serve it on a listener of its own (``host`` and that port, no API key
    there) rather than on the main port. ``token``: when set, a scrape must send ``Authorization: Bearer <token>``.
    ``per_key_labels``: add the caller's key id as a label (one series per key: cardinality).
    ``model_refresh``: seconds between reads of Ollama's model list, which bounds the ``model``
    label (a model Ollama does not list is counted as ``other``).
    ``sample_interval``: with ``server.workers > 1``, seconds between each worker's writes of its
    in-flight and queue gauges (a single process reads them live at scrape time).
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = checked(0, lambda v: 0 <= v <= 65535, "0 (the main port) or a port number")
    token: str = ""
    per_key_labels: bool = False
    model_refresh: float = checked(60.0, lambda v: v >= 1, ">= 1")
    sample_interval: float = checked(1.0, lambda v: 0.01 <= v <= 60, "between 0.01 and 60")


@dataclass(frozen=True)
class TracingConfig:
    """OpenTelemetry traces (needs the ``tracing`` extra), exported over OTLP/HTTP; off by default.

    ``endpoint``: the collector's traces URL; empty means the exporter's own default or the
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` environment variables.
    ``sample_ratio``: share of new traces recorded; a caller's ``traceparent`` decides for its own.
    """

    enabled: bool = False
    endpoint: str = checked("", lambda v: not v or v.startswith(("http://", "https://")),
                            "empty or an http:// or https:// URL")
    service_name: str = checked("ollama-openai-proxy", bool, "a non-empty string")
    sample_ratio: float = checked(1.0, lambda v: 0 <= v <= 1, "between 0 and 1")
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _rfc3339(value: str | None) -> bool:
    return value is None or rfc3339_epoch(value) is not None


def rfc3339_epoch(value: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 time with an offset (``2026-01-31T00:00:00Z``)."""
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return None if moment.tzinfo is None else moment.timestamp()


@dataclass(frozen=True)
class ModelRateLimits:
    """``[auth.keys.model_limits."<glob>"]``: a key's own limits for the models matching one
    pattern (counted apart from the key's other models, as OpenAI counts limits per model).
    A key left out keeps the key's value."""

    rpm: int | None = limit(None, _COUNT)
    tpm: int | None = limit(None, _COUNT)


@dataclass(frozen=True)
class KeyConfig:
    """``[[auth.keys]]``: one API key, stored as the SHA-256 of the whole key (never the key)."""

    id: str = checked("", lambda v: bool(_KEY_ID.fullmatch(v)), "1-64 letters, digits, '.', '_' or '-'")
    sha256: str = checked("", lambda v: bool(_SHA256.fullmatch(v)), "64 lower-case hex digits (python -m proxy keys hash)")
    models: tuple[str, ...] = ()  # globs; empty = every model the proxy allows
    rpm: int = limit(0, _COUNT)
    tpm: int = limit(0, _COUNT)
    max_concurrent: int = limit(0, _COUNT)
    expires_at: str | None = checked(None, _rfc3339, "an RFC 3339 time with an offset")
    enabled: bool = True
    role: Literal["user", "admin"] = "user"
    model_limits: dict[str, ModelRateLimits] = field(default_factory=dict)
    # Fair queuing: this key's share of contended slots, its class when a request names none
    # (or "auto"), and the highest class its requests may ask for with service_tier.
    weight: float = checked(1.0, lambda v: 0 < v <= 1000, "> 0 and <= 1000")
    priority: Literal["high", "default", "low"] = "default"
    max_priority: Literal["high", "default", "low"] = "default"


@dataclass(frozen=True)
class AuthConfig:
    """API keys (``proxy/access/keys.py``). No keys: every request is anonymous, which the
    proxy allows only on loopback unless ``allow_anonymous`` (protected mode)."""

    allow_anonymous: bool = False
    keys: tuple[KeyConfig, ...] = ()

    def __post_init__(self) -> None:
        seen_ids: set[str] = set()
        seen_hashes: set[str] = set()
        for i, key in enumerate(self.keys):
            if not key.id or not key.sha256:
                missing = "id" if not key.id else "sha256"
                raise ConfigError(f"auth.keys[{i}].{missing}: required")
            if key.id in seen_ids:
                raise ConfigError(f"auth.keys[{i}].id: {key.id!r} is used by another key")
            if key.sha256 in seen_hashes:
                raise ConfigError(f"auth.keys[{i}].sha256: the same key is declared twice")
            seen_ids.add(key.id)
            seen_hashes.add(key.sha256)


@dataclass(frozen=True)
class RatelimitConfig:
    """Where the per-key rpm/tpm counters live (``proxy/access/ratelimit.py``).

    ``memory``: in the process (with ``server.workers = N`` each worker enforces 1/N of each
    limit: approximate). ``redis``: one shared store at ``url`` for every worker and replica.
    ``on_backend_error``: what a request gets while Redis cannot be reached (``fail_closed``:
    503; ``fail_open``: served unlimited), logged and reported by ``/readyz``.
    ``completion_reserve``: tokens reserved for the answer when a request sets no
    ``max_tokens`` and ``[limits]`` has no ``default_max_tokens``.
    """

    backend: Literal["memory", "redis"] = "memory"
    url: str = checked("redis://127.0.0.1:6379/0", lambda v: v.startswith(("redis://", "rediss://", "unix://")),
                       "a redis://, rediss:// or unix:// URL")
    on_backend_error: Literal["fail_open", "fail_closed"] = "fail_closed"
    timeout: float = checked(0.5, _positive, "> 0")
    completion_reserve: int = checked(1024, lambda v: v >= 0, ">= 0")


def _origins(values: tuple[str, ...]) -> bool:
    return all(v == "*" or v == "local" or re.fullmatch(r"[a-z][a-z0-9+.-]*://\S+|null", v) for v in values)


@dataclass(frozen=True)
class CorsConfig:
    """Browsers: which web origins may call the proxy (``proxy/access/cors.py``). Default
    ``["local"]``: Ollama's own list (localhost, 127.0.0.1, 0.0.0.0 pages, app:// and the like)."""

    origins: tuple[str, ...] = checked(("local",), _origins,
                                       'origins like "https://app.example", "http://localhost:*", "local" or "*"')
    allow_credentials: bool = False
    max_age: int = checked(600, lambda v: 0 <= v <= 86400, "between 0 and 86400 seconds")

    def __post_init__(self) -> None:
        if self.allow_credentials and "*" in self.origins:
            raise ConfigError('cors.allow_credentials: must be false when cors.origins holds "*"')


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``Config()`` is the default with no file."""

    server: ServerConfig = ServerConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    limits: LimitsConfig = LimitsConfig()
    admission: AdmissionConfig = AdmissionConfig()
    response: ResponseConfig = ResponseConfig()
    anthropic: AnthropicConfig = AnthropicConfig()
    responses: ResponsesConfig = ResponsesConfig()
    log: LogConfig = LogConfig()
    health: HealthConfig = HealthConfig()
    models: ModelsConfig = ModelsConfig()
    passthrough: PassthroughConfig = PassthroughConfig()
    upstreams: tuple[UpstreamServer, ...] = ()
    routing: RoutingConfig = RoutingConfig()
    console: ConsoleConfig = ConsoleConfig()
    store: StoreConfig = StoreConfig()
    batches: BatchesConfig = BatchesConfig()
    metrics: MetricsConfig = MetricsConfig()
    tracing: TracingConfig = TracingConfig()
    auth: AuthConfig = AuthConfig()
    ratelimit: RatelimitConfig = RatelimitConfig()
    cors: CorsConfig = CorsConfig()
    # Further TOML files merged over this one, in order (paths relative to this file): secrets
    # kept apart from the rest, e.g. a Kubernetes Secret holding [store] url and [[auth.keys]].
    include: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_defaults_within_limits(self.models, self.limits)


def check_defaults_within_limits(models: ModelsConfig, limits: LimitsConfig) -> None:
    """A default beyond a ``[limits]`` bound is a mistake, named with both keys: the bound of
    ``[limits]`` and of a ``[limits.models]`` table with the same pattern (a table for other
    patterns bounds the default per request instead, see ``proxy/models/defaults.py``)."""
    for pattern, d in models.defaults.items():
        where = f'models.defaults."{pattern}"'
        same = limits.models.get(pattern)
        tables: list[tuple[str, LimitsConfig | ModelLimits]] = [("limits", limits)]
        if same is not None:
            tables.append((f'limits.models."{pattern}"', same))
        for source, table in tables:
            for key, value, bound in _default_bounds(d, table):
                if bound is None or value is None:
                    continue
                low, high = bound if isinstance(bound, tuple) else (None, bound)
                if (high and value > high) or (low is not None and value < low):
                    limit_key = _LIMIT_OF[key]
                    raise ConfigError(f"{where}.{key}: {value!r} is beyond {source}.{limit_key} ({_shown(bound)})")


_LIMIT_OF = {"options.num_ctx": "max_num_ctx", "keep_alive": "max_keep_alive", "max_tokens": "max_tokens",
             "options.num_predict": "max_tokens", "options.temperature": "temperature", "options.top_p": "top_p",
             "options.frequency_penalty": "frequency_penalty", "options.presence_penalty": "presence_penalty"}


def _default_bounds(d: ModelDefaults, table: LimitsConfig | ModelLimits) -> list[tuple[str, Any, Any]]:
    """(key, the default's value, the table's bound) for each bounded default."""
    options = d.options
    num_ctx = options.get("num_ctx")
    keep_alive = parse_duration(d.keep_alive) if d.keep_alive is not None else None
    rows: list[tuple[str, Any, Any]] = [
        ("options.num_ctx", num_ctx if isinstance(num_ctx, int) else None, table.max_num_ctx),
        ("keep_alive", keep_alive, table.max_keep_alive if table.max_keep_alive is not None else None),
        ("max_tokens", d.max_tokens, table.max_tokens),
        ("options.num_predict", _number(options.get("num_predict")), table.max_tokens),
    ]
    for name in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
        rows.append((f"options.{name}", _number(options.get(name)), getattr(table, name)))
    return rows


def _number(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _shown(bound: Any) -> str:
    return f"[{bound[0]:g}, {bound[1]:g}]" if isinstance(bound, tuple) else f"{bound:g}"


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (None: defaults only) and apply ``OLLAMA_BASE_URL`` from ``env``."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        data = with_includes(data, Path(path).resolve().parent)
    config = build(Config, data, "")
    if config.upstreams and "base_url" in (data.get("upstream") or {}):
        raise ConfigError("upstream.base_url: give either [upstream] base_url or [[upstreams]], not both")
    base_url = env.get("OLLAMA_BASE_URL")
    if base_url:
        # The environment replaces the file's servers: one URL, or a comma-separated pool.
        urls = [u.strip() for u in base_url.split(",") if u.strip()]
        upstream = dataclasses.replace(config.upstream, base_url=urls[0] if urls else base_url)
        pool = tuple(UpstreamServer(base_url=u) for u in urls) if len(urls) > 1 else ()
        config = dataclasses.replace(config, upstream=upstream, upstreams=pool)
    _check_url(config.upstream.base_url, "upstream.base_url (or OLLAMA_BASE_URL)")
    _check_pool(config)
    if path is not None and config.store.enabled:  # off: the URL is unused (and Config() stays equal)
        config = store_relative_to(config, Path(path).resolve().parent)
    return config


def with_includes(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """``data`` with each file of its ``include`` list merged over it, in order."""
    includes = data.get("include", [])
    if not isinstance(includes, list) or not all(isinstance(p, str) and p for p in includes):
        raise ConfigError("include: must be a list of file paths")
    for i, name in enumerate(includes):
        try:
            with open(base / name, "rb") as fh:
                extra = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"include[{i}]: cannot read {name}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"include[{i}]: {name} is not valid TOML: {exc}") from None
        if "include" in extra:
            raise ConfigError(f"include[{i}]: {name} may not include further files")
        data = merge_tables(data, extra)
    return data


def merge_tables(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``: tables merge key by key, anything else (arrays of tables such as
    ``[[auth.keys]]`` too) is replaced whole."""
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        merged[key] = merge_tables(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return merged


def key_file_relative_to(config: Config, base: Path) -> Config:
    """A relative ``[responses] reasoning_key_file`` names a file in ``base``, the config file's
    directory (as the store's SQLite path); applied by the CLI, so ``Config()`` stays equal."""
    key_file = config.responses.reasoning_key_file
    if not key_file or Path(key_file).is_absolute():
        return config
    responses = dataclasses.replace(config.responses, reasoning_key_file=str(base / key_file))
    return dataclasses.replace(config, responses=responses)


def pool_servers(config: Config) -> tuple[UpstreamServer, ...]:
    """The servers of the pool, each named: ``[[upstreams]]``, else ``[upstream]`` alone.

    A server without a name is called by its ``host:port``.
    """
    servers = config.upstreams or (UpstreamServer(base_url=config.upstream.base_url),)
    return tuple(s if s.name else dataclasses.replace(s, name=_host_port(s.base_url)) for s in servers)


def _host_port(url: str) -> str:
    rest = url.split("://", 1)[-1]
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]  # no credentials in a name
    return re.sub(r"[^A-Za-z0-9._:-]", "_", host)[:64] or "upstream"


def _check_pool(config: Config) -> None:
    names: set[str] = set()
    for i, server in enumerate(config.upstreams):
        _check_url(server.base_url, f"upstreams[{i}].base_url")
    for i, server in enumerate(pool_servers(config)):
        if server.name in names:
            raise ConfigError(f"upstreams[{i}].name: {server.name!r} names two servers; names must be unique")
        names.add(server.name)


def store_relative_to(config: Config, base: Path) -> Config:
    """A relative SQLite path (``sqlite:///proxy.db``) names a file in ``base``, the config
    file's directory, as SQLAlchemy's URLs do for the working directory."""
    url = config.store.url
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/"):
        return config
    absolute = "sqlite:///" + str(base / url[len(prefix):])  # an absolute path: four slashes
    return dataclasses.replace(config, store=dataclasses.replace(config.store, url=absolute))


def _check_url(url: str, key: str) -> None:
    if not url.startswith(("http://", "https://")) or len(url) < 8:
        raise ConfigError(f"{key}: must be an http:// or https:// URL, got {url!r}")


T = typing.TypeVar("T")


def build(cls: type[T], data: Mapping[str, Any], prefix: str) -> T:
    """Build dataclass ``cls`` from a TOML table, checking every key against its fields."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, raw in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"{name}: unknown key (known: {', '.join(sorted(fields))})")
        value = convert(hints[key], raw, name)
        meta = fields[key].metadata
        if "check" in meta and not meta["check"](value):
            raise ConfigError(f"{name}: must be {meta['why']}, got {raw!r}")
        values[key] = value
    return cls(**values)


def convert(hint: Any, raw: Any, name: str) -> Any:
    """Check ``raw`` against the type hint ``hint``; tables become nested dataclasses."""
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build(hint, raw, f"{name}.")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if raw not in allowed:
            raise ConfigError(f"{name}: must be one of {', '.join(map(repr, allowed))}, got {raw!r}")
        return raw
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if raw is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(arg, raw, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(raw, list):
            raise ConfigError(f"{name}: must be a list, got {type(raw).__name__}")
        return tuple(convert(item, v, f"{name}[{i}]") for i, v in enumerate(raw))
    if origin is dict:
        _, value_hint = typing.get_args(hint)
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{name}: must be a table")
        return {str(k): convert(value_hint, v, f'{name}."{k}"') for k, v in raw.items()}
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(f"{name}: must be a number, got {type(raw).__name__}")
        return float(raw)
    if hint in (int, str, bool):
        if isinstance(raw, bool) != (hint is bool) or not isinstance(raw, hint):
            raise ConfigError(f"{name}: must be {_TYPE_WORDS[hint]}, got {type(raw).__name__}")
        return raw
    raise TypeError(f"unsupported config type for {name}: {hint!r}")  # a bug in this module


_TYPE_WORDS = {int: "an integer", str: "a string", bool: "true or false"}
