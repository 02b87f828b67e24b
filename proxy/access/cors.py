"""Browser safety: which web origins may call the proxy, the preflight, and the Host check.

A page the operator visits can send requests to ``127.0.0.1``; three checks keep it from using
the proxy (the same three Ollama has):

* **Origin** (``[cors] origins``): a request whose ``Origin`` is not allowed gets 403 before
  anything else runs. Entries are exact origins, Ollama-style patterns where ``*`` stands for
  any run of characters within the host and port (``http://localhost:*``), ``"*"`` for any
  origin, or ``"local"``: Ollama's default list (localhost, 127.0.0.1 and 0.0.0.0 over http and
  https on any port, and the ``app://``, ``file://``, ``tauri://``, ``vscode-webview://`` and
  ``vscode-file://`` schemes of desktop apps and editors).
* **Content-Type**: a JSON route refuses a body not declared ``application/json`` (or
  ``…+json``) with 415, so a form or ``text/plain`` POST, which browsers send cross-site
  without a preflight, never reaches a handler.
* **Host** (``[server] allowed_hosts``): on loopback only ``localhost``, ``127.0.0.1`` and
  ``[::1]`` (any port) are accepted, so a DNS-rebound name pointing at 127.0.0.1 is refused.

A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin is
answered 204 here, with no key, no upstream call and no admission slot.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from aiohttp import web

__all__ = [
    "EXPOSED_HEADERS", "LOCAL_ORIGINS", "Origins", "allowed_host_names", "host_allowed", "is_json",
    "is_loopback", "preflight",
]

# envconfig.AllowedOrigins() in Ollama: these hosts over http/https, any port, plus app schemes.
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0")
LOCAL_ORIGINS = (
    *(f"{scheme}://{host}{port}" for host in _LOCAL_HOSTS for scheme in ("http", "https") for port in ("", ":*")),
    "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*",
)  # fmt: skip

# Headers a browser may send on the OpenAI routes: what the OpenAI JS SDK sets (Authorization,
# OpenAI-*, x-stainless-*), the other key headers, and the request id.
_ALLOWED_HEADERS = frozenset({
    "authorization", "content-type", "openai-beta", "openai-organization", "openai-project",
    "x-api-key", "api-key", "x-request-id", "idempotency-key", "user-agent",
})  # fmt: skip
_ALLOWED_PREFIXES = ("x-stainless-", "anthropic-")  # the SDKs' own; Anthropic's version and beta headers
_METHODS = "GET, HEAD, POST, DELETE, OPTIONS"

_EXPOSED = (
    "X-Request-Id", "Retry-After", "request-id",
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
    "X-Ollama-Proxy-Dropped-Tools",
)
EXPOSED_HEADERS = ", ".join(_EXPOSED)


class Origins:
    """The allowed origins, compiled once: exact ones in a set, patterns as one regex."""

    def __init__(self, entries: Iterable[str]) -> None:
        expanded: list[str] = []
        for entry in entries:
            expanded.extend(LOCAL_ORIGINS if entry == "local" else (entry,))
        self.any = "*" in expanded
        self.exact = frozenset(e.lower() for e in expanded if "*" not in e)
        patterns = [re.escape(e.lower()).replace(r"\*", r"[^/\s]*") for e in expanded if "*" in e and e != "*"]
        self._rx = re.compile("|".join(patterns)) if patterns else None

    def __bool__(self) -> bool:
        return self.any or bool(self.exact) or self._rx is not None

    def allows(self, origin: str) -> bool:
        if self.any:
            return True
        lowered = origin.lower()
        return lowered in self.exact or (self._rx is not None and self._rx.fullmatch(lowered) is not None)


def preflight(request: web.Request, origin: str, credentials: bool, max_age: int) -> web.Response:
    """204 for an allowed origin's preflight, naming the requested headers that are allowed."""
    requested = request.headers.get("Access-Control-Request-Headers", "")
    allowed = [h.strip() for h in requested.split(",")
               if (name := h.strip().lower()) and (name in _ALLOWED_HEADERS or name.startswith(_ALLOWED_PREFIXES))]
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": _METHODS,
        "Access-Control-Max-Age": str(max_age),
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    }
    if allowed:
        headers["Access-Control-Allow-Headers"] = ", ".join(allowed)
    if credentials:
        headers["Access-Control-Allow-Credentials"] = "true"
    return web.Response(status=204, headers=headers)


def is_json(content_type: str) -> bool:
    """``application/json`` or any ``…+json`` media type (parameters ignored)."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def is_loopback(host: str) -> bool:
    """Whether the proxy listens on a loopback address only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_host_names(configured: Iterable[str], listen_host: str) -> frozenset[str] | None:
    """The Host names to accept (lower-case, without port), or None for any."""
    names = frozenset(h.lower().strip("[]") for h in configured)
    if names:
        return names
    return frozenset({"localhost", "127.0.0.1", "::1"}) if is_loopback(listen_host) else None


def host_allowed(host: str | None, names: frozenset[str] | None) -> bool:
    """Whether a request's ``Host`` is acceptable; a missing Host (HTTP/1.0) is, as in Ollama."""
    if names is None or not host:
        return True
    host = host.lower()
    if host.startswith("["):  # [::1]:8080
        name = host[1:].partition("]")[0]
    else:
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
    return name.rstrip(".") in names
