"""Serving the console's files: a fixed table, read once, with a strict Content-Security-Policy.

No path from the request ever reaches the file system: the files are read from the package when
the app is built, and a request gets one of them only when its last path segment is a name in
``ASSETS`` (anything else, ``..`` and encoded slashes included, is a 404). Scripts run only from
these files (``script-src 'self'``, no inline script or ``eval``), the page talks only to its
own origin (``connect-src 'self'``) and may not be framed.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from importlib import resources
from typing import Final

from aiohttp import web

from ..config import Config
from ..errors import NotFound

__all__ = ["ASSETS", "CSP", "ROUTE_NAMES", "Asset", "add_console_routes", "console_enabled", "load_assets"]

_JS = "text/javascript; charset=utf-8"  # ES modules need a JavaScript MIME type (HTML spec)

# The only files served: name -> Content-Type. Adding a file to the console means adding it here
# (and to the package data globs in pyproject.toml, which a test checks).
ASSETS: Final[dict[str, str]] = {
    "index.html": "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
    "app.js": _JS,
    "api.js": _JS,
    "sse.js": _JS,
    "format.js": _JS,
    "chart.js": _JS,
    "dom.js": _JS,
    "chat.js": _JS,
    "markdown.js": _JS,
    "answer.js": _JS,
    "models.js": _JS,
    "playground.js": _JS,
    "compare.js": _JS,
    "batches.js": _JS,
    "usage.js": _JS,
    "health.js": _JS,
}

# The console's routes by name. The page must load without an API key (it asks for one on the
# first 401), so an access check lets requests on these routes through.
ROUTE_NAMES: Final = frozenset({"console.file", "console.redirect"})

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; "  # dropped images are shown from their data URL
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidated on each load (cheap with the ETag), so an upgraded proxy serves its own console.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    """One file, ready to send."""

    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of ``ASSETS``, read from the installed package (a missing one is a bug)."""
    folder = resources.files(__package__ or "proxy.console")
    assets = {}
    for name, content_type in ASSETS.items():
        body = folder.joinpath(name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[name] = Asset(body, content_type, etag)
    return assets


def console_enabled(config: Config) -> bool:
    """``[console] enabled`` when true or false; ``"auto"``: on only when listening on loopback."""
    if config.console.enabled != "auto":
        return config.console.enabled is True
    return _is_loopback(config.server.host)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def add_console_routes(app: web.Application, path: str) -> None:
    """``GET path`` (the page), ``GET path<file>`` and a redirect from ``path`` without "/"."""
    assets = load_assets()

    async def serve(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info["name"] or "index.html")
        if asset is None:
            raise NotFound(f"Unknown request URL: {request.method} {request.path}.", code="unknown_url")
        headers = {**_HEADERS, "ETag": asset.etag}
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(path)

    # One segment of safe characters at most; the dict decides whether it is a file.
    app.router.add_get(path + "{name:[A-Za-z0-9._-]{0,64}}", serve, name="console.file")
    app.router.add_get(path.rstrip("/"), redirect, name="console.redirect")
