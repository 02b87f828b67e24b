"""The one error family of the proxy, rendered in OpenAI's envelope in one place.

Anything the proxy refuses or cannot do is raised as a ``ProxyError`` subclass and stays an
exception until ``to_envelope`` (called by the middleware, or by the SSE writer once a stream
has started) turns it into ``{"error": {"message", "type", "param", "code"}}``::

    ProxyError                      500 api_error
    ├── InvalidRequest              400 invalid_request_error   (param names the field)
    │   ├── PayloadTooLarge         413
    │   ├── RequestTimeout          408 code=request_timeout     (body too slow)
    │   ├── ExpectationFailed       417 code=expectation_failed  (an Expect we do not meet)
    │   ├── UnsupportedMediaType    415 code=unsupported_media_type | unsupported_content_encoding
    │   └── UnsupportedParameter    400 code=unsupported_parameter
    ├── Unauthorized                401 invalid_request_error   code=invalid_api_key (WWW-Authenticate)
    ├── PermissionDenied            403 permission_error
    ├── NotFound                    404 not_found_error
    │   └── ModelNotFound           404 invalid_request_error  code=model_not_found
    ├── MethodNotAllowed            405 invalid_request_error
    ├── RateLimited                 429 rate_limit_error        (Retry-After)
    │   └── RateLimitExceeded       429 type=tokens|requests    (a key's rpm/tpm/max_concurrent; .kind)
    ├── LimiterUnavailable          503 api_error               code=rate_limiter_unavailable
    ├── StoreUnavailable            503 code=store_unavailable   (usage / history database)
    └── UpstreamError               502 api_error               (Ollama failed)
        ├── UpstreamFault           502 server_error             (Ollama's 5xx: text kept back)
        ├── UpstreamUnavailable     502 code=upstream_unreachable
        ├── UpstreamBusy            503 code=upstream_busy       (Retry-After)
        ├── UpstreamMalformed       502 code=upstream_malformed  (not Ollama's API)
        └── UpstreamTimeout         504 code=upstream_timeout

The types and codes follow OpenAI's own error bodies, so SDKs raise the matching exception
class (``BadRequestError``, ``NotFoundError``, ``RateLimitError``, ``InternalServerError``…).

The Anthropic routes (``/v1/messages``) render the same errors in Anthropic's envelope
(``to_anthropic_envelope``, ``anthropic_status``): ``{"type": "error", "error": {"type",
"message"}, "request_id"}`` with Anthropic's types and statuses, so its SDKs' classes and
retries work: 401 ``authentication_error``, 403 ``permission_error``, 404 ``not_found_error``,
413 ``request_too_large``, other 4xx ``invalid_request_error``, a key's own limit 429
``rate_limit_error``, a full proxy or a busy Ollama 529 ``overloaded_error``, 504
``timeout_error``, other 5xx ``api_error``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "UPSTREAM_FAULT_MESSAGE",
    "ExpectationFailed",
    "InvalidRequest",
    "LimiterUnavailable",
    "MethodNotAllowed",
    "ModelNotFound",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ProxyError",
    "RateLimitExceeded",
    "RateLimited",
    "RequestTimeout",
    "StoreUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
    "UnsupportedParameter",
    "UpstreamBusy",
    "UpstreamError",
    "UpstreamFault",
    "UpstreamMalformed",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "anthropic_status",
    "to_anthropic_envelope",
    "to_envelope",
]


class ProxyError(Exception):
    """Base of every error the proxy answers with; carries the OpenAI error fields."""

    status: int = 500
    type: str = "api_error"
    code: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers this error always carries

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    @property
    def log_text(self) -> str:
        """What the log says about this error (may hold more than the client is told)."""
        return self.message


class InvalidRequest(ProxyError):
    status = 400
    type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class RequestTimeout(InvalidRequest):
    """The client did not send its body within ``server.body_timeout``."""

    status = 408
    code = "request_timeout"


class ExpectationFailed(InvalidRequest):
    """An ``Expect`` header other than ``100-continue`` (RFC 9110 10.1.1)."""

    status = 417
    code = "expectation_failed"


class UnsupportedMediaType(InvalidRequest):
    """A body the proxy does not accept as sent (RFC 9110 15.5.16): not declared JSON on a JSON
    route (so no CORS preflight guarded it), or a ``Content-Encoding`` it does not decode
    (``code="unsupported_content_encoding"``)."""

    status = 415
    code = "unsupported_media_type"


class UnsupportedParameter(InvalidRequest):
    """An OpenAI parameter that Ollama cannot honour: refused, never silently dropped."""

    code = "unsupported_parameter"


class Unauthorized(ProxyError):
    """No usable API key (missing, unknown, expired or disabled), as OpenAI answers it."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"
    headers = (("WWW-Authenticate", "Bearer"),)


class PermissionDenied(ProxyError):
    status = 403
    type = "permission_error"


class NotFound(ProxyError):
    status = 404
    type = "not_found_error"


class ModelNotFound(NotFound):
    type = "invalid_request_error"
    code = "model_not_found"


class MethodNotAllowed(ProxyError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RateLimited(ProxyError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class StoreUnavailable(ProxyError):
    """The usage / history database could not be read or written (``[store]``)."""

    status = 503
    code = "store_unavailable"


class RateLimitExceeded(RateLimited):
    """A key's own limit: ``kind`` is ``"requests"``, ``"tokens"`` or ``"concurrency"``.

    OpenAI puts the limit's kind in ``type`` (``"tokens"`` or ``"requests"``); the headers are
    the ``x-ratelimit-*`` set of the refused request.
    """

    def __init__(self, message: str, *, kind: str = "requests", retry_after: float | None = None,
                 headers: tuple[tuple[str, str], ...] = (), param: str | None = None) -> None:
        super().__init__(message, param=param, retry_after=retry_after)
        self.kind = kind
        self.type = kind if kind in ("tokens", "requests") else "rate_limit_error"
        self.headers = headers


class LimiterUnavailable(ProxyError):
    """The shared rate-limit store cannot be reached and ``on_backend_error = "fail_closed"``."""

    status = 503
    code = "rate_limiter_unavailable"


class UpstreamError(ProxyError):
    """Ollama answered with an error that is not the client's fault."""

    status = 502
    code = "upstream_error"


class UpstreamFault(UpstreamError):
    """Ollama failed on its side (a 5xx, or an error inside a stream).

    Its text often carries file paths, GPU and driver errors: it goes to the log (``detail``),
    while the client gets OpenAI's generic wording for its own 500s and ``type: server_error``,
    and the request id to quote (added where the error is rendered).
    """

    type = "server_error"
    code = "upstream_error"

    def __init__(self, detail: str, *, param: str | None = None, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(UPSTREAM_FAULT_MESSAGE, param=param, code=code, retry_after=retry_after)
        self.detail = detail

    @property
    def log_text(self) -> str:
        return f"{self.message} Ollama said: {self.detail}"


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unreachable"


class UpstreamBusy(UpstreamError):
    status = 503
    code = "upstream_busy"


class UpstreamMalformed(UpstreamError):
    """Ollama's answer was not what its API promises (not JSON, not an object)."""

    code = "upstream_malformed"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


# OpenAI's own text for its 500s ("The server had an error while processing your request.").
UPSTREAM_FAULT_MESSAGE = "The model server had an error while processing your request."


def to_envelope(error: ProxyError, request_id: str | None = None) -> dict[str, Any]:
    """OpenAI's error body for ``error``; a server-side fault names the request id to quote."""
    message = error.message
    if request_id is not None and isinstance(error, UpstreamFault):
        message = f"{message} (request id {request_id})"
    return {
        "error": {
            "message": message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }


def anthropic_status(error: ProxyError) -> tuple[int, str]:
    """The status and error type Anthropic's API gives for what ``error`` is."""
    status = error.status
    if isinstance(error, RateLimitExceeded):
        return 429, "rate_limit_error"  # the key's own limit
    if isinstance(error, RateLimited | UpstreamBusy):
        return 529, "overloaded_error"  # the proxy's admission queue full, or Ollama busy
    if status < 500:
        return status, _ANTHROPIC_4XX.get(status, "invalid_request_error")
    return status, "timeout_error" if status == 504 else "api_error"


_ANTHROPIC_4XX = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                  413: "request_too_large", 429: "rate_limit_error"}


def to_anthropic_envelope(error: ProxyError, request_id: str | None = None) -> dict[str, Any]:
    """Anthropic's error body for ``error``; a server-side fault names the request id to quote."""
    message = error.message
    if request_id is not None and isinstance(error, UpstreamFault):
        message = f"{message} (request id {request_id})"
    body: dict[str, Any] = {"type": "error", "error": {"type": anthropic_status(error)[1], "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body
