"""The one error family of the proxy, rendered in OpenAI's envelope in one place.

Anything the proxy refuses or cannot do is raised as a ``ProxyError`` subclass and stays an
exception until ``to_envelope`` (called by the middleware, or by the SSE writer once a stream
has started) turns it into ``{"error": {"message", "type", "param", "code"}}``::

    ProxyError                      500 api_error
    ├── InvalidRequest              400 invalid_request_error   (param names the field)
    │   ├── PayloadTooLarge         413
    │   ├── RequestTimeout          408 code=request_timeout     (body too slow)
    │   └── UnsupportedParameter    400 code=unsupported_parameter
    ├── PermissionDenied            403 permission_error
    ├── NotFound                    404 not_found_error
    │   └── ModelNotFound           404 invalid_request_error  code=model_not_found
    ├── MethodNotAllowed            405 invalid_request_error
    ├── RateLimited                 429 rate_limit_error        (Retry-After)
    ├── StoreUnavailable            503 code=store_unavailable   (usage / history database)
    └── UpstreamError               502 api_error               (Ollama failed)
        ├── UpstreamUnavailable     502 code=upstream_unreachable
        ├── UpstreamBusy            503 code=upstream_busy       (Retry-After)
        ├── UpstreamMalformed       502 code=upstream_malformed  (not Ollama's API)
        └── UpstreamTimeout         504 code=upstream_timeout

The types and codes follow OpenAI's own error bodies, so SDKs raise the matching exception
class (``BadRequestError``, ``NotFoundError``, ``RateLimitError``, ``InternalServerError``…).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "InvalidRequest",
    "MethodNotAllowed",
    "ModelNotFound",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ProxyError",
    "RateLimited",
    "RequestTimeout",
    "StoreUnavailable",
    "UnsupportedParameter",
    "UpstreamBusy",
    "UpstreamError",
    "UpstreamMalformed",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "to_envelope",
]


class ProxyError(Exception):
    """Base of every error the proxy answers with; carries the OpenAI error fields."""

    status: int = 500
    type: str = "api_error"
    code: str | None = None

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


class UpstreamError(ProxyError):
    """Ollama answered with an error that is not the client's fault."""

    status = 502
    code = "upstream_error"


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
