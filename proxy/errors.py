"""The one error family of the proxy, rendered in OpenAI's envelope in one place.

Anything the proxy refuses or cannot do is raised as a ``ProxyError`` subclass and stays an
exception until ``to_envelope`` (called by the middleware, or by the SSE writer once a stream
has started) turns it into ``{"error": {"message", "type", "param", "code"}}``::

    ProxyError                      500 api_error
    ├── InvalidRequest              400 invalid_request_error   (param names the field)
    │   ├── PayloadTooLarge         413
    │   ├── RequestTimeout          408 code=request_timeout     (body too slow)
    │   └── UnsupportedParameter    400 code=unsupported_parameter
    ├── Unauthorized                401 invalid_request_error   code=invalid_api_key (WWW-Authenticate)
    ├── PermissionDenied            403 permission_error
    ├── NotFound                    404 not_found_error
    │   └── ModelNotFound           404 invalid_request_error  code=model_not_found
    ├── MethodNotAllowed            405 invalid_request_error
    ├── UnsupportedMediaType        415 invalid_request_error   code=unsupported_media_type
    ├── RateLimited                 429 rate_limit_error        (Retry-After)
    │   └── RateLimitExceeded       429 type=tokens|requests    (a key's rpm/tpm/max_concurrent; .kind)
    ├── LimiterUnavailable          503 api_error               code=rate_limiter_unavailable
    └── UpstreamError               502 api_error               (Ollama failed)
        ├── UpstreamUnavailable     502 code=upstream_unreachable
        ├── UpstreamBusy            503 code=upstream_busy       (Retry-After)
        └── UpstreamTimeout         504 code=upstream_timeout

The types and codes follow OpenAI's own error bodies, so SDKs raise the matching exception
class (``BadRequestError``, ``NotFoundError``, ``RateLimitError``, ``InternalServerError``…).
"""

from __future__ import annotations

from typing import Any

__all__ = [
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
    "Unauthorized",
    "UnsupportedMediaType",
    "UnsupportedParameter",
    "UpstreamBusy",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
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


class UnsupportedParameter(InvalidRequest):
    """An OpenAI parameter that Ollama cannot honour: refused, never silently dropped."""

    code = "unsupported_parameter"


class Unauthorized(ProxyError):
    """No usable API key (missing, unknown, expired or disabled), as OpenAI answers it."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"
    headers = (("WWW-Authenticate", "Bearer"),)


class UnsupportedMediaType(ProxyError):
    """A JSON route sent a body that is not declared JSON (so no CORS preflight guarded it)."""

    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


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


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unreachable"


class UpstreamBusy(UpstreamError):
    status = 503
    code = "upstream_busy"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


def to_envelope(error: ProxyError) -> dict[str, Any]:
    """OpenAI's error body for ``error``."""
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }
