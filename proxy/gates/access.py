"""The access gates every route passes: two gates of the pipeline and one response hook.

``access_guard`` runs first (right after the error envelope and observation), before any body is read:
Origin (403, or the preflight's 204), Host (403), the API key (401; it sets the request's
``Caller``), and the JSON content type (415). ``meter`` runs after the body guard, on the
metered routes of a key with a model list or limits: it parses the body once for the model
and the token budget, refuses a model outside the key's list (404, as if it did not exist),
holds the key's concurrency slot, takes the request's reservation from the limiter (429),
and settles it against what Ollama counted when the request ends. ``decorate`` (a hook of
the pipeline's one ``on_response_prepare``) puts the CORS and ``x-ratelimit-*`` headers on every answer, errors
and streams included, as the headers go out.

``AccessState`` is what can change at run time (SIGHUP): the key table and the concurrency
bounds. The limiter's backend stays for the process's life.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from ..access.cors import (
    EXPOSED_HEADERS,
    Origins,
    allowed_host_names,
    host_allowed,
    is_json,
    is_loopback,
    preflight,
)
from ..access.keys import Key, KeyTable, Limits, presented_key
from ..access.ratelimit import Decision, Limiter, MemoryLimiter, rate_headers, refusal
from ..access.redis_backend import BackendDown
from ..appkeys import ADMISSION, CONFIG, VALIDATOR
from ..caller import ANONYMOUS, CALLER, Caller
from ..config import AdmissionConfig, Config
from ..errors import (
    LimiterUnavailable,
    ModelNotFound,
    PermissionDenied,
    RateLimited,
    RateLimitExceeded,
    Unauthorized,
    UnsupportedMediaType,
)
from ..jobs.secret import BATCH_HEADER, process_secret, read_line_header
from ..upstream.admission import SERVICE_TIER, Admission, Share, tier_class
from ..upstream.fairqueue import DEFAULT, HIGH, LOW
from ..upstream.outcome import REQUEST_OUTCOMES, Outcome
from .body import body_of, hand_over
from .policy import policy_of
from .resolve import resolve_model

__all__ = ["ACCESS", "KEY", "AccessState", "access_ctx", "access_guard", "decorate", "key_allows", "meter", "metering"]

log = logging.getLogger("proxy.access")

KEY = web.RequestKey("api_key", Key)
# Set on a request the batch runner sends for one line of a batch (proxy/jobs/): it runs as the
# batch owner's key, always in the low class.
BATCH_LINE = web.RequestKey("batch_line", str)
_ORIGIN = web.RequestKey("cors_origin", str)
_RATE = web.RequestKey("rate_decision", Decision)
_USER_ANONYMOUS = Caller("anonymous", "user")


class AccessState:
    """Keys, origins, hosts and limits of one app; ``reload`` swaps keys and limits whole."""

    def __init__(self, config: Config, limiter: Limiter) -> None:
        self.limiter = limiter
        self.origins = Origins(config.cors.origins)
        self.cors = config.cors
        self.hosts = allowed_host_names(config.server.allowed_hosts, config.server.host)
        self.fail_open = config.ratelimit.on_backend_error == "fail_open"
        self.completion_reserve = config.ratelimit.completion_reserve
        self.admission = config.admission
        self.workers = config.server.workers
        self.loopback = is_loopback(config.server.host)
        self.batch_secret = process_secret()
        self.reload(config)

    def reload(self, config: Config) -> None:
        """Take the keys and limits of ``config``; requests in flight keep what they found."""
        keys = KeyTable(config.auth)
        self.keys = keys
        self.by_id = {k.id: k for k in keys.by_hash.values()}  # a batch line names its owner by id
        self.anonymous: Caller | None = None
        if not keys or config.auth.allow_anonymous:
            # The operator on loopback with no keys is the one asking (protected mode); anyone
            # else admitted without a key is an ordinary user.
            self.anonymous = ANONYMOUS if (not keys and self.loopback) else _USER_ANONYMOUS
        self.slots = {k.id: Admission(_key_admission(self.admission, k.max_concurrent, self.workers))
                      for k in keys.by_hash.values() if k.max_concurrent}
        for admission in self.slots.values():
            admission.share = self.share_of

    def share_of(self, request: web.Request | None) -> Share:
        """Whose a waiting request is, its weight and its class (``Admission.share``): its key;
        without one, every anonymous caller is one party when keys are configured, and each
        client address its own party when there are none (then any caller may ask for high)."""
        if request is None:
            return "anonymous", 1.0, DEFAULT
        key = request.get(KEY)
        tier = request.get(SERVICE_TIER)
        if key is not None:
            party, weight, priority = key.id, key.weight, tier_class(tier, key.priority, key.max_priority)
        elif self.keys:
            party, weight, priority = "anonymous", 1.0, tier_class(tier, DEFAULT, DEFAULT)
        else:
            party, weight, priority = f"anonymous {request.remote}", 1.0, tier_class(tier, DEFAULT, HIGH)
        if BATCH_LINE in request:
            priority = LOW
        return party, weight, priority


def _key_admission(base: AdmissionConfig, max_concurrent: int, workers: int) -> AdmissionConfig:
    per_worker = max(1, max_concurrent // workers)  # counted per process, like [admission]
    return AdmissionConfig(max_concurrent=per_worker, max_queue=base.max_queue,
                           queue_timeout=base.queue_timeout, retry_after=base.retry_after,
                           priority_aging=base.priority_aging)


ACCESS = web.AppKey("access", AccessState)


def same_origin(origin: str, host: str | None) -> bool:
    """A page the proxy served itself (the console) calling back: browsers send ``Origin`` on
    module scripts and every ``fetch`` POST, even to their own origin, which is no cross-site
    request. Compared on host and port, as Django's CSRF check does with the ``Host`` header
    (the scheme may differ behind a TLS-terminating proxy); ``Host`` itself is checked next."""
    return host is not None and origin.partition("://")[2] == host


@web.middleware
async def access_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[ACCESS]
    headers = request.headers
    origin = headers.get("Origin")
    if origin is not None and not same_origin(origin, headers.get("Host")):
        if not state.origins.allows(origin):
            raise PermissionDenied(f"Requests from the origin {origin[:200]!r} are not allowed (cors.origins).",
                                   code="origin_not_allowed")
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in headers:
            return preflight(request, origin, state.cors.allow_credentials, state.cors.max_age)
        request[_ORIGIN] = origin  # decorate() puts the CORS headers on the answer
    if not host_allowed(headers.get("Host"), state.hosts):
        raise PermissionDenied("The Host header names a host this proxy does not serve (server.allowed_hosts).",
                               code="host_not_allowed")
    line = headers.get(BATCH_HEADER)
    if line is not None:  # the batch runner's own request, or a forgery (401)
        return await _batch_line(request, handler, state, line)
    policy = policy_of(request)  # the route's declared kind
    if request.path in _READINESS and state.limiter.name == "redis":
        return _with_limiter(state, await handler(request), await state.limiter.ping())
    if policy.key:
        # With no keys configured, whatever key a client sends is ignored (the SDKs insist on
        # sending one); with keys, a key that is sent must be valid even if anonymity is allowed.
        presented = presented_key(headers) if state.keys else None
        if presented is None and state.anonymous is not None:
            if state.anonymous is not ANONYMOUS:
                request[CALLER] = state.anonymous
        else:
            key = state.keys.authenticate(presented)
            request[KEY] = key
            request[CALLER] = Caller(key.id, "admin" if key.role == "admin" else "user", authenticated=True)
    if (policy.json and request.body_exists and not is_json(headers.get("Content-Type", ""))
            and request.match_info.http_exception is None):  # an unknown route's 404/405 comes first
        raise UnsupportedMediaType(
            f"{request.method} {request.path} takes a JSON body: send it with Content-Type: application/json.",
            param="Content-Type")
    return await handler(request)


_READINESS = frozenset({"/readyz", "/v1/health"})


async def _batch_line(request: web.Request, handler: Handler, state: AccessState, value: str) -> web.StreamResponse:
    """A line of a batch, sent by this proxy's runner over loopback: it acts as the batch owner's
    key (which must still be valid), in the low class; every later gate applies as to any request."""
    found = read_line_header(value, state.batch_secret)
    if found is None:
        raise Unauthorized("Invalid batch runner credentials.")
    batch_id, key_id = found
    request[BATCH_LINE] = batch_id
    key = state.by_id.get(key_id)
    if key is None and key_id == "anonymous" and state.anonymous is not None:
        request[CALLER] = Caller("anonymous", "user", batch=True)
        return await handler(request)
    if key is None or not key.enabled or (key.expires is not None and time.time() >= key.expires):
        raise Unauthorized(f"The key {key_id} that owns batch {batch_id} is no longer valid.")
    request[KEY] = key
    request[CALLER] = Caller(key.id, "admin" if key.role == "admin" else "user", authenticated=True, batch=True)
    return await handler(request)


def _with_limiter(state: AccessState, response: web.StreamResponse, reachable: bool) -> web.StreamResponse:
    """The readiness answer with the shared limiter's state; with ``fail_closed`` an
    unreachable store makes the proxy unready (it would answer 503 to every metered request)."""
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return response
    try:
        body = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return response
    mode = "fail_open" if state.fail_open else "fail_closed"
    body["ratelimit"] = {"backend": "redis", "status": "ok" if reachable else "unreachable", "on_backend_error": mode}
    status = response.status
    if not reachable and not state.fail_open:
        status, body["status"] = 503, "unavailable"
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


@web.middleware
async def meter(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.get(KEY)
    if key is None or (not key.models and not key.limited) or not request.body_exists:
        return await handler(request)
    policy = policy_of(request)  # the route's declared kind
    if not policy.json:
        return await handler(request)
    raw = await body_of(request)  # read once by the body guard (decoded, when it came compressed)
    body = _json_object(raw)
    if body is None or not isinstance(body.get("model"), str):
        return await handler(request)  # the handler refuses the body in its own words
    names = resolve_model(request, body)  # an alias: the key may name it or its target
    model = names.served
    if not any(key.allows(name) for name in names.names):
        raise ModelNotFound(f"The model `{names.requested}` does not exist or you do not have access to it.",
                            param="model")
    if not policy.metered or not key.limited:
        hand_over(request, body)
        return await handler(request)
    state = request.app[ACCESS]
    limits = key.limits_for(model)
    if limits is key.limits and names.requested != model:  # model_limits may name the alias
        limits = key.limits_for(names.requested)
    prompt = math.ceil(len(raw) / 4)  # OpenAI's rule of thumb: about 4 bytes a token
    reserved = prompt + (_budget(request, body, model, names.defaults.max_tokens) if policy.completion else 0)
    hand_over(request, body)  # the handler parses nothing again
    del body
    slot = state.slots.get(key.id)
    if slot is None:
        return await _metered(request, handler, state, limits, model, prompt, reserved)
    try:
        async with slot.slot("", request):  # one bound per key, whatever the model
            return await _metered(request, handler, state, limits, model, prompt, reserved)
    except RateLimitExceeded:
        raise
    except RateLimited as exc:  # the key's own bound (its queue full or its wait over)
        raise RateLimitExceeded(
            f"The key {key.id} is at its limit of {slot.config.max_concurrent} concurrent requests "
            "(max_concurrent); retry after the indicated time.", kind="concurrency",
            retry_after=exc.retry_after) from None


async def _metered(request: web.Request, handler: Handler, state: AccessState, limits: Limits, model: str,
                   prompt: int, reserved: int) -> web.StreamResponse:
    if not limits.any:
        return await handler(request)
    try:
        decision: Decision | None = await state.limiter.take(limits, reserved)
    except BackendDown:
        if not state.fail_open:
            raise LimiterUnavailable("The rate limiter's store cannot be reached; retry shortly.",
                                     retry_after=1) from None
        decision = None  # fail_open: served unlimited while the store is down (logged by the limiter)
    if decision is None:
        return await handler(request)
    request[_RATE] = decision  # decorate() renders OpenAI's x-ratelimit-* headers from it
    if not decision.allowed:
        raise refusal(decision, model, reserved)
    outcomes: list[Outcome] = []
    request[REQUEST_OUTCOMES] = outcomes
    try:
        return await handler(request)
    finally:
        state.limiter.settle(limits, used_tokens(outcomes, prompt) - reserved)


def metering(app: web.Application) -> bool:
    """Whether ``meter`` has anything to do in ``app``: some key has a model list or limits
    (read by the pipeline at start-up and when SIGHUP reloads the keys)."""
    return any(k.models or k.limited for k in app[ACCESS].keys.by_hash.values())


def used_tokens(outcomes: list[Outcome], prompt_estimate: int) -> int:
    """What a request cost: Ollama's counts; for an answer cut short, the prompt estimate (Ollama
    did evaluate it) plus what was relayed; nothing for a request Ollama never answered."""
    total = 0
    for o in outcomes:
        if o.prompt_tokens or (o.completion_tokens and o.error is None):
            total += o.prompt_tokens + o.completion_tokens
        elif o.first_byte is not None:
            total += prompt_estimate + o.completion_tokens
    return total


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


_BUDGET_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def _budget(request: web.Request, body: dict[str, Any], model: str, default: int | None = None) -> int:
    """The answer tokens to reserve: the request's own bound, else the model's default
    (``[models.defaults]`` ``max_tokens``), else the default budget."""
    budget = None
    for name in _BUDGET_FIELDS:
        value = body.get(name)
        if value is not None and _positive_int(value):
            budget = value
            break
    if budget is None and isinstance(options := body.get("options"), dict):
        budget = options.get("num_predict") if _positive_int(options.get("num_predict")) else None
    if budget is None and default is not None:
        limits = request.app[VALIDATOR].limits_for(model)
        budget = min(default, limits["max_tokens"]) if limits["max_tokens"] else default
    if budget is None:
        limits = request.app[VALIDATOR].limits_for(model)
        budget = limits["default_max_tokens"] or request.app[ACCESS].completion_reserve
        if limits["max_tokens"]:
            budget = min(budget, limits["max_tokens"])
    n = body.get("n")
    return int(budget) * (n if isinstance(n, int) and _positive_int(n) else 1)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def decorate(request: web.Request, response: web.StreamResponse) -> None:
    """CORS and rate-limit headers on every answer, as its headers go out."""
    origin = request.get(_ORIGIN)
    if origin is not None:
        headers = response.headers
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        headers.add("Vary", "Origin")
        if request.app[ACCESS].cors.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
    rate = request.get(_RATE)
    if rate is not None:
        response.headers.extend(rate_headers(rate))


def key_allows(request: web.Request, model: str, requested: str | None = None) -> bool:
    """Whether the request's key may see ``model`` (no key: yes), or see it as ``requested``."""
    key = request.get(KEY)
    return key is None or key.allows(model) or (requested is not None and key.allows(requested))


async def access_ctx(app: web.Application) -> AsyncIterator[None]:
    """The access state and its limiter for the app's life."""
    config = app[CONFIG]
    limiter: Limiter
    if config.ratelimit.backend == "redis":
        from ..access.redis_backend import RedisLimiter

        limiter = RedisLimiter(config.ratelimit.url, config.ratelimit.timeout)
    else:
        limiter = MemoryLimiter(config.server.workers)
    app[ACCESS] = state = AccessState(config, limiter)
    app[ADMISSION].share = state.share_of  # who a waiting request is: its key, weight and class
    yield
    await limiter.close()
